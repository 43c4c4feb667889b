// GPTQ onto IQ3_S. The sweep rounds one column at a time and then spreads that column's
// error over the columns after it, but IQ3_S stores a whole group of 4 values as one grid
// entry. So a group's entry is decided one coordinate at a time, in whatever order the
// sweep reaches them: when coordinate j of a group comes up with value v, every grid entry
// that agrees with the coordinates already fixed is scored by
//   w_j (s m_j - |v|)^2 + sum over the group's unfixed coordinates k of w_k (s m_k - |â_k|)^2
// (m = 2l + 1 the entry's magnitudes, s the group's scale d (1 + 2c), â the values when the
// block's parameters were chosen: the best estimate of what the sweep will meet), and the
// best entry's level for j is kept. The sign is v's. When the last coordinate is fixed, the
// group's levels are an entry of the grid by construction.
// The block's d and 4-bit scale codes come from the whole-block quantizer at its first
// column (blocks_iq3s.cpp), as for the other types.
#include "algo/gptq_codebook.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/iq_grids.h"

namespace lowbit::gptq {
namespace {

using quant::BlockIQ3_S;
constexpr int kBlock = 256, kGroup = 4, kSub = 32;

class Iq3sRounder final : public GridRounder {
 public:
  Iq3sRounder(uint64_t cols, const float* importance, uint8_t* out, float* met)
      : grid_(quant::iq_grid(quant::IqGridId::Iq3s)),
        cols_(cols),
        bpr_(cols / kBlock),
        importance_(importance),
        out_(out),
        met_(met) {}

  uint64_t block_len() const override { return kBlock; }
  void begin_rows(uint64_t r0, uint64_t r1) override {
    r0_ = r0;
    const uint64_t n = (r1 - r0) * cols_;
    start_.assign(n, 0.0f);
    level_.assign(n, -1);
    negative_.assign(n, 0);
  }
  void choose(uint64_t row, uint64_t b, const float* values) override {
    quant::quantize_iq3_s(values, importance_ + b * kBlock, block(row, b));
    std::memcpy(&start_[at(row, b * kBlock)], values, kBlock * sizeof(float));
  }
  float round(uint64_t row, uint64_t col, float v) override {
    if (met_) met_[row * cols_ + col] = v;
    const auto* blk = reinterpret_cast<const BlockIQ3_S*>(block(row, col / kBlock));
    const int e = static_cast<int>(col % kBlock), j = e % kGroup;
    const uint64_t g0 = col - j;  // the group's first column
    const float db =
        f16_to_f32(blk->d) * static_cast<float>(1 + 2 * quant::iq3s_scale_code(blk, e / kSub));
    const float* w = importance_ + g0;
    const int8_t* fixed = &level_[at(row, g0)];
    const float* est = &start_[at(row, g0)];
    int best_level = 0;
    float best_cost = std::numeric_limits<float>::max();
    for (int i = 0; i < grid_.n; ++i) {
      const uint8_t* l = grid_.entry(i);
      bool agrees = true;
      for (int k = 0; k < kGroup && agrees; ++k) agrees = fixed[k] < 0 || fixed[k] == l[k];
      if (!agrees) continue;
      float cost = 0;
      for (int k = 0; k < kGroup; ++k) {
        if (fixed[k] >= 0) continue;
        const float target = k == j ? std::fabs(v) : std::fabs(est[k]);
        const float d = db * static_cast<float>(2 * l[k] + 1) - target;
        cost += w[k] * d * d;
      }
      if (cost < best_cost) best_cost = cost, best_level = l[j];
    }
    level_[at(row, col)] = static_cast<int8_t>(best_level);
    negative_[at(row, col)] = v < 0;
    return db * static_cast<float>(2 * best_level + 1) * (v < 0 ? -1.0f : 1.0f);
  }
  void end_rows(uint64_t r0, uint64_t r1) override {
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t b = 0; b < bpr_; ++b) {
        auto* blk = reinterpret_cast<BlockIQ3_S*>(block(r, b));
        std::memset(blk->qs, 0, sizeof blk->qs);
        std::memset(blk->qh, 0, sizeof blk->qh);
        std::memset(blk->signs, 0, sizeof blk->signs);
        for (int g = 0; g < kBlock / kGroup; ++g) {
          const int8_t* l = &level_[at(r, b * kBlock + kGroup * g)];
          int code = 0;
          for (int k = kGroup - 1; k >= 0; --k) code = code * grid_.radix + l[k];
          const int idx = grid_.index[code];
          if (idx < 0) throw std::logic_error("GPTQ IQ3_S: a group's levels are off the grid");
          blk->qs[g] = static_cast<uint8_t>(idx & 255);
          blk->qh[g / 8] |= static_cast<uint8_t>((idx >> 8) << (g % 8));
        }
        for (int e = 0; e < kBlock; ++e)
          if (negative_[at(r, b * kBlock + e)])
            blk->signs[e / 8] |= static_cast<uint8_t>(1 << (e % 8));
      }
  }

 private:
  uint64_t at(uint64_t row, uint64_t col) const { return (row - r0_) * cols_ + col; }
  uint8_t* block(uint64_t row, uint64_t b) const {
    return out_ + (row * bpr_ + b) * sizeof(BlockIQ3_S);
  }

  const quant::IqGrid& grid_;
  uint64_t cols_, bpr_;
  const float* importance_;
  uint8_t* out_;
  float* met_;
  uint64_t r0_ = 0;
  std::vector<float> start_;   // [tile rows, cols] values when each block was chosen
  std::vector<int8_t> level_;  // [tile rows, cols] fixed level, -1 = not yet
  std::vector<uint8_t> negative_;
};

}  // namespace

std::unique_ptr<GridRounder> make_codebook_rounder(DType type, uint64_t cols,
                                                   const float* importance, uint8_t* out,
                                                   float* met) {
  if (type != DType::IQ3_S)
    fail(ErrorKind::Unsupported, "GPTQ: no codebook search for {}", dtype_name(type));
  return std::make_unique<Iq3sRounder>(cols, importance, out, met);
}

}  // namespace lowbit::gptq

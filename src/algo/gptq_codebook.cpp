// GPTQ onto the codebook types (IQ3_*, IQ2_*, IQ1_*; quant/iq_shapes.h). The sweep rounds one
// column at a time and then spreads that column's error over the columns after it, but
// these types store a whole group of 4 or 8 values as one grid entry. So a group's entry is
// decided one coordinate at a time, in whatever order the sweep reaches them: when
// coordinate j of a group comes up with value v, every grid entry that agrees with the
// coordinates already fixed is scored by
//   w_j (s m_j - t)^2 + sum over the group's unfixed coordinates k of w_k (s m_k - |â_k|)^2
// (m the entry's magnitudes, s the group's scale, t = |v|, â the values met when the
// block's parameters were chosen: the best estimate of what the sweep will meet), and the
// best entry's level for j is kept. The entries that agree with the fixed coordinates are
// the AND of the grid's per-coordinate bitsets (IqGrid::entries_with), so each step scores
// only those. The sign is v's, except for the types with sign parity, whose groups of 8
// must hold an even count of negatives: there the signs are fixed with the block's
// parameters (the whole-block quantizer gives the value of least weight w x^2 of an odd
// group the wrong sign), since forcing the last value of 8 to be rounded, whatever its
// size, costs far more. Where the fixed sign is not v's, t = -|v| (the smallest magnitude
// is then nearest). When the last coordinate is
// fixed, the group's levels are an entry of the grid by construction. The block's d and scale codes
// (IQ1_*: and delta signs) come from the whole-block quantizer at its first column. IQ1_*
// have signed levels (l - 1 + delta): there t = v, â as met, and no signs.
#include "algo/gptq_codebook.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/iq_shapes.h"

namespace lowbit::gptq {
namespace {

constexpr int kBlock = 256, kMaxWords = 32;

class CodebookRounder final : public GridRounder {
 public:
  CodebookRounder(DType type, uint64_t cols, const float* importance, uint8_t* out, float* met)
      : type_(type),
        shape_(quant::iq_shape(type)),
        iq1_(quant::iq1_shape(type)),
        grid_(quant::iq_grid(shape_ ? shape_->grid : quant::IqGridId::Iq1s)),
        group_(shape_ ? shape_->group : 8),
        bytes_(traits(type).type_size),
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
    quant::block_codec(type_)->quantize(values, importance_ + b * kBlock, block(row, b));
    std::memcpy(&start_[at(row, b * kBlock)], values, kBlock * sizeof(float));
    if (shape_ && shape_->parity)
      for (int e = 0; e < kBlock; ++e)
        negative_[at(row, b * kBlock + e)] = shape_->negative(block(row, b), e);
  }
  float round(uint64_t row, uint64_t col, float v) override {
    if (met_) met_[row * cols_ + col] = v;
    const uint8_t* blk = block(row, col / kBlock);
    const int group = group_, e = static_cast<int>(col % kBlock), j = e % group;
    const uint64_t g0 = col - j;  // the group's first column
    float level_value[8];         // of each level in this group
    bool negative = false;
    float target = v;
    if (shape_) {
      const float s = shape_->scale(shape_->d(blk), shape_->code(blk, e / shape_->sub));
      for (int l = 0; l < grid_.radix; ++l) level_value[l] = s * shape_->magnitude[l];
      negative = v < 0, target = std::fabs(v);
      if (shape_->parity && negative_[at(row, col)] != negative)  // the sign chosen up front
        negative = !negative, target = -target;
    } else {
      const float s = quant::iq1_scale(iq1_->d(blk), iq1_->code(blk, e / iq1_->sub));
      const bool negative_delta = iq1_->negative_delta(blk, e / iq1_->delta);
      for (int l = 0; l < grid_.radix; ++l)
        level_value[l] = s * quant::iq1_level(l, negative_delta);
    }
    const float* w = importance_ + g0;
    const int8_t* fixed = &level_[at(row, g0)];
    const float* est = &start_[at(row, g0)];
    // cost[k][l]: coordinate k's term at level l; the entries agreeing with the fixed levels.
    float cost[8][8] = {};
    uint64_t agree[kMaxWords];
    std::fill(agree, agree + grid_.words, ~uint64_t{0});
    for (int k = 0; k < group; ++k) {
      if (fixed[k] >= 0) {
        const uint64_t* with = grid_.entries_with(k, fixed[k]);
        for (int i = 0; i < grid_.words; ++i) agree[i] &= with[i];
        continue;
      }
      const float t = k == j ? target : shape_ ? std::fabs(est[k]) : est[k];
      for (int l = 0; l < grid_.radix; ++l) {
        const float d = level_value[l] - t;
        cost[k][l] = w[k] * d * d;
      }
    }
    int best_level = 0;
    float best_cost = std::numeric_limits<float>::max();
    for (int i = 0; i < grid_.words; ++i)
      for (uint64_t bits = agree[i]; bits; bits &= bits - 1) {
        const int n = 64 * i + __builtin_ctzll(bits);
        if (n >= grid_.n) break;
        const uint8_t* l = grid_.entry(n);
        float c = 0;
        for (int k = 0; k < group; ++k) c += cost[k][l[k]];  // fixed coordinates add 0
        if (c < best_cost) best_cost = c, best_level = l[j];
      }
    level_[at(row, col)] = static_cast<int8_t>(best_level);
    negative_[at(row, col)] = negative;
    return level_value[best_level] * (negative ? -1.0f : 1.0f);
  }
  void end_rows(uint64_t r0, uint64_t r1) override {
    const int group = group_, sub = shape_ ? shape_->sub : iq1_->sub;
    int codes[16], entries[kBlock / 4];
    bool negative[kBlock];
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t b = 0; b < bpr_; ++b) {
        uint8_t* blk = block(r, b);
        for (int s = 0; s < kBlock / sub; ++s)
          codes[s] = shape_ ? shape_->code(blk, s) : iq1_->code(blk, s);
        for (int g = 0; g < kBlock / group; ++g) {
          const int8_t* l = &level_[at(r, b * kBlock + group * g)];
          int code = 0;
          for (int k = group - 1; k >= 0; --k) code = code * grid_.radix + l[k];
          entries[g] = grid_.index[code];
          if (entries[g] < 0)
            throw std::logic_error("GPTQ codebook: a group's levels are off the grid");
        }
        if (iq1_) {
          for (int i = 0; i < kBlock / iq1_->delta; ++i) negative[i] = iq1_->negative_delta(blk, i);
          iq1_->pack(f32_to_f16(iq1_->d(blk)), codes, entries, negative, blk);
          continue;
        }
        for (int e = 0; e < kBlock; ++e) negative[e] = negative_[at(r, b * kBlock + e)];
        shape_->pack(*reinterpret_cast<const uint16_t*>(blk), codes, entries, negative, blk);
      }
  }

 private:
  uint64_t at(uint64_t row, uint64_t col) const { return (row - r0_) * cols_ + col; }
  uint8_t* block(uint64_t row, uint64_t b) const { return out_ + (row * bpr_ + b) * bytes_; }

  DType type_;
  const quant::IqShape* shape_;  // IQ3_*, IQ2_*; null for IQ1_*
  const quant::Iq1Shape* iq1_;   // IQ1_*; null for the others
  const quant::IqGrid& grid_;
  int group_;
  uint64_t bytes_, cols_, bpr_;
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
  if (!quant::is_codebook(type))
    fail(ErrorKind::Unsupported, "GPTQ: no codebook search for {}", dtype_name(type));
  return std::make_unique<CodebookRounder>(type, cols, importance, out, met);
}

}  // namespace lowbit::gptq

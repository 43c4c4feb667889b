// GPTQ onto the GGUF block types: the sweep of gptq_sweep.h with a rounder that asks the
// block codec (quant/block_codecs.h) to choose a block's parameters and report its grid,
// rounds single values onto that grid, and packs the codes when a tile of rows is done.
#include <algorithm>
#include <cstring>
#include <vector>

#include "algo/gptq_codebook.h"
#include "algo/gptq_sweep.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/debias.h"

namespace lowbit {
namespace {

class BlockRounder final : public gptq::GridRounder {
 public:
  // zero_grids: every block's grid holds 0 (the sweep prunes: its zeros stay exactly 0).
  BlockRounder(const quant::BlockCodec& codec, bool zero_grids, uint64_t cols,
               const float* importance, uint8_t* out, float* met)
      : codec_(codec),
        choose_(zero_grids && codec.choose_zero ? codec.choose_zero : codec.choose),
        blen_(traits(codec.type).block_size),
        bytes_(traits(codec.type).type_size),
        cols_(cols),
        bpr_(cols / blen_),
        importance_(importance),
        out_(out),
        met_(met) {}

  uint64_t block_len() const override { return blen_; }
  void begin_rows(uint64_t r0, uint64_t r1) override {
    r0_ = r0;
    grids_.resize((r1 - r0) * bpr_);
    codes_.assign((r1 - r0) * cols_, 0);
  }
  void choose(uint64_t row, uint64_t b, const float* values) override {
    choose_(values, importance_ ? importance_ + b * blen_ : nullptr, block(row, b),
                  &grids_[(row - r0_) * bpr_ + b]);
  }
  float round(uint64_t row, uint64_t col, float v) override {
    const quant::BlockGrid& g = grids_[(row - r0_) * bpr_ + col / blen_];
    const int e = static_cast<int>(col % blen_), c = g.nearest(e, v);
    codes_[(row - r0_) * cols_ + col] = c;
    if (met_) met_[row * cols_ + col] = v;
    return g.value(e, c);
  }
  void end_rows(uint64_t r0, uint64_t r1) override {
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t b = 0; b < bpr_; ++b)
        codec_.set_codes(&codes_[(r - r0) * cols_ + b * blen_], block(r, b));
  }

 private:
  uint8_t* block(uint64_t row, uint64_t b) const { return out_ + (row * bpr_ + b) * bytes_; }

  const quant::BlockCodec& codec_;
  quant::ChooseGridFn choose_;
  uint64_t blen_, bytes_, cols_, bpr_;
  const float* importance_;
  uint8_t* out_;
  float* met_;  // optional: each value as the sweep met it [rows, cols]
  uint64_t r0_ = 0;
  std::vector<quant::BlockGrid> grids_;  // [rows of the tile, blocks per row]
  std::vector<int> codes_;               // [rows of the tile, cols]
};

// F16, BF16, F32: every value is its own block, rounded to the nearest float of the type
// (the sweep then only prunes and spreads the errors).
class FloatRounder final : public gptq::GridRounder {
 public:
  FloatRounder(DType type, uint64_t cols, uint8_t* out, float* met)
      : type_(type), cols_(cols), out_(out), met_(met) {}
  uint64_t block_len() const override { return cols_; }  // no parameters: "static"
  void begin_rows(uint64_t, uint64_t) override {}
  void choose(uint64_t, uint64_t, const float*) override {}
  float round(uint64_t row, uint64_t col, float v) override {
    const uint64_t at = row * cols_ + col;
    if (met_) met_[at] = v;
    if (type_ == DType::F32) {
      std::memcpy(out_ + at * 4, &v, 4);
      return v;
    }
    const uint16_t bits = type_ == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
    std::memcpy(out_ + at * 2, &bits, 2);
    return type_ == DType::F16 ? f16_to_f32(bits) : bf16_to_f32(bits);
  }
  void end_rows(uint64_t, uint64_t) override {}

 private:
  DType type_;
  uint64_t cols_;
  uint8_t* out_;
  float* met_;
};

}  // namespace

void gptq_quantize_rows(DType type, const float* w, uint64_t rows, uint64_t cols,
                        std::vector<double> H, const float* importance, const GptqOptions& o,
                        uint8_t* out, float* pre_round) {
  if (type == DType::F16 || type == DType::BF16 || type == DType::F32) {
    std::vector<float> W(w, w + rows * cols);
    FloatRounder rounder(type, cols, out, pre_round);
    return gptq::sweep(W, rows, cols, std::move(H), o, rounder);
  }
  const quant::BlockCodec* codec = quant::block_codec(type);
  if (!codec)
    fail(ErrorKind::Unsupported, "GPTQ: {} is not a block type (Q4_K, Q6_K, Q8_0, ...)",
         dtype_name(type));
  const auto& tr = traits(type);
  if (cols % tr.block_size != 0)
    fail(ErrorKind::Argument, "GPTQ: rows of {} values do not divide into {} blocks of {}", cols,
         tr.name, tr.block_size);
  const bool prunes = o.mask || o.prune.active();
  if (!codec->choose && prunes)
    fail(ErrorKind::Unsupported,
         "GPTQ: {} has no 0 among its values, so it cannot keep pruned weights", dtype_name(type));
  std::vector<float> diag;
  if (!importance) {
    diag.resize(cols);
    for (uint64_t j = 0; j < cols; ++j)
      diag[j] = static_cast<float>(H.size() == cols * cols ? H[j * cols + j] : 1.0);
    importance = diag.data();
  }
  // The metric of the rescale below (f32), kept before the sweep consumes H.
  std::vector<float> hf;
  if (codec->debias && H.size() == cols * cols) hf.assign(H.begin(), H.end());
  std::vector<float> W(w, w + rows * cols);
  if (!codec->choose) {  // a codebook type (algo/gptq_codebook.h)
    const auto rounder = gptq::make_codebook_rounder(type, cols, importance, out, pre_round);
    gptq::sweep(W, rows, cols, std::move(H), o, *rounder);
  } else {
    BlockRounder rounder(*codec, prunes, cols, importance, out, pre_round);
    gptq::sweep(W, rows, cols, std::move(H), o, rounder);
  }
  // The sweep's least-squares block scales shrink each row's output as rounding to nearest
  // shrinks the row; removing it lowers the model's KLD here too (docs/QUANTIZATION.md).
  if (!hf.empty())
    quant::debias_rows_output(type, w, rows, cols, hf.data(), o.n_threads, out, prunes);
}

}  // namespace lowbit

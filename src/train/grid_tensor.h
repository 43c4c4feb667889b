// A quantized weight seen as a fixed grid plus one integer code per weight, so that learned
// rounding can move codes and still write exactly what it trained: the block parameters
// (f16 scales, K sub-block scales and mins, IQ4 tables) come from start bytes a quantizer
// wrote (round to nearest or GPTQ) and never change; only the codes do. For every element i:
//   value(i, c) = scale[i] · level(c) + offset[i],  c in [0, n_codes)
// with level(c) = c - level_bias on uniform grids and table[c] on IQ4_NL / IQ4_XS. Fractional
// codes interpolate linearly between neighbouring levels (AdaRound's soft rounding).
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit::train {

class GridTensor {
 public:
  // `bytes`: rows × cols values of a GGUF block type (quant/block_codecs.h), parameters set.
  GridTensor(DType type, std::vector<uint8_t> bytes, uint64_t rows, uint64_t cols);

  uint64_t size() const { return scale_.size(); }
  int n_codes() const { return n_codes_; }
  float level(float code) const;  // fractional codes interpolate
  float value(uint64_t i, float code) const { return scale_[i] * level(code) + offset_[i]; }
  // ∂value/∂code on the segment [floor(code), floor(code) + 1] (the last segment past the end).
  float slope(uint64_t i, float code) const;
  // The fractional code of x on element i's grid, clamped to [0, n_codes - 1].
  float position(uint64_t i, float x) const;
  // The codes stored in the start bytes (an element whose scale is 0 reads as code 0: every
  // code decodes to the same value there).
  std::vector<int> start_codes() const;
  // The start bytes with every code replaced by `codes` (size() of them).
  std::vector<uint8_t> encode(const std::vector<int>& codes) const;
  // Decoded values of `codes`, exactly as the engine reads encode(codes).
  std::vector<float> decode(const std::vector<int>& codes) const;

 private:
  DType type_;
  std::vector<uint8_t> bytes_;
  int n_codes_ = 0, level_bias_ = 0;
  const int8_t* table_ = nullptr;
  std::vector<float> scale_, offset_;  // per element
};

}  // namespace lowbit::train

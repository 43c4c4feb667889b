// The SIMD kernels of dot_simd.cpp, one per instruction set, dispatched at run time.
#pragma once

#include <string>

#include "lowbit/kernels.h"

namespace lowbit::kernels {

void dot_rows_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                   const ActRow& a, float* y);
void dot_rows_multi_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                         const ActRow* acts, size_t n_acts, float* y, size_t ld_y);
// Q8_0_S24 and Q4_0_S24 (dot_2of4_simd.cpp): y[t * ld_y + r] for n_acts tokens.
void dot_rows_2of4_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                        const ActRow* acts, size_t n_acts, float* y, size_t ld_y);
std::string simd_target_name();
// 1 / d for an activation block's scale, 0 when d is 0 or so small that 1 / d overflows
// (the block then quantizes to zeros in every version).
inline float inverse_scale(float d) {
  const float id = d > 0 ? 1.0f / d : 0.0f;
  return id <= 3.0e38f ? id : 0.0f;
}
// kernels::quantize_acts after its checks and resizes: blocks [b0, b1) of `block` values,
// block b at x + b · block.
void quantize_act_blocks_simd(const float* x, size_t b0, size_t b1, uint32_t block,
                              QuantizedActs& out);
void quantize_act_blocks_reference(const float* x, size_t b0, size_t b1, uint32_t block,
                                   QuantizedActs& out);
// The largest code of `bits`-bit activations, and the step of round_acts_to_range and
// quantize_acts_rounded for a range (0: the values stay as they are).
inline float act_qmax(int bits) {
  return static_cast<float>((1 << (bits - 1)) - 1);
}
inline float act_step(int bits, float clip, float range) {
  const float s = clip * range / act_qmax(bits);
  return s > 0 ? s : 0.0f;
}
// kernels::quantize_acts_rounded after its checks and resizes.
void round_act_rows_simd(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                         const float* range, QuantizedActs& out);
void round_act_rows_reference(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                              const float* range, QuantizedActs& out);
void gemm_i8_simd(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
                  int32_t* out, size_t ld_out);

}  // namespace lowbit::kernels

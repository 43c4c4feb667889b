// Searches that choose the scale (and offset) of a small group of values, minimising the
// weighted squared error  sum_i w_i (x_i - value(code_i))^2.  `w` may be null (all ones).
// These are the building blocks of every block quantizer: a block type picks a code range,
// asks for the best float parameters of each group, then rounds the parameters to what the
// format can store and re-rounds the codes (see blocks_*.cpp).
#pragma once

#include <cmath>
#include <cstdint>

#include "lowbit/float_convert.h"

namespace lowbit::quant {

// Nearest code in [lo, hi], ties to even: what std::nearbyint gives in the default rounding
// mode, but inline. The x86-64 baseline has no SSE4.1 round instruction, so nearbyintf is a
// libm call, and the scale searches below round ~50 values per weight. Clamping first keeps
// |c| far below 2^22, where adding and subtracting 1.5·2^23 rounds exactly (the sum's ulp is 1).
// round_clamp_f returns the code as a float, so that loops over many values vectorize.
constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23
inline float round_clamp_f(float v, float lo, float hi) {
  const float c = v < lo ? lo : (v > hi ? hi : v);
  return (c + kRoundMagic) - kRoundMagic;
}
inline int round_clamp(float v, int lo, int hi) {
  return static_cast<int>(round_clamp_f(v, static_cast<float>(lo), static_cast<float>(hi)));
}
inline float weight_at(const float* w, int i) { return w ? w[i] : 1.0f; }

// Stores f as f16 and returns the value the decoder will see.
inline float store_f16(float f, uint16_t* dst) {
  *dst = f32_to_f16(f);
  return f16_to_f32(*dst);
}

// Symmetric codes q in [qmin, qmax], value = d*q. Tries inverse scales around the ones that
// map the largest-magnitude value onto either end of the range, refits d by least squares
// for each, and returns the best d (0 for an all-zero group). d may be negative.
float fit_symmetric(const float* x, const float* w, int n, int qmin, int qmax);

// Ternary codes q in {-1, 0, +1}, value = d*q (d >= 0): the exact weighted least-squares
// optimum. For a fixed set S of non-zero codes the best d is sum_S w|x| / sum_S w, and
// rounding to nearest under any d keeps the |x| above d/2, so the best S is one of the n
// sets "the k largest |x|"; one sorted pass scores them all. 0 for an all-zero group.
float fit_ternary(const float* x, const float* w, int n);

// Affine codes q in [0, qmax], value = scale*q + offset with scale >= 0. With
// offset_nonpositive (K-quant "mins") the offset is kept <= 0.
struct AffineFit { float scale = 0, offset = 0; };
AffineFit fit_affine(const float* x, const float* w, int n, int qmax, bool offset_nonpositive);

// Non-uniform codes: value = d * table[q] over a sorted table of `n_levels` levels.
float fit_table(const float* x, const float* w, int n, const int8_t* table, int n_levels);
int nearest_level(float v, const int8_t* table, int n_levels);

// Weighted error of a group under fixed parameters, codes chosen by nearest rounding.
float error_symmetric(const float* x, const float* w, int n, float d, int qmin, int qmax);
float error_affine(const float* x, const float* w, int n, float scale, float offset, int qmax);
// error_affine of k <= kMaxAffineBatch parameter sets in one pass over the group. Each sum
// runs in the same order as error_affine's (identical results); the k chains of dependent
// additions are independent, so the CPU overlaps them instead of waiting on one.
constexpr int kMaxAffineBatch = 25;
void error_affine_batch(const float* x, const float* w, int n, const AffineFit* fits, int k,
                        int qmax, float* errs);
float error_table(const float* x, const float* w, int n, float d, const int8_t* table,
                  int n_levels);

}  // namespace lowbit::quant

// Searches that choose the scale (and offset) of a small group of values, minimising the
// weighted squared error  sum_i w_i (x_i - value(code_i))^2.  `w` may be null (all ones).
// These are the building blocks of every block quantizer: a block type picks a code range,
// asks for the best float parameters of each group, then rounds the parameters to what the
// format can store and re-rounds the codes (see blocks_*.cpp).
#pragma once

#include <cmath>
#include <cstdint>

namespace lowbit::quant {

inline int round_clamp(float v, int lo, int hi) {
  int q = static_cast<int>(std::nearbyint(v));
  return q < lo ? lo : (q > hi ? hi : q);
}
inline float weight_at(const float* w, int i) { return w ? w[i] : 1.0f; }

// Symmetric codes q in [qmin, qmax], value = d*q. Tries inverse scales around the ones that
// map the largest-magnitude value onto either end of the range, refits d by least squares
// for each, and returns the best d (0 for an all-zero group). d may be negative.
float fit_symmetric(const float* x, const float* w, int n, int qmin, int qmax);

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
float error_table(const float* x, const float* w, int n, float d, const int8_t* table, int n_levels);

}  // namespace lowbit::quant

// The Hadamard transform's SIMD version (hadamard_simd.cpp) and the pieces it shares with the
// reference (hadamard_transform.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lowbit::kernels {

// One row of n = m · p values, [m, p]: H_m (m × m, ±1) across the pieces after the
// butterflies, scale = 1 / √n. `tmp` holds n floats.
struct HadamardPlan {
  uint32_t n, m, p;
  const float* hm;
  float scale;
};
void hadamard_row_reference(const HadamardPlan& plan, float* x, float* tmp);
// Its second half: H_m across the pieces and the scale (after the butterflies).
void hadamard_mix_reference(const HadamardPlan& plan, float* x, float* tmp);
void hadamard_rows_simd(const HadamardPlan& plan, float* x, size_t rows, float* tmp);

}  // namespace lowbit::kernels

// The orthonormal Hadamard transform (kernels::hadamard_rows): the scalar reference and the
// dispatch.
#include "kernels/hadamard_transform.h"

#include <cmath>
#include <vector>

#include "lowbit/kernels.h"
#include "lowbit/rotation.h"

namespace lowbit::kernels {
namespace {

template <typename Each>
void with_plan(uint32_t n, Each&& each) {
  const HadamardFactor f = hadamard_factor(n);
  const HadamardPlan plan{n, f.m, n / f.m, f.h.data(), 1.0f / std::sqrt(static_cast<float>(n))};
  std::vector<float> tmp(n);
  each(plan, tmp.data());
}

}  // namespace

void hadamard_row_reference(const HadamardPlan& plan, float* x, float* tmp) {
  const uint32_t m = plan.m, p = plan.p;
  for (uint32_t a = 0; a < m; ++a) {  // Walsh–Hadamard butterflies on piece a
    float* v = x + uint64_t{a} * p;
    for (uint32_t h = 1; h < p; h *= 2)
      for (uint32_t i = 0; i < p; i += 2 * h)
        for (uint32_t j = i; j < i + h; ++j) {
          const float s = v[j], d = v[j + h];
          v[j] = s + d, v[j + h] = s - d;
        }
  }
  hadamard_mix_reference(plan, x, tmp);
}

void hadamard_mix_reference(const HadamardPlan& plan, float* x, float* tmp) {
  const uint32_t m = plan.m, p = plan.p;
  if (m == 1) {
    for (uint32_t i = 0; i < p; ++i) x[i] *= plan.scale;
    return;
  }
  for (uint32_t a = 0; a < m; ++a)  // tmp[a, :] = Σ_c H_m[a][c] · x[c, :]
    for (uint32_t b = 0; b < p; ++b) {
      float acc = 0;
      for (uint32_t c = 0; c < m; ++c) {
        const float v = x[uint64_t{c} * p + b];
        acc = plan.hm[uint64_t{a} * m + c] > 0 ? acc + v : acc - v;
      }
      tmp[uint64_t{a} * p + b] = acc;
    }
  for (uint32_t i = 0; i < plan.n; ++i) x[i] = tmp[i] * plan.scale;
}

void hadamard_rows_reference(float* x, size_t rows, uint32_t n) {
  with_plan(n, [&](const HadamardPlan& plan, float* tmp) {
    for (size_t r = 0; r < rows; ++r) hadamard_row_reference(plan, x + r * n, tmp);
  });
}

void hadamard_rows(float* x, size_t rows, uint32_t n) {
  if (scalar_forced()) return hadamard_rows_reference(x, rows, n);
  with_plan(n,
            [&](const HadamardPlan& plan, float* tmp) { hadamard_rows_simd(plan, x, rows, tmp); });
}

}  // namespace lowbit::kernels

// The Hadamard transform (kernels::hadamard_rows) with Highway, compiled once per instruction
// set and chosen at run time. The butterflies whose stride is at least a vector, the H_m
// mixing and the scale are vectorised; the strides below a vector run as in the reference.
// Same additions in the same order: bit for bit the reference.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/hadamard_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/hadamard_transform.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

void HadamardRows(const HadamardPlan& plan, float* x, size_t rows, float* tmp) {
  for (size_t r = 0; r < rows; ++r) hadamard_row_reference(plan, x + r * plan.n, tmp);
}

#else

using DF = hn::ScalableTag<float>;

void Butterflies(float* v, uint32_t p) {
  const DF df;
  const uint32_t N = static_cast<uint32_t>(hn::Lanes(df));
  for (uint32_t h = 1; h < p; h *= 2) {
    if (h < N) {
      for (uint32_t i = 0; i < p; i += 2 * h)
        for (uint32_t j = i; j < i + h; ++j) {
          const float s = v[j], d = v[j + h];
          v[j] = s + d, v[j + h] = s - d;
        }
      continue;
    }
    for (uint32_t i = 0; i < p; i += 2 * h)
      for (uint32_t j = i; j < i + h; j += N) {
        const auto s = hn::LoadU(df, v + j), d = hn::LoadU(df, v + j + h);
        hn::StoreU(hn::Add(s, d), df, v + j);
        hn::StoreU(hn::Sub(s, d), df, v + j + h);
      }
  }
}

void HadamardRows(const HadamardPlan& plan, float* x, size_t rows, float* tmp) {
  const DF df;
  const uint32_t N = static_cast<uint32_t>(hn::Lanes(df)), m = plan.m, p = plan.p;
  const auto vscale = hn::Set(df, plan.scale);
  for (size_t r = 0; r < rows; ++r) {
    float* row = x + r * plan.n;
    for (uint32_t a = 0; a < m; ++a) Butterflies(row + uint64_t{a} * p, p);
    if (m == 1 && p % N == 0) {
      for (uint32_t i = 0; i < p; i += N)
        hn::StoreU(hn::Mul(hn::LoadU(df, row + i), vscale), df, row + i);
      continue;
    }
    if (p % N != 0) {  // pieces not a whole number of vectors: the reference's mixing
      hadamard_mix_reference(plan, row, tmp);
      continue;
    }
    for (uint32_t a = 0; a < m; ++a)
      for (uint32_t b = 0; b < p; b += N) {
        auto acc = hn::Zero(df);
        for (uint32_t c = 0; c < m; ++c) {
          const auto v = hn::LoadU(df, row + uint64_t{c} * p + b);
          acc = plan.hm[uint64_t{a} * m + c] > 0 ? hn::Add(acc, v) : hn::Sub(acc, v);
        }
        hn::StoreU(acc, df, tmp + uint64_t{a} * p + b);
      }
    for (uint32_t i = 0; i < plan.n; i += N)
      hn::StoreU(hn::Mul(hn::LoadU(df, tmp + i), vscale), df, row + i);
  }
}

#endif  // vector targets

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(HadamardRows);

void hadamard_rows_simd(const HadamardPlan& plan, float* x, size_t rows, float* tmp) {
  HWY_DYNAMIC_DISPATCH(HadamardRows)(plan, x, rows, tmp);
}

}  // namespace lowbit::kernels
#endif

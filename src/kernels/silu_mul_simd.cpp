// SwiGLU's element-wise step (kernels::silu_mul) with Highway, compiled once per instruction
// set and chosen at run time, and its scalar reference. Highway's Exp replaces std::exp (a
// few ulp apart); the last partial vector goes through the same code from a padded copy, so
// a value's result never depends on where it sits in the array.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/silu_mul_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>

#include "hwy/contrib/math/math-inl.h"
#include "lowbit/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

void SiluMul(float* gate, const float* up, size_t n) {
  const hn::ScalableTag<float> df;
  const size_t N = hn::Lanes(df);
  // Exp is valid up to +104 only: past −g = 88 (e^88 ≈ 1.7e38) the quotient is below 1e-36
  // in size and is taken as 0 (std::exp overflows there and the reference gives −0). NaN
  // passes through the quotient.
  const auto one = hn::Set(df, 1.0f), cap = hn::Set(df, 88.0f);
  auto step = [&](auto g, auto u) {  // g / (1 + e^−g) · u
    const auto neg = hn::Neg(g);
    const auto q = hn::Div(g, hn::Add(one, hn::Exp(df, hn::Min(neg, cap))));
    return hn::Mul(hn::IfThenZeroElse(hn::Gt(neg, cap), q), u);
  };
  size_t i = 0;
  for (; i + N <= n; i += N)
    hn::StoreU(step(hn::LoadU(df, gate + i), hn::LoadU(df, up + i)), df, gate + i);
  if (i == n) return;
  HWY_ALIGN float g[HWY_MAX_BYTES / sizeof(float)] = {}, u[HWY_MAX_BYTES / sizeof(float)] = {};
  std::copy(gate + i, gate + n, g);
  std::copy(up + i, up + n, u);
  hn::Store(step(hn::Load(df, g), hn::Load(df, u)), df, g);
  std::copy(g, g + (n - i), gate + i);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(SiluMul);

void silu_mul_reference(float* gate, const float* up, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void silu_mul(float* gate, const float* up, size_t n) {
  if (scalar_forced()) return silu_mul_reference(gate, up, n);
  HWY_DYNAMIC_DISPATCH(SiluMul)(gate, up, n);
}

}  // namespace lowbit::kernels
#endif

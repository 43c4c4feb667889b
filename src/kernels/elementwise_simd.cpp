// The forward pass's element-wise steps with an exponential (kernels::silu_mul for SwiGLU,
// kernels::softmax for attention) with Highway, compiled once per instruction set and chosen
// at run time, and their scalar references. Highway's Exp replaces std::exp (a few ulp
// apart); the last partial vector goes through the same code from a padded copy, so a
// value's result never depends on where it sits in the array.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/elementwise_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "hwy/contrib/math/math-inl.h"
#include "lowbit/kernels.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

using DF = hn::ScalableTag<float>;
// The tails below go through a copy of at most kTailLanes floats (x86: 16 lanes at most);
// a target with wider vectors takes the scalar reference instead.
constexpr size_t kTailLanes = 64;

void SiluMul(float* gate, const float* up, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  if (N > kTailLanes) return silu_mul_reference(gate, up, n);
  // Exp is valid up to +104 only: past −g = 88 (e^88 ≈ 1.7e38) the quotient is below 1e-36
  // in size and is taken as 0, −inf included (the limit; the reference's −inf / inf is NaN).
  // NaN passes through the quotient.
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
  HWY_ALIGN float g[kTailLanes] = {}, u[kTailLanes] = {};  // the same code on a padded copy
  std::copy(gate + i, gate + n, g);
  std::copy(up + i, up + n, u);
  hn::Store(step(hn::Load(df, g), hn::Load(df, u)), df, g);
  std::copy(g, g + (n - i), gate + i);
}

// row ← e^(row − max) / Σ e^(row − max), the sum in f32 lanes (relative error up to about
// n / N · 2^−24 against the reference's double sum).
void Softmax(float* row, size_t n) {
  const DF df;
  const size_t N = hn::Lanes(df);
  if (N > kTailLanes) return softmax_reference(row, n);
  const float kNegInf = -std::numeric_limits<float>::infinity();
  const size_t body = n / N * N;
  HWY_ALIGN float tail[kTailLanes];  // the last n − body values, then −inf: e^(−inf) = 0
  std::fill(tail, tail + N, kNegInf);
  std::copy(row + body, row + n, tail);
  auto vmax = hn::Load(df, tail);
  for (size_t i = 0; i < body; i += N) vmax = hn::Max(vmax, hn::LoadU(df, row + i));
  const auto mx = hn::Set(df, hn::GetLane(hn::MaxOfLanes(df, vmax)));
  auto sum = hn::Zero(df);
  auto exp_store = [&](float* p, auto x) {
    const auto e = hn::Exp(df, hn::Sub(x, mx));
    hn::StoreU(e, df, p);
    sum = hn::Add(sum, e);
  };
  for (size_t i = 0; i < body; i += N) exp_store(row + i, hn::LoadU(df, row + i));
  exp_store(tail, hn::Load(df, tail));
  const auto inv = hn::Set(df, 1.0f / hn::GetLane(hn::SumOfLanes(df, sum)));
  for (size_t i = 0; i < body; i += N)
    hn::StoreU(hn::Mul(hn::LoadU(df, row + i), inv), df, row + i);
  hn::Store(hn::Mul(hn::Load(df, tail), inv), df, tail);
  std::copy(tail, tail + (n - body), row + body);
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(SiluMul);
HWY_EXPORT(Softmax);

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

void softmax_reference(float* row, size_t n) {
  if (n == 0) return;
  const float mx = *std::max_element(row, row + n);
  double sum = 0;
  for (size_t j = 0; j < n; ++j) {
    row[j] = std::exp(row[j] - mx);
    sum += row[j];
  }
  const float inv = static_cast<float>(1.0 / sum);
  for (size_t j = 0; j < n; ++j) row[j] *= inv;
}

void softmax(float* row, size_t n) {
  if (n == 0) return;
  if (scalar_forced()) return softmax_reference(row, n);
  HWY_DYNAMIC_DISPATCH(Softmax)(row, n);
}

}  // namespace lowbit::kernels
#endif

// The affine K super-block searches and the grids that hold 0 (affine_grids.h).
#include "quant/affine_grids.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

#include "lowbit/float_convert.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

float f16_round(float f) {
  return f16_to_f32(f32_to_f16(f));
}
bool is_f16(float v) {
  return f16_round(v) == v;
}
const float* sub(const float* w, int off) {
  return w ? w + off : nullptr;
}

// The f16 value nearest d > 0 (in f16 steps) whose product with k is an f16 value too, or 0
// when none is within 64 steps. k*v is exact in f32 (11 + 5 significant bits).
float f16_with_exact_multiple(float d, int k) {
  const int h = f32_to_f16(d);
  for (int step = 0; step < 64; ++step)
    for (int c : {h - step, h + step}) {
      if (c <= 0 || c >= 0x7c00) continue;
      const float v = f16_to_f32(static_cast<uint16_t>(c));
      if (is_f16(v * static_cast<float>(k))) return v;
    }
  return 0;
}

// Candidates of one sub-block: parameters and the integer scale and min that store them.
struct SubCandidates {
  static constexpr int kMax = 48;
  AffineFit fits[kMax];
  int sc[kMax], mn[kMax];
  int n = 0;
  void add(float d, float dmin, int a, int b) {
    fits[n] = {d * a, -(dmin * b)};
    sc[n] = a;
    mn[n++] = b;
  }
  // The lowest-error candidate into sc/mn of sub-block j; returns its error.
  float pick(const float* x, const float* w, int len, int qmax, AffineK& p, int j) const {
    float errs[kMax], best = INFINITY;
    for (int c0 = 0; c0 < n; c0 += kMaxAffineBatch)
      error_affine_batch(x, w, len, fits + c0, std::min(n - c0, kMaxAffineBatch), qmax, errs + c0);
    for (int c = 0; c < n; ++c)
      if (errs[c] < best) best = errs[c], p.sc[j] = sc[c], p.mn[j] = mn[c];
    return best;
  }
};

// The integer scale and min next to the rounded ones (scale s, min m >= 0 in floats).
void add_free(SubCandidates& c, float d, float dmin, float s, float m, int smax) {
  const int rs = d > 0 ? round_clamp(s / d, 0, smax) : 0;
  const int rm = dmin > 0 ? round_clamp(m / dmin, 0, smax) : 0;
  for (int a = std::max(rs - 1, 0); a <= std::min(rs + 1, smax); ++a)
    for (int b = std::max(rm - 1, 0); b <= std::min(rm + 1, smax); ++b) c.add(d, dmin, a, b);
}

// The pairs (a, k) within 3 of the integer scale s/d and 2 of the zero code for which
// mn = a*k / 2^e is an integer <= smax.
void add_with_zero(SubCandidates& c, float d, float dmin, int e, float s, int zero, int qmax,
                   int smax) {
  const int rs = d > 0 ? round_clamp(s / d, 0, smax) : 0, unit = 1 << e;
  if (rs <= 3) c.add(d, dmin, 0, 0);
  for (int a = std::max(rs - 3, 1); a <= std::min(rs + 3, smax); ++a)
    for (int k = std::max(zero - 2, 0); k <= std::min(zero + 2, qmax); ++k)
      if (a * k % unit == 0 && a * k <= smax * unit) c.add(d, dmin, a, a * k >> e);
}

}  // namespace

bool has_exact_zero(const float* x, int n) {
  for (int i = 0; i < n; ++i)
    if (x[i] == 0.0f) return true;
  return false;
}

AffineK choose_affine_k(const float* x, const float* w, int n_sub, int len, int qmax, int smax) {
  float s[16], m[16], max_s = 0, max_m = 0;
  for (int j = 0; j < n_sub; ++j) {
    const AffineFit f = fit_affine(x + j * len, sub(w, j * len), len, qmax, true);
    s[j] = f.scale;
    m[j] = -f.offset;
    max_s = std::max(max_s, s[j]);
    max_m = std::max(max_m, m[j]);
  }
  AffineK best;
  float best_err = INFINITY;
  for (float fd : kSuperScaleFactors) {
    for (float fm : {1.0f, 0.94f}) {
      AffineK cand;
      cand.d = f16_round(max_s / smax * fd);
      cand.dmin = f16_round(max_m / smax * fm);
      float err = 0;
      for (int j = 0; j < n_sub; ++j) {
        SubCandidates c;
        add_free(c, cand.d, cand.dmin, s[j], m[j], smax);
        err += c.pick(x + j * len, sub(w, j * len), len, qmax, cand, j);
      }
      if (err < best_err) best_err = err, best = cand;
    }
  }
  return best;
}

AffineK choose_affine_k_with_zero(const float* x, const float* w, int n_sub, int len, int qmax,
                                  int smax) {
  float s[16], max_s = 0;
  int zero[16];
  for (int j = 0; j < n_sub; ++j) {
    const ZeroAffine z = fit_affine_with_zero(x + j * len, sub(w, j * len), len, qmax, false);
    s[j] = z.d, zero[j] = z.zero;
    max_s = std::max(max_s, s[j]);
  }
  // dmin = 2^e d: e up to the bits of qmax lets mn = sc*k/2^e reach sc = smax, k = qmax.
  // Super-scales above max/smax leave the largest sub-block's scale room to move to a value
  // whose product with its zero code divides by 2^e.
  const int max_e = std::bit_width(static_cast<unsigned>(qmax));
  AffineK best;
  float best_err = INFINITY;
  for (float fd : {1.0f, 1.1f, 1.2f, 1.3f, 1.4f, 1.5f})
    for (int e = 0; e <= max_e; ++e) {
      AffineK cand;
      cand.d = f16_round(max_s / smax * fd);
      cand.dmin = std::ldexp(cand.d, e);
      if (!is_f16(cand.dmin)) continue;
      float err = 0;
      for (int j = 0; j < n_sub; ++j) {
        SubCandidates c;
        add_with_zero(c, cand.d, cand.dmin, e, s[j], zero[j], qmax, smax);
        err += c.pick(x + j * len, sub(w, j * len), len, qmax, cand, j);
      }
      if (err < best_err) best_err = err, best = cand;
    }
  return best;
}

ZeroAffine fit_affine_with_zero(const float* x, const float* w, int n, int qmax, bool f16) {
  const auto [lo, hi] = std::minmax_element(x, x + n);
  if (*lo == 0 && *hi == 0) return {};
  // The zero code that puts the smallest and the largest value on the ends, and its neighbours.
  const int k0 = round_clamp(qmax * -*lo / (*hi - *lo), 0, qmax);
  ZeroAffine best;
  float best_err = INFINITY;
  for (int k = std::max(k0 - 2, 0); k <= std::min(k0 + 2, qmax); ++k) {
    float d = fit_symmetric(x, w, n, -k, qmax - k);
    int z = k;
    if (d < 0) d = -d, z = qmax - k;  // the same set of values, zero counted from the top
    if (f16 && (d = f16_with_exact_multiple(d, z)) == 0) continue;
    const float err = error_symmetric(x, w, n, d, -z, qmax - z);
    if (err < best_err) best_err = err, best = {d, z};
  }
  if (best_err == INFINITY)  // no f16 pair within reach: zero at code 0, m = 0
    best = {f16 ? f16_round(std::max(*hi, 0.0f) / qmax) : std::max(*hi, 0.0f) / qmax, 0};
  return best;
}

}  // namespace lowbit::quant

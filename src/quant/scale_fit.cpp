#include "quant/scale_fit.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace lowbit::quant {
namespace {

// Index of the value with the largest magnitude (its sign matters for symmetric fits).
int argmax_abs(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(x[best])) best = i;
  return best;
}

// Four floats per vector (GCC vector extensions: SSE2 on the x86-64 baseline, NEON on arm64).
using V4 = float __attribute__((vector_size(16)));
// round_clamp_f in every lane: the same comparisons and the same rounding additions.
inline V4 round_clamp_v(V4 t, V4 lo, V4 hi) {
  const V4 magic = V4{} + kRoundMagic;
  t = t < lo ? lo : (t > hi ? hi : t);
  return (t + magic) - magic;
}

// Candidates of one batched search: at most kMaxAffineBatch (affine) or 42 (symmetric).
constexpr int kMaxCandidates = 44;

// For k candidate code maps q_c(x) = round_clamp((x - shift_c) * inv_c, lo, hi), the sums
// over the group that a least-squares fit needs: Σw·q, Σw·q², Σw·x·q per candidate, and
// Σw, Σw·x once (the same for all). Codes are made four candidates per float vector, the
// sums two per double vector (GCC vector extensions), each lane doing the scalar operations
// in the scalar order, so every sum equals the one-candidate loop's bit for bit.
struct CodeSums {
  double sw = 0, sx = 0;
  double sq[kMaxCandidates], sqq[kMaxCandidates], sxq[kMaxCandidates];
};
void code_sums_batch(const float* x, const float* w, int n, const float* shift, const float* inv,
                     int k, int lo, int hi, CodeSums& out) {
  using D2 = double __attribute__((vector_size(16)));
  constexpr int kVecs = kMaxCandidates / 4;
  const int nv = (k + 3) / 4;
  V4 vshift[kVecs] = {}, vinv[kVecs] = {};
  D2 sq[2 * kVecs] = {}, sqq[2 * kVecs] = {}, sxq[2 * kVecs] = {};
  for (int c = 0; c < k; ++c) {
    vshift[c / 4][c % 4] = shift[c];
    vinv[c / 4][c % 4] = inv[c];
  }
  const V4 zero = V4{} + 0.0f, vlo = zero + static_cast<float>(lo),
           vhi = zero + static_cast<float>(hi);
  double sw = 0, sx = 0;
  for (int i = 0; i < n; ++i) {
    const double wi = weight_at(w, i), wx = wi * x[i];
    sw += wi;
    sx += wx;
    const V4 xi = zero + x[i];
    const D2 dwi = D2{} + wi, dwx = D2{} + wx;
    for (int v = 0; v < nv; ++v) {
      const V4 qf = round_clamp_v((xi - vshift[v]) * vinv[v], vlo, vhi);
      for (int h = 0; h < 2; ++h) {
        const D2 q = {qf[2 * h], qf[2 * h + 1]};
        sq[2 * v + h] += dwi * q;
        sqq[2 * v + h] += dwi * q * q;
        sxq[2 * v + h] += dwx * q;
      }
    }
  }
  out.sw = sw;
  out.sx = sx;
  for (int c = 0; c < k; ++c) {
    out.sq[c] = sq[c / 2][c % 2];
    out.sqq[c] = sqq[c / 2][c % 2];
    out.sxq[c] = sxq[c / 2][c % 2];
  }
}

// Least-squares (scale, offset) for fixed codes q_i = round_clamp((x_i - shift) * inv, 0, qmax),
// for k (shift, inv) pairs in one pass; keeps the K-quant constraint offset <= 0 when asked.
// A failed fit (singular system) gets scale -1.
void refit_affine_batch(const float* x, const float* w, int n, const float* shift, const float* inv,
                        int k, int qmax, bool offset_nonpositive, AffineFit* out) {
  CodeSums s;
  code_sums_batch(x, w, n, shift, inv, k, 0, qmax, s);
  for (int c = 0; c < k; ++c) {
    const double q1 = s.sq[c], q2 = s.sqq[c], xq = s.sxq[c];
    const double det = s.sw * q2 - q1 * q1;
    if (det <= 0) {
      out[c] = {-1, 0};
      continue;
    }
    AffineFit f{static_cast<float>((s.sw * xq - q1 * s.sx) / det),
                static_cast<float>((q2 * s.sx - q1 * xq) / det)};
    if (offset_nonpositive && f.offset > 0) f = {static_cast<float>(q2 > 0 ? xq / q2 : 0), 0.0f};
    out[c] = f;
  }
}

}  // namespace

float error_symmetric(const float* x, const float* w, int n, float d, int qmin, int qmax) {
  const float id = d != 0 ? 1.0f / d : 0.0f;
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float e = x[i] - d * round_clamp(x[i] * id, qmin, qmax);
    err += weight_at(w, i) * e * e;
  }
  return err;
}

float fit_symmetric(const float* x, const float* w, int n, int qmin, int qmax) {
  const float amax = x[argmax_abs(x, n)];
  if (amax == 0) return 0;
  // The extreme value lands on qmax or on qmin (negative d), nudged by up to one step: up to
  // 42 inverse scales, their sums made side by side, then compared in the scalar order.
  float shift[kMaxCandidates] = {}, inv[kMaxCandidates];
  int k = 0;
  for (int end : {qmax, qmin}) {
    if (end == 0) continue;
    for (int step = -10; step <= 10; ++step)
      inv[k++] = (end + 0.1f * step * (end > 0 ? 1 : -1)) / amax;
  }
  CodeSums s;
  code_sums_batch(x, w, n, shift, inv, k, qmin, qmax, s);
  float best_d = 0, best_score = -1;
  for (int c = 0; c < k; ++c) {
    if (s.sqq[c] <= 0) continue;
    const double score = s.sxq[c] * s.sxq[c] / s.sqq[c];  // error = sum w x^2 - score
    if (score > best_score) {
      best_score = static_cast<float>(score);
      best_d = static_cast<float>(s.sxq[c] / s.sqq[c]);
    }
  }
  return best_d;
}

float fit_ternary(const float* x, const float* w, int n) {
  std::vector<int> order(n);
  for (int i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](int a, int b) { return std::fabs(x[a]) > std::fabs(x[b]); });
  // error(S) = sum w x^2 - (sum_S w|x|)^2 / sum_S w: maximise the second term.
  double sx = 0, sw = 0, best = 0, best_d = 0;
  for (int k = 0; k < n; ++k) {
    const int i = order[k];
    sx += weight_at(w, i) * std::fabs(x[i]);
    sw += weight_at(w, i);
    if (sw > 0 && sx * sx / sw > best) best = sx * sx / sw, best_d = sx / sw;
  }
  return static_cast<float>(best_d);
}

void error_affine_batch(const float* x, const float* w, int n, const AffineFit* fits, int k,
                        int qmax, float* errs) {
  // Four candidates per vector. Each lane does exactly the scalar operations of error_affine,
  // in the same order and without fused multiply-adds, so every sum is bit-identical to the
  // scalar one.
  using V = V4;
  constexpr int kLanes = 4, kVecs = (kMaxAffineBatch + kLanes - 1) / kLanes;
  V scale[kVecs], offset[kVecs], is[kVecs], acc[kVecs];
  const int nv = (k + kLanes - 1) / kLanes;
  for (int v = 0; v < nv; ++v)
    for (int l = 0; l < kLanes; ++l) {
      const int c = v * kLanes + l;
      // padding lanes: scale 0, their sums unused
      const AffineFit f = c < k ? fits[c] : AffineFit{};
      scale[v][l] = f.scale;
      offset[v][l] = f.offset;
      is[v][l] = f.scale > 0 ? 1.0f / f.scale : 0.0f;
      acc[v][l] = 0;
    }
  const V zero = V{} + 0.0f, hi = zero + static_cast<float>(qmax);
  for (int i = 0; i < n; ++i) {
    const V xi = zero + x[i], wi = zero + weight_at(w, i);
    for (int v = 0; v < nv; ++v) {
      const V q = round_clamp_v((xi - offset[v]) * is[v], zero, hi);
      const V e = xi - (scale[v] * q + offset[v]);
      acc[v] += wi * e * e;
    }
  }
  for (int c = 0; c < k; ++c) errs[c] = acc[c / kLanes][c % kLanes];
}

float error_affine(const float* x, const float* w, int n, float scale, float offset, int qmax) {
  const AffineFit f{scale, offset};
  float err;
  error_affine_batch(x, w, n, &f, 1, qmax, &err);
  return err;
}

AffineFit fit_affine(const float* x, const float* w, int n, int qmax, bool offset_nonpositive) {
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  if (offset_nonpositive) lo = std::min(lo, 0.0f);
  if (hi <= lo) return {0.0f, offset_nonpositive ? std::min(lo, 0.0f) : lo};
  AffineFit best{(hi - lo) / qmax, lo};
  float best_err = error_affine(x, w, n, best.scale, best.offset, qmax);
  auto consider = [&](const AffineFit& f, float err) {
    if (f.scale > 0 && err < best_err) { best_err = err; best = f; }
  };
  // Codes from inverse scales around qmax / range, refitted by least squares; the 25
  // candidates are independent, so they are fitted and scored side by side (same sums,
  // same order of comparison as one after another).
  constexpr int kSteps = 25;
  static_assert(kSteps <= kMaxAffineBatch);
  float shift[kSteps], inv[kSteps], errs[kSteps];
  AffineFit fits[kSteps];
  for (int k = 0; k < kSteps; ++k) {
    shift[k] = lo;
    inv[k] = (qmax + 0.06f * (k - 12)) / (hi - lo);
  }
  refit_affine_batch(x, w, n, shift, inv, kSteps, qmax, offset_nonpositive, fits);
  error_affine_batch(x, w, n, fits, kSteps, qmax, errs);
  for (int k = 0; k < kSteps; ++k) consider(fits[k], errs[k]);
  // Polish: re-round the codes under the best parameters and refit twice.
  for (int it = 0; it < 2; ++it) {
    const float cur_shift = best.offset, cur_inv = 1.0f / best.scale;
    AffineFit f;
    refit_affine_batch(x, w, n, &cur_shift, &cur_inv, 1, qmax, offset_nonpositive, &f);
    if (f.scale > 0) consider(f, error_affine(x, w, n, f.scale, f.offset, qmax));
  }
  return best;
}

int nearest_level(float v, const int8_t* table, int n_levels) {
  // Table is sorted ascending: binary search for the first level >= v, then compare neighbours.
  int lo = 0, hi = n_levels - 1;
  if (v <= table[0]) return 0;
  if (v >= table[hi]) return hi;
  while (hi - lo > 1) {
    const int mid = (lo + hi) / 2;
    (v < table[mid] ? hi : lo) = mid;
  }
  return v - table[lo] < table[hi] - v ? lo : hi;
}

float error_table(const float* x, const float* w, int n, float d, const int8_t* table,
                  int n_levels) {
  const float id = d != 0 ? 1.0f / d : 0.0f;
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float e = x[i] - d * table[nearest_level(x[i] * id, table, n_levels)];
    err += weight_at(w, i) * e * e;
  }
  return err;
}

float fit_table(const float* x, const float* w, int n, const int8_t* table, int n_levels) {
  const float amax = x[argmax_abs(x, n)];
  if (amax == 0) return 0;
  float best_d = 0, best_score = -1;
  for (int end : {static_cast<int>(table[0]), static_cast<int>(table[n_levels - 1])}) {
    for (int k = -10; k <= 10; ++k) {
      const float iscale = (end + 1.5f * k) / amax;
      double sxq = 0, sqq = 0;
      for (int i = 0; i < n; ++i) {
        const int q = table[nearest_level(x[i] * iscale, table, n_levels)];
        const double wi = weight_at(w, i);
        sxq += wi * x[i] * q;
        sqq += wi * q * q;
      }
      if (sqq <= 0) continue;
      const double score = sxq * sxq / sqq;
      if (score > best_score) {
        best_score = static_cast<float>(score);
        best_d = static_cast<float>(sxq / sqq);
      }
    }
  }
  return best_d;
}

}  // namespace lowbit::quant

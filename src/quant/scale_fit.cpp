#include "quant/scale_fit.h"

#include <algorithm>
#include <limits>

namespace lowbit::quant {
namespace {

// Index of the value with the largest magnitude (its sign matters for symmetric fits).
int argmax_abs(const float* x, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (std::fabs(x[i]) > std::fabs(x[best])) best = i;
  return best;
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
  float best_d = 0, best_score = -1;
  // The extreme value lands on qmax or on qmin (negative d), nudged by up to one step.
  for (int end : {qmax, qmin}) {
    if (end == 0) continue;
    for (int k = -10; k <= 10; ++k) {
      const float iscale = (end + 0.1f * k * (end > 0 ? 1 : -1)) / amax;
      double sxq = 0, sqq = 0;
      for (int i = 0; i < n; ++i) {
        const int q = round_clamp(x[i] * iscale, qmin, qmax);
        const double wi = weight_at(w, i);
        sxq += wi * x[i] * q;
        sqq += wi * q * q;
      }
      if (sqq <= 0) continue;
      const double score = sxq * sxq / sqq;  // error = sum w x^2 - score
      if (score > best_score) {
        best_score = static_cast<float>(score);
        best_d = static_cast<float>(sxq / sqq);
      }
    }
  }
  return best_d;
}

float error_affine(const float* x, const float* w, int n, float scale, float offset, int qmax) {
  const float is = scale > 0 ? 1.0f / scale : 0.0f;
  float err = 0;
  for (int i = 0; i < n; ++i) {
    const float e = x[i] - (scale * round_clamp((x[i] - offset) * is, 0, qmax) + offset);
    err += weight_at(w, i) * e * e;
  }
  return err;
}

AffineFit fit_affine(const float* x, const float* w, int n, int qmax, bool offset_nonpositive) {
  float lo = *std::min_element(x, x + n), hi = *std::max_element(x, x + n);
  if (offset_nonpositive) lo = std::min(lo, 0.0f);
  if (hi <= lo) return {0.0f, offset_nonpositive ? std::min(lo, 0.0f) : lo};
  AffineFit best{(hi - lo) / qmax, lo};
  float best_err = error_affine(x, w, n, best.scale, best.offset, qmax);
  // Least-squares (scale, offset) for fixed codes; keeps the constraints.
  auto refit = [&](auto code_of) -> AffineFit {
    double sw = 0, sq = 0, sqq = 0, sx = 0, sxq = 0;
    for (int i = 0; i < n; ++i) {
      const double wi = weight_at(w, i), q = code_of(i);
      sw += wi; sq += wi * q; sqq += wi * q * q; sx += wi * x[i]; sxq += wi * x[i] * q;
    }
    const double det = sw * sqq - sq * sq;
    if (det <= 0) return {-1, 0};
    AffineFit f{static_cast<float>((sw * sxq - sq * sx) / det), static_cast<float>((sqq * sx - sq * sxq) / det)};
    if (offset_nonpositive && f.offset > 0) f = {static_cast<float>(sqq > 0 ? sxq / sqq : 0), 0.0f};
    return f;
  };
  auto consider = [&](AffineFit f) {
    if (!(f.scale > 0)) return;
    const float err = error_affine(x, w, n, f.scale, f.offset, qmax);
    if (err < best_err) { best_err = err; best = f; }
  };
  for (int k = -12; k <= 12; ++k) {
    const float iscale = (qmax + 0.06f * k) / (hi - lo);
    AffineFit f = refit([&](int i) { return round_clamp((x[i] - lo) * iscale, 0, qmax); });
    consider(f);
  }
  // Polish: re-round the codes under the best parameters and refit twice.
  for (int it = 0; it < 2; ++it) {
    const AffineFit cur = best;
    const float is = 1.0f / cur.scale;
    consider(refit([&](int i) { return round_clamp((x[i] - cur.offset) * is, 0, qmax); }));
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

float error_table(const float* x, const float* w, int n, float d, const int8_t* table, int n_levels) {
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

// IQ3_S (layout in block_layouts.h): a codebook type, so each group of 4 magnitudes is
// rounded to a whole grid entry at once rather than value by value. Signs are stored
// separately, so only |x| meets the grid.
//
// Quantizer, minimising sum_i w_i (x_i - value_i)^2 per 256-value block:
//  1. each sub-block of 32: try scales that put max|x| at magnitudes 1 .. 17 in steps of 1/2
//     (the grid's magnitudes are 1, 3, .. 15, but it holds few of the points near the
//     corners, e.g. (l, l, l, l) only for l = 0), give every group its nearest entry, refit
//     the scale by least squares, and keep the best; two alternating passes (assign,
//     refit) follow;
//  2. the f16 super-scale d puts the largest sub-block scale at 1 + 2*15; each sub-block
//     then takes the 4-bit code c among round((s/d - 1)/2) and its two neighbours whose
//     scale d (1 + 2c), with the groups re-assigned, has the lowest error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/iq_grids.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

constexpr int kSub = 32, kGroup = 4, kGroupsPerSub = kSub / kGroup;

// The entry nearest to magnitudes a[0..3] (weights w) at scale s: the per-value nearest
// levels when that vector is on the grid (then it is the nearest entry), else the best of
// the grid's entries near that vector.
int nearest_entry(const IqGrid& g, const float* a, const float* w, float s) {
  int code = 0;
  for (int j = kGroup - 1; j >= 0; --j)
    code = code * 8 + round_clamp(s > 0 ? 0.5f * (a[j] / s - 1) : 0.0f, 0, 7);
  if (g.index[code] >= 0) return g.index[code];
  int best = 0;
  float best_err = std::numeric_limits<float>::max();
  for (int k = g.near_start[code]; k < g.near_start[code + 1]; ++k) {
    const int i = g.near[k];
    const uint8_t* l = g.entry(i);
    float err = 0;
    for (int j = 0; j < kGroup; ++j) {
      const float d = s * static_cast<float>(2 * l[j] + 1) - a[j];
      err += w[j] * d * d;
    }
    if (err < best_err) best_err = err, best = i;
  }
  return best;
}

struct SubFit {
  int entry[kGroupsPerSub];
  double sxq = 0, sqq = 0;  // sum w a q, sum w q^2 over the sub-block (q = 2l + 1)
};

SubFit assign(const IqGrid& g, const float* a, const float* w, float s) {
  SubFit f;
  for (int k = 0; k < kGroupsPerSub; ++k) {
    f.entry[k] = nearest_entry(g, a + kGroup * k, w + kGroup * k, s);
    const uint8_t* l = g.entry(f.entry[k]);
    for (int j = 0; j < kGroup; ++j) {
      const double q = 2 * l[j] + 1, wi = w[kGroup * k + j];
      f.sxq += wi * a[kGroup * k + j] * q, f.sqq += wi * q * q;
    }
  }
  return f;
}

// Weighted squared error of the sub-block's magnitudes at scale s with f's entries.
double error_at(const IqGrid& g, const float* a, const float* w, const SubFit& f, float s) {
  double err = 0;
  for (int k = 0; k < kGroupsPerSub; ++k) {
    const uint8_t* l = g.entry(f.entry[k]);
    for (int j = 0; j < kGroup; ++j) {
      const double d = s * (2.0 * l[j] + 1) - a[kGroup * k + j];
      err += w[kGroup * k + j] * d * d;
    }
  }
  return err;
}

// Step 1: the float scale of one sub-block (0 when it is all zero).
float fit_sub_scale(const IqGrid& g, const float* a, const float* w) {
  const float amax = *std::max_element(a, a + kSub);
  if (amax == 0) return 0;
  double best_score = -1;
  float best = amax / 15;
  for (int t = 2; t <= 34; ++t) {  // max|x| at magnitude t/2
    const SubFit f = assign(g, a, w, 2 * amax / static_cast<float>(t));
    if (f.sqq > 0 && f.sxq * f.sxq / f.sqq > best_score)
      best_score = f.sxq * f.sxq / f.sqq, best = static_cast<float>(f.sxq / f.sqq);
  }
  for (int pass = 0; pass < 2; ++pass) {
    const SubFit f = assign(g, a, w, best);
    if (!(f.sqq > 0) || f.sxq * f.sxq / f.sqq <= best_score) break;
    best_score = f.sxq * f.sxq / f.sqq, best = static_cast<float>(f.sxq / f.sqq);
  }
  return best;
}

}  // namespace

void quantize_iq3_s(const float* x, const float* w, uint8_t* out) {
  const IqGrid& g = iq_grid(IqGridId::Iq3s);
  auto* b = reinterpret_cast<BlockIQ3_S*>(out);
  std::memset(out, 0, sizeof(BlockIQ3_S));
  float a[kQKK], wt[kQKK], scale[kQKK / kSub];
  for (int e = 0; e < kQKK; ++e) {
    a[e] = std::fabs(x[e]), wt[e] = weight_at(w, e);
    if (x[e] < 0) b->signs[e / 8] |= static_cast<uint8_t>(1 << (e % 8));
  }
  float max_scale = 0;
  for (int s = 0; s < kQKK / kSub; ++s)
    max_scale = std::max(max_scale, scale[s] = fit_sub_scale(g, a + kSub * s, wt + kSub * s));
  b->d = f32_to_f16(max_scale / 31);
  const float d = f16_to_f32(b->d);
  if (d == 0) return;  // all zero (or below f16): every value decodes to 0
  for (int s = 0; s < kQKK / kSub; ++s) {
    const float* as = a + kSub * s;
    const float* ws = wt + kSub * s;
    const int c0 = round_clamp(0.5f * (scale[s] / d - 1), 0, 15);
    double best_err = std::numeric_limits<double>::max();
    SubFit best{};
    int best_c = c0;
    for (int c = std::max(0, c0 - 1); c <= std::min(15, c0 + 1); ++c) {
      const float eff = d * static_cast<float>(1 + 2 * c);
      const SubFit f = assign(g, as, ws, eff);
      const double err = error_at(g, as, ws, f, eff);
      if (err < best_err) best_err = err, best = f, best_c = c;
    }
    b->scales[s / 2] |= static_cast<uint8_t>(best_c << (4 * (s % 2)));
    for (int k = 0; k < kGroupsPerSub; ++k) {
      const int grp = kGroupsPerSub * s + k, idx = best.entry[k];
      b->qs[grp] = static_cast<uint8_t>(idx & 255);
      b->qh[grp / 8] |= static_cast<uint8_t>((idx >> 8) << (grp % 8));
    }
  }
}

void dequantize_iq3_s(const uint8_t* in, float* y) {
  const IqGrid& g = iq_grid(IqGridId::Iq3s);
  const auto* b = reinterpret_cast<const BlockIQ3_S*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQKK; ++e) {
    const float db = d * static_cast<float>(1 + 2 * iq3s_scale_code(b, e / kSub));
    const int level = g.entry(iq3s_entry(b, e / kGroup))[e % kGroup];
    y[e] = db * static_cast<float>(2 * level + 1) * (iq3s_negative(b, e) ? -1.0f : 1.0f);
  }
}

}  // namespace lowbit::quant

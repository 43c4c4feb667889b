// IQ1_S and IQ1_M (iq_shapes.h): groups of 8 signed values on the ternary grid, each group
// shifted by a delta of +-1/8, minimising sum_i w_i (x_i - value_i)^2 per 256-value block:
//  1. each sub-block: a starting scale from the best ternary rounding that one split of the
//     sorted values allows. Sorted by x, an optimal ternary vector with one delta sends a
//     prefix to -1, a suffix to +1 and the middle to 0, so every split (i1, i2) and every
//     choice of delta signs is scored by prefix sums (the least-squares scale of levels L
//     gives error sum w x^2 - (sum w x L)^2 / sum w L^2). Exact for IQ1_S; IQ1_M's two
//     delta units would each want their own split, which the grid assignment below allows.
//     Each group then takes its nearest grid entry at that scale and the scale is refitted,
//     alternating while the error falls;
//  2. d puts the largest sub-block scale at code 7 (2c + 1 = 15); each sub-block takes the
//     code, among the nearest to its scale and that code's neighbours, and the delta signs
//     whose re-assigned groups have the lowest error;
//  3. d becomes sum w x^2 / sum w x q (q = d's multiple in each value), which makes the
//     error orthogonal to x: least-squares scales leave ternary blocks 20-30% shorter than x,
//     and the model feels that coherent shrink far more than the error itself (tinyllm-8m,
//     IQ1_S: KLD 0.285 with least-squares d, 0.179 with this one; docs/QUANTIZATION.md).
//     At most 2x the d of step 2.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "lowbit/float_convert.h"
#include "quant/block_layouts.h"
#include "quant/iq_fields.h"
#include "quant/iq_shapes.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

constexpr int kGroups = kQKK / 8, kMaxSubs = kQKK / 16, kMaxDeltas = kQKK / 8;

const Iq1Shape kShapes[] = {{DType::IQ1_S, 32, 32}, {DType::IQ1_M, 16, 8}};

// The entries of `n` groups of 8 (x, w) at scale s, each group's delta given.
struct Assignment {
  int entry[4] = {};
  double sxl = 0, sll = 0;  // sum w x L and sum w L^2, L = level + delta
  double score() const { return sll > 0 && sxl > 0 ? sxl * sxl / sll : 0; }
};

struct Searcher {
  const IqGrid& g = iq_grid(IqGridId::Iq1s);

  // The grid entry nearest (weighted) to x[0 .. 8) among values s (l - 1 + dl).
  int nearest_entry(const float* x, const float* w, float s, float dl) const {
    int code = 0;
    for (int j = 7; j >= 0; --j) {
      const float t = s > 0 ? x[j] / s - dl : 0.0f;
      code = code * 3 + (t < -0.5f ? 0 : t > 0.5f ? 2 : 1);
    }
    if (g.index[code] >= 0) return g.index[code];
    int best = g.near[g.near_start[code]];
    float best_err = std::numeric_limits<float>::max();
    for (int k = g.near_start[code]; k < g.near_start[code + 1]; ++k) {
      const uint8_t* l = g.entry(g.near[k]);
      float err = 0;
      for (int j = 0; j < 8; ++j) {
        const float d = s * (static_cast<float>(l[j] - 1) + dl) - x[j];
        err += w[j] * d * d;
      }
      if (err < best_err) best_err = err, best = g.near[k];
    }
    return best;
  }
  // Groups 0 .. n of x, w with deltas dl[k / per_delta].
  Assignment assign(const float* x, const float* w, int n, float s, const float* dl,
                    int per_delta) const {
    Assignment a;
    for (int k = 0; k < n; ++k) {
      const float d = dl[k / per_delta];
      a.entry[k] = nearest_entry(x + 8 * k, w + 8 * k, s, d);
      const uint8_t* l = g.entry(a.entry[k]);
      for (int j = 0; j < 8; ++j) {
        const double L = l[j] - 1 + d, wi = w[8 * k + j];
        a.sxl += wi * x[8 * k + j] * L, a.sll += wi * L * L;
      }
    }
    return a;
  }
};

// Step 1 for one sub-block of n values: its scale (0 when all zero) and delta signs.
float fit_sub(const Searcher& s, const float* x, const float* w, int n, int per_delta,
              bool* negative) {
  const int n_deltas = n / per_delta;
  int order[32];
  std::iota(order, order + n, 0);
  std::stable_sort(order, order + n, [&](int a, int b) { return x[a] < x[b]; });
  // Prefix sums over the sorted values: px = sum w x, pw[u] = sum w of delta unit u.
  double px[33] = {}, pw[2][33] = {}, wx[2] = {}, wt[2] = {};
  for (int k = 0; k < n; ++k) {
    const int i = order[k], u = i / per_delta;
    px[k + 1] = px[k] + w[i] * x[i];
    for (int v = 0; v < n_deltas; ++v) pw[v][k + 1] = pw[v][k] + (v == u ? w[i] : 0.0);
    wx[u] += w[i] * x[i], wt[u] += w[i];
  }
  double best = 0, scale = 0;
  for (int mask = 0; mask < (1 << n_deltas); ++mask) {
    double cx = 0;
    for (int u = 0; u < n_deltas; ++u) cx += iq1_delta((mask >> u) & 1) * wx[u];
    for (int i1 = 0; i1 <= n; ++i1)
      for (int i2 = i1; i2 <= n; ++i2) {
        const double sxl = px[n] - px[i2] - px[i1] + cx;
        if (sxl <= 0) continue;
        double sll = 0;
        for (int u = 0; u < n_deltas; ++u) {
          const double neg = pw[u][i1], pos = pw[u][n] - pw[u][i2], dl = iq1_delta((mask >> u) & 1);
          sll += neg + pos + 2 * dl * (pos - neg) + dl * dl * wt[u];
        }
        if (sll > 0 && sxl * sxl > best * sll) {
          best = sxl * sxl / sll, scale = sxl / sll;
          for (int u = 0; u < n_deltas; ++u) negative[u] = (mask >> u) & 1;
        }
      }
  }
  if (scale <= 0) return 0;
  float dl[4];
  for (int u = 0; u < n_deltas; ++u) dl[u] = iq1_delta(negative[u]);
  // The grid holds 2048 of the 6561 ternary vectors: assign, refit, while the error falls.
  double best_score = 0;
  float s_best = static_cast<float>(scale);
  for (int pass = 0; pass < 3; ++pass) {
    const Assignment a = s.assign(x, w, n / 8, s_best, dl, per_delta / 8);
    if (a.score() <= best_score) break;
    best_score = a.score(), s_best = static_cast<float>(a.sxl / a.sll);
  }
  return s_best;
}

// Sum w (x - s (L))^2 of groups whose entries and deltas are given.
double error_of(const IqGrid& g, const float* x, const float* w, int n, float s, const int* entry,
                const float* dl, int per_delta) {
  double err = 0;
  for (int k = 0; k < n; ++k) {
    const uint8_t* l = g.entry(entry[k]);
    for (int j = 0; j < 8; ++j) {
      const double d = s * (static_cast<double>(l[j] - 1) + dl[k / per_delta]) - x[8 * k + j];
      err += w[8 * k + j] * d * d;
    }
  }
  return err;
}

}  // namespace

void quantize_iq1(const Iq1Shape& shape, const float* x, const float* w, uint8_t* out) {
  const Searcher s;
  const int n_sub = kQKK / shape.sub, per_sub = shape.sub / 8,
            deltas_per_sub = shape.sub / shape.delta;
  const int groups_per_delta = shape.delta / 8;
  float wt[kQKK], scale[kMaxSubs];
  for (int e = 0; e < kQKK; ++e) wt[e] = weight_at(w, e);
  bool negative[kMaxDeltas] = {};
  float max_scale = 0;
  for (int b = 0; b < n_sub; ++b)
    max_scale =
        std::max(max_scale, scale[b] = fit_sub(s, x + shape.sub * b, wt + shape.sub * b, shape.sub,
                                               shape.delta, negative + deltas_per_sub * b));
  int codes[kMaxSubs] = {}, entries[kGroups] = {};
  uint16_t d16 = 0;
  const float d = store_f16(max_scale / 15, &d16);
  if (!(d > 0)) return shape.pack(0, codes, entries, negative, out);  // every value is 0
  // Each sub-block: the code and delta signs of lowest error, groups re-assigned.
  for (int b = 0; b < n_sub; ++b) {
    const float* xb = x + shape.sub * b;
    const float* wb = wt + shape.sub * b;
    const int c0 = std::clamp(static_cast<int>(std::lround((scale[b] / d - 1) / 2)), 0, 7);
    double best_err = std::numeric_limits<double>::max();
    for (int c = std::max(0, c0 - 1); c <= std::min(7, c0 + 1); ++c) {
      const float eff = d * static_cast<float>(2 * c + 1);
      double err = 0;
      int e_c[4];
      bool neg_c[4];
      for (int u = 0; u < deltas_per_sub; ++u) {  // delta units are independent given eff
        double unit_best = std::numeric_limits<double>::max();
        for (int sign = 0; sign < 2; ++sign) {
          const float dl = iq1_delta(sign);
          const Assignment a = s.assign(xb + shape.delta * u, wb + shape.delta * u,
                                        groups_per_delta, eff, &dl, groups_per_delta);
          const double e = error_of(s.g, xb + shape.delta * u, wb + shape.delta * u,
                                    groups_per_delta, eff, a.entry, &dl, groups_per_delta);
          if (e >= unit_best) continue;
          unit_best = e, neg_c[u] = sign;
          std::copy(a.entry, a.entry + groups_per_delta, e_c + groups_per_delta * u);
        }
        err += unit_best;
      }
      if (err >= best_err) continue;
      best_err = err, codes[b] = c;
      std::copy(e_c, e_c + per_sub, entries + per_sub * b);
      std::copy(neg_c, neg_c + deltas_per_sub, negative + deltas_per_sub * b);
    }
  }
  // d rescaled so that the block is not shrunk: sum w x (x - d q) = 0 (see above).
  double sxq = 0, sxx = 0;
  for (int e = 0; e < kQKK; ++e) {
    const double q = iq1_scale(1.0f, codes[e / shape.sub]) *
                     iq1_level(s.g.entry(entries[e / 8])[e % 8], negative[e / shape.delta]);
    sxq += wt[e] * x[e] * q, sxx += wt[e] * x[e] * x[e];
  }
  if (sxq > 0) store_f16(static_cast<float>(std::min(sxx / sxq, 2.0 * d)), &d16);
  shape.pack(d16, codes, entries, negative, out);
}

void dequantize_iq1(const Iq1Shape& shape, const uint8_t* in, float* y) {
  const IqGrid& g = iq_grid(IqGridId::Iq1s);
  const float d = shape.d(in);
  for (int k = 0; k < kGroups; ++k) {
    const float dl = iq1_scale(d, shape.code(in, 8 * k / shape.sub));
    const bool negative = shape.negative_delta(in, 8 * k / shape.delta);
    const uint8_t* l = g.entry(shape.entry(in, k));
    for (int j = 0; j < 8; ++j) y[8 * k + j] = dl * iq1_level(l[j], negative);
  }
}

float Iq1Shape::d(const uint8_t* blk) const {
  uint16_t bits = 0;
  if (type == DType::IQ1_S) {
    std::memcpy(&bits, blk, 2);
  } else {
    const uint8_t* scales = reinterpret_cast<const BlockIQ1_M*>(blk)->scales;
    for (int k = 0; k < 4; ++k) bits |= static_cast<uint16_t>((scales[2 * k + 1] >> 4) << (4 * k));
  }
  return f16_to_f32(bits);
}
int Iq1Shape::code(const uint8_t* blk, int b) const {
  return iq1_code(type, blk, b);
}
int Iq1Shape::entry(const uint8_t* blk, int g) const {
  return iq1_entry(type, blk, g);
}
bool Iq1Shape::negative_delta(const uint8_t* blk, int i) const {
  return iq1_negative_delta(type, blk, i);
}
void Iq1Shape::pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
                    uint8_t* blk) const {
  std::memset(blk, 0, traits(type).type_size);
  if (type == DType::IQ1_S) {
    auto* b = reinterpret_cast<BlockIQ1_S*>(blk);
    b->d = d16;
    for (int g = 0; g < kGroups; ++g) {
      b->qs[g] = static_cast<uint8_t>(entries[g] & 255);
      b->qh[g / 4] |= static_cast<uint16_t>((entries[g] >> 8) << (3 * (g % 4)));
    }
    for (int s = 0; s < 8; ++s)
      b->qh[s] |= static_cast<uint16_t>(codes[s] << 12 | negative[s] << 15);
    return;
  }
  auto* b = reinterpret_cast<BlockIQ1_M*>(blk);
  for (int g = 0; g < kGroups; ++g) {
    b->qs[g] = static_cast<uint8_t>(entries[g] & 255);
    b->qh[g / 2] |= static_cast<uint8_t>(((entries[g] >> 8) | negative[g] << 3) << (4 * (g % 2)));
  }
  for (int k = 0; k < 4; ++k) {
    int word = ((d16 >> (4 * k)) & 15) << 12;
    for (int j = 0; j < 4; ++j) word |= codes[4 * k + j] << (3 * j);
    b->scales[2 * k] = static_cast<uint8_t>(word & 255);
    b->scales[2 * k + 1] = static_cast<uint8_t>(word >> 8);
  }
}

const Iq1Shape* iq1_shape(DType t) {
  for (const Iq1Shape& s : kShapes)
    if (s.type == t) return &s;
  return nullptr;
}

}  // namespace lowbit::quant

// The 3-bit codebook types IQ3_S and IQ3_XXS (iq3_shapes.h): each group of 4 magnitudes is
// rounded to a whole grid entry at once rather than value by value. Signs are stored apart,
// so only |x| meets the grid; with IQ3_XXS's sign parity, a group of 8 with an odd count of
// negatives gives its value of least weight w x^2 the wrong sign, and that value's target
// magnitude becomes -|x| (it then takes the smallest level).
//
// Quantizer, minimising sum_i w_i (x_i - value_i)^2 per 256-value block:
//  1. each sub-block of 32: try scales that put max|x| at 1/15, 1.5/15, ..., 17/15 of the
//     top magnitude (the grids hold few of the points near the corners, e.g. (l, l, l, l)
//     only for l = 0, so a constant row needs the low end), give every group its nearest
//     entry, refit the scale by least squares and keep the best; two alternating passes
//     (assign, refit) follow;
//  2. the f16 super-scale d puts the largest sub-block scale at code 15; each sub-block then
//     takes the code c, among the one nearest its scale and that code's two neighbours,
//     whose scale (with the groups re-assigned) has the lowest error.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/iq3_shapes.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

constexpr int kSub = 32, kGroup = 4, kGroupsPerSub = kSub / kGroup;

const Iq3Shape kShapes[] = {
    {DType::IQ3_S, IqGridId::Iq3s, {1, 3, 5, 7, 9, 11, 13, 15}, false, 1.0f},
    {DType::IQ3_XXS, IqGridId::Iq3xxs, {4, 12, 20, 28, 36, 44, 52, 62}, true, 0.25f},
};

struct Searcher {
  const Iq3Shape& shape;
  const IqGrid& g;

  // The entry nearest to targets a[0..3] (weights w) at scale s: the per-value nearest
  // levels when that vector is on the grid (then it is the nearest entry), else the best of
  // the grid's entries near that vector.
  int nearest_entry(const float* a, const float* w, float s) const {
    int code = 0;
    for (int j = kGroup - 1; j >= 0; --j) {
      int best = 0;
      for (int l = 1; l < 8; ++l)
        if (std::fabs(s * shape.magnitude[l] - a[j]) < std::fabs(s * shape.magnitude[best] - a[j]))
          best = l;
      code = code * 8 + best;
    }
    if (g.index[code] >= 0) return g.index[code];
    int best = 0;
    float best_err = std::numeric_limits<float>::max();
    for (int k = g.near_start[code]; k < g.near_start[code + 1]; ++k) {
      const uint8_t* l = g.entry(g.near[k]);
      float err = 0;
      for (int j = 0; j < kGroup; ++j) {
        const float d = s * shape.magnitude[l[j]] - a[j];
        err += w[j] * d * d;
      }
      if (err < best_err) best_err = err, best = g.near[k];
    }
    return best;
  }

  struct Fit {
    int entry[kGroupsPerSub];
    double sxq = 0, sqq = 0;  // sum w a m, sum w m^2 over the sub-block
  };
  Fit assign(const float* a, const float* w, float s) const {
    Fit f;
    for (int k = 0; k < kGroupsPerSub; ++k) {
      f.entry[k] = nearest_entry(a + kGroup * k, w + kGroup * k, s);
      const uint8_t* l = g.entry(f.entry[k]);
      for (int j = 0; j < kGroup; ++j) {
        const double m = shape.magnitude[l[j]], wi = w[kGroup * k + j];
        f.sxq += wi * a[kGroup * k + j] * m, f.sqq += wi * m * m;
      }
    }
    return f;
  }
  double error_at(const float* a, const float* w, const Fit& f, float s) const {
    double err = 0;
    for (int k = 0; k < kGroupsPerSub; ++k) {
      const uint8_t* l = g.entry(f.entry[k]);
      for (int j = 0; j < kGroup; ++j) {
        const double d = s * static_cast<double>(shape.magnitude[l[j]]) - a[kGroup * k + j];
        err += w[kGroup * k + j] * d * d;
      }
    }
    return err;
  }
  // Step 1: the float scale of one sub-block (0 when it is all zero).
  float fit_sub_scale(const float* a, const float* w) const {
    float amax = 0;
    for (int i = 0; i < kSub; ++i) amax = std::max(amax, std::fabs(a[i]));
    if (amax == 0) return 0;
    const float top = shape.magnitude[7];
    double best_score = -1;
    float best = amax / top;
    for (int t = 2; t <= 34; ++t) {
      const Fit f = assign(a, w, 2 * 15 * amax / (static_cast<float>(t) * top));
      if (f.sqq > 0 && f.sxq > 0 && f.sxq * f.sxq / f.sqq > best_score)
        best_score = f.sxq * f.sxq / f.sqq, best = static_cast<float>(f.sxq / f.sqq);
    }
    for (int pass = 0; pass < 2; ++pass) {
      const Fit f = assign(a, w, best);
      if (!(f.sqq > 0) || f.sxq <= 0 || f.sxq * f.sxq / f.sqq <= best_score) break;
      best_score = f.sxq * f.sxq / f.sqq, best = static_cast<float>(f.sxq / f.sqq);
    }
    return best;
  }
};

void quantize_iq3(const Iq3Shape& shape, const float* x, const float* w, uint8_t* out) {
  const Searcher s{shape, iq_grid(shape.grid)};
  float a[kQKK], wt[kQKK], scale[kQKK / kSub];
  bool negative[kQKK];
  for (int e = 0; e < kQKK; ++e)
    a[e] = std::fabs(x[e]), wt[e] = weight_at(w, e), negative[e] = x[e] < 0;
  for (int k = 0; shape.parity && k < kQKK / 8; ++k) {
    int count = 0, least = 8 * k;
    for (int e = 8 * k; e < 8 * k + 8; ++e) {
      count += negative[e];
      if (wt[e] * a[e] * a[e] < wt[least] * a[least] * a[least]) least = e;
    }
    if (count % 2) negative[least] = !negative[least], a[least] = -a[least];
  }
  float max_scale = 0;
  for (int b = 0; b < kQKK / kSub; ++b)
    max_scale = std::max(max_scale, scale[b] = s.fit_sub_scale(a + kSub * b, wt + kSub * b));
  int codes[8] = {}, entries[kQKK / kGroup] = {};
  const uint16_t d16 = f32_to_f16(max_scale / shape.scale(1.0f, 15));
  const float d = f16_to_f32(d16);
  for (int b = 0; d > 0 && b < kQKK / kSub; ++b) {
    const float* ab = a + kSub * b;
    const float* wb = wt + kSub * b;
    int c0 = 0;
    for (int c = 1; c < 16; ++c)
      if (std::fabs(shape.scale(d, c) - scale[b]) < std::fabs(shape.scale(d, c0) - scale[b]))
        c0 = c;
    double best_err = std::numeric_limits<double>::max();
    for (int c = std::max(0, c0 - 1); c <= std::min(15, c0 + 1); ++c) {
      const float eff = shape.scale(d, c);
      const Searcher::Fit f = s.assign(ab, wb, eff);
      const double err = s.error_at(ab, wb, f, eff);
      if (err >= best_err) continue;
      best_err = err, codes[b] = c;
      std::copy(f.entry, f.entry + kGroupsPerSub, entries + kGroupsPerSub * b);
    }
  }
  shape.pack(d > 0 ? d16 : 0, codes, entries, negative, out);  // d = 0: every value is 0
}

void dequantize_iq3(const Iq3Shape& shape, const uint8_t* in, float* y) {
  const IqGrid& g = iq_grid(shape.grid);
  const float d = shape.d(in);
  for (int e = 0; e < kQKK; ++e) {
    const float db = shape.scale(d, shape.code(in, e / kSub));
    const float m = shape.magnitude[g.entry(shape.entry(in, e / kGroup))[e % kGroup]];
    y[e] = db * m * (shape.negative(in, e) ? -1.0f : 1.0f);
  }
}

uint32_t xxs_word(const uint8_t* blk, int sub) {
  uint32_t w;
  std::memcpy(&w, reinterpret_cast<const BlockIQ3_XXS*>(blk)->scales_signs + 4 * sub, 4);
  return w;
}

}  // namespace

float Iq3Shape::scale(float d, int c) const {
  return type == DType::IQ3_S ? d * static_cast<float>(1 + 2 * c)
                              : d * (0.5f + static_cast<float>(c)) * 0.5f;
}
float Iq3Shape::d(const uint8_t* blk) const {
  return f16_to_f32(*reinterpret_cast<const uint16_t*>(blk));
}
int Iq3Shape::code(const uint8_t* blk, int sub) const {
  if (type == DType::IQ3_S) return iq3s_scale_code(reinterpret_cast<const BlockIQ3_S*>(blk), sub);
  return static_cast<int>(xxs_word(blk, sub) >> 28);
}
int Iq3Shape::entry(const uint8_t* blk, int group) const {
  if (type == DType::IQ3_S) return iq3s_entry(reinterpret_cast<const BlockIQ3_S*>(blk), group);
  return reinterpret_cast<const BlockIQ3_XXS*>(blk)->qs[group];
}
bool Iq3Shape::negative(const uint8_t* blk, int e) const {
  if (type == DType::IQ3_S) return iq3s_negative(reinterpret_cast<const BlockIQ3_S*>(blk), e);
  const uint32_t seven = (xxs_word(blk, e / kSub) >> (7 * ((e % kSub) / 8))) & 127;
  const uint32_t eight = seven | (__builtin_popcount(seven) & 1) << 7;
  return (eight >> (e % 8)) & 1;
}
void Iq3Shape::pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
                    uint8_t* blk) const {
  if (type == DType::IQ3_S) {
    auto* b = reinterpret_cast<BlockIQ3_S*>(blk);
    std::memset(blk, 0, sizeof *b);
    b->d = d16;
    for (int g = 0; g < kQKK / kGroup; ++g) {
      b->qs[g] = static_cast<uint8_t>(entries[g] & 255);
      b->qh[g / 8] |= static_cast<uint8_t>((entries[g] >> 8) << (g % 8));
    }
    for (int e = 0; e < kQKK; ++e) b->signs[e / 8] |= static_cast<uint8_t>(negative[e] << (e % 8));
    for (int s = 0; s < 8; ++s) b->scales[s / 2] |= static_cast<uint8_t>(codes[s] << (4 * (s % 2)));
    return;
  }
  auto* b = reinterpret_cast<BlockIQ3_XXS*>(blk);
  b->d = d16;
  for (int g = 0; g < kQKK / kGroup; ++g) b->qs[g] = static_cast<uint8_t>(entries[g]);
  for (int s = 0; s < 8; ++s) {
    uint32_t word = static_cast<uint32_t>(codes[s]) << 28;
    for (int e = 0; e < kSub; ++e)
      if (e % 8 < 7 && negative[kSub * s + e]) word |= 1u << (7 * (e / 8) + e % 8);
    std::memcpy(b->scales_signs + 4 * s, &word, 4);
  }
}

const Iq3Shape* iq3_shape(DType t) {
  for (const Iq3Shape& s : kShapes)
    if (s.type == t) return &s;
  return nullptr;
}

void quantize_iq3_s(const float* x, const float* w, uint8_t* out) {
  quantize_iq3(kShapes[0], x, w, out);
}
void dequantize_iq3_s(const uint8_t* in, float* y) {
  dequantize_iq3(kShapes[0], in, y);
}
void quantize_iq3_xxs(const float* x, const float* w, uint8_t* out) {
  quantize_iq3(kShapes[1], x, w, out);
}
void dequantize_iq3_xxs(const uint8_t* in, float* y) {
  dequantize_iq3(kShapes[1], in, y);
}

}  // namespace lowbit::quant

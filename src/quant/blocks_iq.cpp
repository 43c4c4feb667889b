// The codebook types (iq_shapes.h): each group of 4 or 8 magnitudes is rounded to a whole
// grid entry at once rather than value by value. Signs are stored apart, so only |x| meets
// the grid; with sign parity (IQ3_XXS, IQ2_XS, IQ2_XXS), a group of 8 with an odd count of
// negatives gives its value of least weight w x^2 the wrong sign, and that value's target
// magnitude becomes -|x| (it then takes the smallest level).
//
// Quantizer, minimising sum_i w_i (x_i - value_i)^2 per 256-value block:
//  1. each sub-block: try scales that put max|x| at 1/15, 1.5/15, ..., 17/15 of the top
//     magnitude (the grids hold few of the points near the corners, e.g. (l, l, l, l) only
//     for l = 0 in IQ3_S, so a constant row needs the low end), give every group its
//     nearest entry, refit the scale by least squares and keep the best; two alternating
//     passes (assign, refit) follow;
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
#include "quant/iq_fields.h"
#include "quant/iq_shapes.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

// At most: sub-blocks per block (of 16), groups per block (of 4), groups per sub-block (32 / 4).
constexpr int kMaxSubs = kQKK / 16, kMaxGroups = kQKK / 4, kMaxPerSub = 8;

const IqShape kShapes[] = {
    {DType::IQ3_S, IqGridId::Iq3s, 4, 32, {1, 3, 5, 7, 9, 11, 13, 15}, false},
    {DType::IQ3_XXS, IqGridId::Iq3xxs, 4, 32, {4, 12, 20, 28, 36, 44, 52, 62}, true},
    {DType::IQ2_S, IqGridId::Iq2s, 8, 16, {8, 25, 43}, false},
    {DType::IQ2_XS, IqGridId::Iq2xs, 8, 16, {8, 25, 43}, true},
    {DType::IQ2_XXS, IqGridId::Iq2xxs, 8, 32, {8, 25, 43}, true},
};

struct Searcher {
  const IqShape& shape;
  const IqGrid& g;

  // The entry nearest to targets a[0 .. group) (weights w) at scale s: the per-value nearest
  // levels when that vector is on the grid (then it is the nearest entry), else the best of
  // the grid's entries near that vector.
  int nearest_entry(const float* a, const float* w, float s) const {
    int code = 0;
    for (int j = shape.group - 1; j >= 0; --j) {
      int best = 0;
      for (int l = 1; l < g.radix; ++l)
        if (std::fabs(s * shape.magnitude[l] - a[j]) < std::fabs(s * shape.magnitude[best] - a[j]))
          best = l;
      code = code * g.radix + best;
    }
    if (g.index[code] >= 0) return g.index[code];
    int best = 0;
    float best_err = std::numeric_limits<float>::max();
    for (int k = g.near_start[code]; k < g.near_start[code + 1]; ++k) {
      const uint8_t* l = g.entry(g.near[k]);
      float err = 0;
      for (int j = 0; j < shape.group; ++j) {
        const float d = s * shape.magnitude[l[j]] - a[j];
        err += w[j] * d * d;
      }
      if (err < best_err) best_err = err, best = g.near[k];
    }
    return best;
  }

  struct Fit {
    int entry[kMaxPerSub];                     // of the sub-block's groups
    double sxq = 0, sqq = 0;                   // sum w a m, sum w m^2 over the sub-block
  };
  int groups() const { return shape.sub / shape.group; }
  Fit assign(const float* a, const float* w, float s) const {
    Fit f;
    for (int k = 0; k < groups(); ++k) {
      f.entry[k] = nearest_entry(a + shape.group * k, w + shape.group * k, s);
      const uint8_t* l = g.entry(f.entry[k]);
      for (int j = 0; j < shape.group; ++j) {
        const double m = shape.magnitude[l[j]], wi = w[shape.group * k + j];
        f.sxq += wi * a[shape.group * k + j] * m, f.sqq += wi * m * m;
      }
    }
    return f;
  }
  double error_at(const float* a, const float* w, const Fit& f, float s) const {
    double err = 0;
    for (int k = 0; k < groups(); ++k) {
      const uint8_t* l = g.entry(f.entry[k]);
      for (int j = 0; j < shape.group; ++j) {
        const double d = s * static_cast<double>(shape.magnitude[l[j]]) - a[shape.group * k + j];
        err += w[shape.group * k + j] * d * d;
      }
    }
    return err;
  }
  // Step 1: the float scale of one sub-block (0 when it is all zero).
  float fit_sub_scale(const float* a, const float* w) const {
    float amax = 0;
    for (int i = 0; i < shape.sub; ++i) amax = std::max(amax, std::fabs(a[i]));
    if (amax == 0) return 0;
    const float top = static_cast<float>(shape.top());
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

}  // namespace

void quantize_iq(const IqShape& shape, const float* x, const float* w, uint8_t* out) {
  const Searcher s{shape, iq_grid(shape.grid)};
  const int n_sub = kQKK / shape.sub, per_sub = shape.sub / shape.group;
  float a[kQKK], wt[kQKK], scale[kMaxSubs];
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
  for (int b = 0; b < n_sub; ++b)
    max_scale =
        std::max(max_scale, scale[b] = s.fit_sub_scale(a + shape.sub * b, wt + shape.sub * b));
  int codes[kMaxSubs] = {}, entries[kMaxGroups] = {};
  uint16_t d16;
  const float d = store_f16(max_scale / shape.scale(1.0f, 15), &d16);
  for (int b = 0; d > 0 && b < n_sub; ++b) {
    const float* ab = a + shape.sub * b;
    const float* wb = wt + shape.sub * b;
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
      std::copy(f.entry, f.entry + per_sub, entries + per_sub * b);
    }
  }
  shape.pack(d > 0 ? d16 : 0, codes, entries, negative, out);  // d = 0: every value is 0
}

void dequantize_iq(const IqShape& shape, const uint8_t* in, float* y) {
  const IqGrid& g = iq_grid(shape.grid);
  const float d = shape.d(in);
  for (int e = 0; e < kQKK; ++e) {
    const float db = shape.scale(d, shape.code(in, e / shape.sub));
    const float m = shape.magnitude[g.entry(shape.entry(in, e / shape.group))[e % shape.group]];
    y[e] = db * m * (shape.negative(in, e) ? -1.0f : 1.0f);
  }
}

namespace {

uint32_t seven_signs(const bool* negative) {
  uint32_t bits = 0;
  for (int j = 0; j < 7; ++j) bits |= static_cast<uint32_t>(negative[j]) << j;
  return bits;
}
// The IQ3_XXS / IQ2_XXS word of a sub-block of 32 with scale code c.
uint32_t scale_sign_word_of(int c, const bool* negative) {
  uint32_t word = static_cast<uint32_t>(c) << 28;
  for (int k = 0; k < 4; ++k) word |= seven_signs(negative + 8 * k) << (7 * k);
  return word;
}
void pack_nibble_codes(const int* codes, int n, uint8_t* scales) {
  for (int b = 0; b < n; ++b) scales[b / 2] |= static_cast<uint8_t>(codes[b] << (4 * (b % 2)));
}

}  // namespace

float IqShape::scale(float d, int c) const {
  switch (type) {
    case DType::IQ3_S:
      return d * static_cast<float>(1 + 2 * c);
    case DType::IQ3_XXS:
      return d * (0.5f + static_cast<float>(c)) * 0.5f;
    default:
      return d * (0.5f + static_cast<float>(c)) * 0.25f;
  }
}
float IqShape::d(const uint8_t* blk) const {
  return f16_to_f32(*reinterpret_cast<const uint16_t*>(blk));  // d leads every codebook layout
}
int IqShape::code(const uint8_t* blk, int b) const {
  return iq_code(type, blk, b);
}
int IqShape::entry(const uint8_t* blk, int g) const {
  return iq_entry(type, blk, g);
}
bool IqShape::negative(const uint8_t* blk, int e) const {
  return (iq_sign_byte(type, blk, e / 8) >> (e % 8)) & 1;
}
int IqShape::signs(const uint8_t* blk, int k) const {
  return iq_sign_byte(type, blk, k);
}
void IqShape::pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
                   uint8_t* blk) const {
  std::memset(blk, 0, traits(type).type_size);
  std::memcpy(blk, &d16, 2);
  switch (type) {
    case DType::IQ3_S: {
      auto* b = reinterpret_cast<BlockIQ3_S*>(blk);
      for (int g = 0; g < kQKK / 4; ++g) {
        b->qs[g] = static_cast<uint8_t>(entries[g] & 255);
        b->qh[g / 8] |= static_cast<uint8_t>((entries[g] >> 8) << (g % 8));
      }
      for (int e = 0; e < kQKK; ++e)
        b->signs[e / 8] |= static_cast<uint8_t>(negative[e] << (e % 8));
      pack_nibble_codes(codes, 8, b->scales);
      return;
    }
    case DType::IQ2_S: {
      auto* b = reinterpret_cast<BlockIQ2_S*>(blk);
      for (int g = 0; g < kQKK / 8; ++g) {
        b->qs[g] = static_cast<uint8_t>(entries[g] & 255);
        b->qh[g / 4] |= static_cast<uint8_t>((entries[g] >> 8) << (2 * (g % 4)));
      }
      for (int e = 0; e < kQKK; ++e)
        b->qs[32 + e / 8] |= static_cast<uint8_t>(negative[e] << (e % 8));
      pack_nibble_codes(codes, 16, b->scales);
      return;
    }
    case DType::IQ2_XS: {
      auto* b = reinterpret_cast<BlockIQ2_XS*>(blk);
      for (int g = 0; g < kQKK / 8; ++g)
        b->qs[g] = static_cast<uint16_t>(entries[g] | seven_signs(negative + 8 * g) << 9);
      pack_nibble_codes(codes, 16, b->scales);
      return;
    }
    case DType::IQ3_XXS: {  // 64 entries, then one scale-and-signs word per sub-block of 32
      auto* b = reinterpret_cast<BlockIQ3_XXS*>(blk);
      for (int g = 0; g < kQKK / 4; ++g) b->qs[g] = static_cast<uint8_t>(entries[g]);
      for (int s = 0; s < 8; ++s) {
        const uint32_t word = scale_sign_word_of(codes[s], negative + 32 * s);
        std::memcpy(b->scales_signs + 4 * s, &word, 4);
      }
      return;
    }
    default: {  // IQ2_XXS: per sub-block of 32, its 4 entries, then its scale-and-signs word
      auto* b = reinterpret_cast<BlockIQ2_XXS*>(blk);
      for (int s = 0; s < 8; ++s) {
        for (int k = 0; k < 4; ++k) b->qs[8 * s + k] = static_cast<uint8_t>(entries[4 * s + k]);
        const uint32_t word = scale_sign_word_of(codes[s], negative + 32 * s);
        std::memcpy(b->qs + 8 * s + 4, &word, 4);
      }
      return;
    }
  }
}

const IqShape* iq_shape(DType t) {
  for (const IqShape& s : kShapes)
    if (s.type == t) return &s;
  return nullptr;
}

template <DType T>
void quantize_codebook(const float* x, const float* w, uint8_t* block) {
  if constexpr (T == DType::IQ1_S || T == DType::IQ1_M)
    quantize_iq1(*iq1_shape(T), x, w, block);
  else
    quantize_iq(*iq_shape(T), x, w, block);
}
template <DType T>
void dequantize_codebook(const uint8_t* block, float* y) {
  if constexpr (T == DType::IQ1_S || T == DType::IQ1_M)
    dequantize_iq1(*iq1_shape(T), block, y);
  else
    dequantize_iq(*iq_shape(T), block, y);
}
#define LOWBIT_CODEBOOK(T)                                                             \
  template void quantize_codebook<DType::T>(const float* x, const float* w, uint8_t*); \
  template void dequantize_codebook<DType::T>(const uint8_t*, float*);
LOWBIT_CODEBOOK_TYPES(LOWBIT_CODEBOOK)
#undef LOWBIT_CODEBOOK

}  // namespace lowbit::quant

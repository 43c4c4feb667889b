// Every GGUF block type written in one integer form, so that a dot product with 8-bit
// activations is integer sums scaled once per block:
//
//   value e of a block = d · scale[s] · v[e] − dmin · min[s],   s = e / sub
//
// with small integers v (|v| ≤ 127), scale (|scale| ≤ 128) and min (≤ 63). For example Q4_1
// (value = d·code + m) is v = code, scale = 1, min = 1, dmin = −m; Q6_K is v = code − 32,
// scale = the int8 sub-block scale, no min. `header` decodes d, dmin, scale, min (cheap,
// per block); `values` decodes all v (the scalar reference; the SIMD kernels decode v in
// registers instead).
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"
#include "lowbit/float_convert.h"
#include "quant/block_layouts.h"
#include "quant/iq_fields.h"
#include "quant/iq_shapes.h"

namespace lowbit::kernels {

struct BlockHeader {
  int sub = 32;        // values per sub-block (16 or 32)
  int n_sub = 1;       // sub-blocks per block
  bool has_min = false;
  float d = 0, dmin = 0;
  int scale[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  int min[16] = {};
};

inline void block_header(DType t, const uint8_t* blk, BlockHeader& h) {
  using namespace quant;
  h = BlockHeader{};
  // is_codebook first: it folds away where t is a compile-time constant (the kernels), so
  // the other types never pay for the shape lookups.
  if (is_codebook(t)) {
    if (const IqShape* shape = iq_shape(t)) {  // v = ±magnitude, scale 1 + 2c per sub-block
      h.sub = shape->sub, h.n_sub = 256 / shape->sub;
      h.d = shape->d(blk) * shape->int_d();
      for (int s = 0; s < h.n_sub; ++s) h.scale[s] = 1 + 2 * iq_code(t, blk, s);
      return;
    }
    const Iq1Shape& shape = *iq1_shape(t);  // v = 8 (l - 1) ± 1, scale 1 + 2c
    h.sub = shape.sub, h.n_sub = 256 / shape.sub;
    h.d = shape.d(blk) * kIq1Delta;
    for (int s = 0; s < h.n_sub; ++s) h.scale[s] = 1 + 2 * iq1_code(t, blk, s);
    return;
  }
  switch (t) {
    case DType::Q4_0: h.d = f16_to_f32(reinterpret_cast<const BlockQ4_0*>(blk)->d); break;
    case DType::Q5_0: h.d = f16_to_f32(reinterpret_cast<const BlockQ5_0*>(blk)->d); break;
    case DType::Q8_0: h.d = f16_to_f32(reinterpret_cast<const BlockQ8_0*>(blk)->d); break;
    case DType::Q8_0_S24:  // d leads both 2:4 layouts
    case DType::Q4_0_S24:
      h.d = f16_to_f32(*reinterpret_cast<const uint16_t*>(blk));
      break;
    case DType::IQ4_NL: h.d = f16_to_f32(reinterpret_cast<const BlockIQ4_NL*>(blk)->d); break;
    case DType::Q4_1:
    case DType::Q5_1: {
      const auto* b = reinterpret_cast<const uint16_t*>(blk);  // d, m lead both layouts
      h.d = f16_to_f32(b[0]);
      h.dmin = -f16_to_f32(b[1]);
      h.has_min = true;
      h.min[0] = 1;
      break;
    }
    case DType::Q2_K: {
      const auto* b = reinterpret_cast<const BlockQ2_K*>(blk);
      h.sub = 16, h.n_sub = 16, h.has_min = true;
      h.d = f16_to_f32(b->d), h.dmin = f16_to_f32(b->dmin);
      for (int s = 0; s < 16; ++s) h.scale[s] = b->scales[s] & 15, h.min[s] = b->scales[s] >> 4;
      break;
    }
    case DType::Q3_K: {
      const auto* b = reinterpret_cast<const BlockQ3_K*>(blk);
      h.sub = 16, h.n_sub = 16;
      h.d = f16_to_f32(b->d);
      for (int s = 0; s < 16; ++s) h.scale[s] = unpack_scale_q3k(b->scales, s);
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const auto* b = reinterpret_cast<const BlockQ4_K*>(blk);  // d, dmin, scales lead both layouts
      h.sub = 32, h.n_sub = 8, h.has_min = true;
      h.d = f16_to_f32(b->d), h.dmin = f16_to_f32(b->dmin);
      for (int s = 0; s < 8; ++s) unpack_scale_min_k4(s, b->scales, &h.scale[s], &h.min[s]);
      break;
    }
    case DType::Q6_K: {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
      h.sub = 16, h.n_sub = 16;
      h.d = f16_to_f32(b->d);
      for (int s = 0; s < 16; ++s) h.scale[s] = b->scales[s];
      break;
    }
    case DType::IQ4_XS: {
      const auto* b = reinterpret_cast<const BlockIQ4_XS*>(blk);
      h.sub = 32, h.n_sub = 8;
      h.d = f16_to_f32(b->d);
      for (int s = 0; s < 8; ++s)
        h.scale[s] =
            (((b->scales_l[s / 2] >> (4 * (s % 2))) & 15) | (((b->scales_h >> (2 * s)) & 3) << 4)) -
            32;
      break;
    }
    case DType::TQ1_0:
    case DType::TQ2_0:  // v = trit - 1, one scale: eight sub-blocks of 32 with scale 1
      h.sub = 32, h.n_sub = 8;
      h.d = f16_to_f32(t == DType::TQ1_0 ? reinterpret_cast<const BlockTQ1_0*>(blk)->d
                                         : reinterpret_cast<const BlockTQ2_0*>(blk)->d);
      break;
    default: break;
  }
}

// Low nibble of qs[e] for e < 16, high nibble of qs[e - 16] above: the 32-value layout.
inline int nibble32(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

// block_values of the codebook types (quant/iq_shapes.h).
inline void block_values_codebook(DType t, const uint8_t* blk, int16_t* v) {
  using namespace quant;
  if (const IqShape* shape = iq_shape(t)) {  // per 8 values: one sign byte, 1 or 2 entries
    const IqGrid& g = iq_grid(shape->grid);
    for (int k = 0; k < 32; ++k) {
      const int signs = shape->signs(blk, k);
      for (int j = 0; j < 8; j += shape->group) {
        const uint8_t* l = g.entry(shape->entry(blk, (8 * k + j) / shape->group));
        for (int i = 0; i < shape->group; ++i) {
          const int m = shape->magnitude[l[i]];
          v[8 * k + j + i] = static_cast<int16_t>((signs >> (j + i)) & 1 ? -m : m);
        }
      }
    }
    return;
  }
  const Iq1Shape& shape = *iq1_shape(t);
  const IqGrid& g = iq_grid(IqGridId::Iq1s);
  for (int k = 0; k < 32; ++k) {
    const uint8_t* l = g.entry(shape.entry(blk, k));
    const int delta = shape.negative_delta(blk, 8 * k / shape.delta) ? -1 : 1;
    for (int j = 0; j < 8; ++j) v[8 * k + j] = static_cast<int16_t>(8 * (l[j] - 1) + delta);
  }
}

// v[e] for every value of the block (32 or 256 of them).
inline void block_values(DType t, const uint8_t* blk, int16_t* v) {
  using namespace quant;
  if (is_codebook(t)) {
    block_values_codebook(t, blk, v);
    return;
  }
  switch (t) {
    case DType::Q4_0:
      for (int e = 0; e < 32; ++e)
        v[e] = nibble32(reinterpret_cast<const BlockQ4_0*>(blk)->qs, e) - 8;
      break;
    case DType::Q4_1:
      for (int e = 0; e < 32; ++e) v[e] = nibble32(reinterpret_cast<const BlockQ4_1*>(blk)->qs, e);
      break;
    case DType::Q5_0:
    case DType::Q5_1: {
      const uint8_t *qh, *qs;
      if (t == DType::Q5_0)
        qh = reinterpret_cast<const BlockQ5_0*>(blk)->qh,
        qs = reinterpret_cast<const BlockQ5_0*>(blk)->qs;
      else
        qh = reinterpret_cast<const BlockQ5_1*>(blk)->qh,
        qs = reinterpret_cast<const BlockQ5_1*>(blk)->qs;
      const int offset = t == DType::Q5_0 ? 16 : 0;
      for (int e = 0; e < 32; ++e)
        v[e] = (nibble32(qs, e) | ((qh[e / 8] >> (e % 8)) & 1) << 4) - offset;
      break;
    }
    case DType::Q8_0:
      for (int e = 0; e < 32; ++e) v[e] = reinterpret_cast<const BlockQ8_0*>(blk)->qs[e];
      break;
    case DType::Q8_0_S24: {
      const auto* b = reinterpret_cast<const BlockQ8_0_S24*>(blk);
      for (int e = 0; e < 32; ++e) v[e] = 0;
      for (int k = 0; k < 16; ++k) v[kept_place(b->pos, k)] = b->qs[k];
      break;
    }
    case DType::Q4_0_S24: {
      const auto* b = reinterpret_cast<const BlockQ4_0_S24*>(blk);
      for (int e = 0; e < 32; ++e) v[e] = 0;
      for (int k = 0; k < 16; ++k)
        v[kept_place(b->pos, k)] = (k < 8 ? b->qs[k] & 15 : b->qs[k - 8] >> 4) - 8;
      break;
    }
    case DType::IQ4_NL:
      for (int e = 0; e < 32; ++e)
        v[e] = kIq4nlValues[nibble32(reinterpret_cast<const BlockIQ4_NL*>(blk)->qs, e)];
      break;
    case DType::Q2_K: {
      const auto* b = reinterpret_cast<const BlockQ2_K*>(blk);
      for (int e = 0; e < 256; ++e) v[e] = static_cast<int16_t>(code2_at(b->qs, e));
      break;
    }
    case DType::Q3_K: {
      const auto* b = reinterpret_cast<const BlockQ3_K*>(blk);
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
        const int high = (b->hmask[l] >> (4 * h + k)) & 1;
        v[e] = low - (high ? 0 : 4);
      }
      break;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      const uint8_t* qs = t == DType::Q4_K ? reinterpret_cast<const BlockQ4_K*>(blk)->qs
                                           : reinterpret_cast<const BlockQ5_K*>(blk)->qs;
      for (int e = 0; e < 256; ++e) {
        const uint8_t byte = qs[32 * (e / 64) + e % 32];
        v[e] = (e % 64) < 32 ? byte & 15 : byte >> 4;
        if (t == DType::Q5_K)
          v[e] |= ((reinterpret_cast<const BlockQ5_K*>(blk)->qh[e % 32] >> (e / 32)) & 1) << 4;
      }
      break;
    }
    case DType::Q6_K: {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(blk);
      for (int e = 0; e < 256; ++e) {
        const int h = e / 128, k = (e % 128) / 32, l = e % 32;
        const uint8_t lo = b->ql[64 * h + 32 * (k & 1) + l];
        const int low4 = k < 2 ? lo & 15 : lo >> 4;
        const int high2 = (b->qh[32 * h + l] >> (2 * k)) & 3;
        v[e] = (low4 | high2 << 4) - 32;
      }
      break;
    }
    case DType::IQ4_XS: {
      const auto* b = reinterpret_cast<const BlockIQ4_XS*>(blk);
      for (int e = 0; e < 256; ++e) v[e] = kIq4nlValues[nibble32(b->qs + 16 * (e / 32), e % 32)];
      break;
    }
    case DType::TQ1_0:
      for (int i = 0; i < 52; ++i)
        for (int j = 0; j < 5; ++j)
          if (const int place = tq1_place(i, j); place >= 0) v[place] = tq1_trit(blk[i], j) - 1;
      break;
    case DType::TQ2_0: {
      const auto* b = reinterpret_cast<const BlockTQ2_0*>(blk);
      for (int e = 0; e < 256; ++e) v[e] = static_cast<int16_t>(code2_at(b->qs, e) - 1);
      break;
    }
    default: break;
  }
}

}  // namespace lowbit::kernels

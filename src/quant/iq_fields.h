// The fields of the codebook blocks (layouts in block_layouts.h), read inline: IqShape and
// Iq1Shape (iq_shapes.h) answer with these, and the kernels call them with the type as a
// compile-time constant, so that the switches fold away and a block decodes without calls.
#pragma once

#include <cstdint>
#include <cstring>

#include "lowbit/dtype.h"
#include "quant/block_layouts.h"

namespace lowbit::quant {

inline uint32_t iq_word_at(const uint8_t* p) {
  uint32_t w;
  std::memcpy(&w, p, 4);
  return w;
}
// The u32 of IQ3_XXS's and IQ2_XXS's sub-block b: its scale code and 4 x 7 sign bits.
inline uint32_t iq_scale_sign_word(DType t, const uint8_t* blk, int b) {
  if (t == DType::IQ3_XXS)
    return iq_word_at(reinterpret_cast<const BlockIQ3_XXS*>(blk)->scales_signs + 4 * b);
  return iq_word_at(reinterpret_cast<const BlockIQ2_XXS*>(blk)->qs + 8 * b + 4);
}
// Seven stored signs and the eighth that makes their count even.
inline int iq_with_parity(uint32_t seven) {
  return static_cast<int>(seven | (__builtin_popcount(seven) & 1) << 7);
}
// Nibble b % 2 of scales[b / 2].
inline int iq_nibble_code(const uint8_t* scales, int b) {
  return (scales[b / 2] >> (4 * (b % 2))) & 15;
}

// IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS. The 8 sign bits of values 8k .. 8k + 7.
inline int iq_sign_byte(DType t, const uint8_t* blk, int k) {
  switch (t) {
    case DType::IQ3_S:
      return reinterpret_cast<const BlockIQ3_S*>(blk)->signs[k];
    case DType::IQ2_S:
      return reinterpret_cast<const BlockIQ2_S*>(blk)->qs[32 + k];
    case DType::IQ2_XS:
      return iq_with_parity(reinterpret_cast<const BlockIQ2_XS*>(blk)->qs[k] >> 9);
    default:
      return iq_with_parity((iq_scale_sign_word(t, blk, k / 4) >> (7 * (k % 4))) & 127);
  }
}
// The grid entry of group g.
inline int iq_entry(DType t, const uint8_t* blk, int g) {
  switch (t) {
    case DType::IQ3_S:
      return iq3s_entry(reinterpret_cast<const BlockIQ3_S*>(blk), g);
    case DType::IQ3_XXS:
      return reinterpret_cast<const BlockIQ3_XXS*>(blk)->qs[g];
    case DType::IQ2_S: {
      const auto* b = reinterpret_cast<const BlockIQ2_S*>(blk);
      return b->qs[g] | ((b->qh[g / 4] >> (2 * (g % 4))) & 3) << 8;
    }
    case DType::IQ2_XS:
      return reinterpret_cast<const BlockIQ2_XS*>(blk)->qs[g] & 511;
    default:
      return reinterpret_cast<const BlockIQ2_XXS*>(blk)->qs[8 * (g / 4) + g % 4];
  }
}
// The 4-bit scale code of sub-block b.
inline int iq_code(DType t, const uint8_t* blk, int b) {
  switch (t) {
    case DType::IQ3_S:
      return iq3s_scale_code(reinterpret_cast<const BlockIQ3_S*>(blk), b);
    case DType::IQ2_S:
      return iq_nibble_code(reinterpret_cast<const BlockIQ2_S*>(blk)->scales, b);
    case DType::IQ2_XS:
      return iq_nibble_code(reinterpret_cast<const BlockIQ2_XS*>(blk)->scales, b);
    default:
      return static_cast<int>(iq_scale_sign_word(t, blk, b) >> 28);
  }
}

// IQ1_S and IQ1_M (t is one of them). The 3-bit scale code of sub-block b.
inline int iq1_code(DType t, const uint8_t* blk, int b) {
  if (t == DType::IQ1_S) return (reinterpret_cast<const BlockIQ1_S*>(blk)->qh[b] >> 12) & 7;
  const uint8_t* scales = reinterpret_cast<const BlockIQ1_M*>(blk)->scales;
  const int word = scales[2 * (b / 4)] | scales[2 * (b / 4) + 1] << 8;
  return (word >> (3 * (b % 4))) & 7;
}
// The grid entry of group g.
inline int iq1_entry(DType t, const uint8_t* blk, int g) {
  if (t == DType::IQ1_S) {
    const auto* b = reinterpret_cast<const BlockIQ1_S*>(blk);
    return b->qs[g] | ((b->qh[g / 4] >> (3 * (g % 4))) & 7) << 8;
  }
  const auto* b = reinterpret_cast<const BlockIQ1_M*>(blk);
  return b->qs[g] | ((b->qh[g / 2] >> (4 * (g % 2))) & 7) << 8;
}
// Whether delta unit i (of 32 values for IQ1_S, 8 for IQ1_M) has the delta -1/8.
inline bool iq1_negative_delta(DType t, const uint8_t* blk, int i) {
  if (t == DType::IQ1_S) return reinterpret_cast<const BlockIQ1_S*>(blk)->qh[i] >> 15;
  return (reinterpret_cast<const BlockIQ1_M*>(blk)->qh[i / 2] >> (4 * (i % 2) + 3)) & 1;
}

}  // namespace lowbit::quant

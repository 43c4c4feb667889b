// Byte layouts of the GGUF block types, identical to what llama.cpp reads (ggml-common.h).
// All multi-byte fields are little-endian; `uint16_t` scale fields hold IEEE f16 bits.
// Each block covers `block_size` consecutive values of one row:
//   32 values:  Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 IQ4_NL
//   256 values (a "super-block" of 8 or 16 sub-blocks): Q2_K Q3_K Q4_K Q5_K Q6_K IQ4_XS
//   256 values, ternary (one scale, values -d, 0, +d): TQ1_0 TQ2_0
//   256 values, codebook ("i-quant": groups of values share one grid entry): IQ3_S IQ3_XXS
//     IQ2_S IQ2_XS IQ2_XXS IQ1_S IQ1_M
// The comment on each struct says which bits of which byte hold value e (0-based in block).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit::quant {

inline constexpr int kQK = 32;    // legacy block
inline constexpr int kQKK = 256;  // K super-block

// value e = d * (code - 8); code of e<16 is qs[e] & 15, of e>=16 is qs[e-16] >> 4.
struct BlockQ4_0 { uint16_t d; uint8_t qs[16]; };
// value e = d * code + m; codes as Q4_0.
struct BlockQ4_1 { uint16_t d, m; uint8_t qs[16]; };
// 5-bit code: low 4 bits as Q4_0, bit 4 is bit e of the little-endian u32 qh. value = d*(code-16).
struct BlockQ5_0 { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; };
// value = d * code + m; codes as Q5_0.
struct BlockQ5_1 { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; };
// value e = d * qs[e].
struct BlockQ8_0 { uint16_t d; int8_t qs[32]; };
// value e = d * kIq4nlValues[code]; codes as Q4_0.
struct BlockIQ4_NL { uint16_t d; uint8_t qs[16]; };

// 16 sub-blocks of 16; sub-block s = e/16 has scale d*(scales[s]&15) and min dmin*(scales[s]>>4).
// e = 128h + 32k + l: 2-bit code is (qs[32h + l] >> 2k) & 3. value = scale*code - min.
struct BlockQ2_K { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; };
// 16 sub-blocks of 16 with signed 6-bit scales (stored +32, packed, see blocks_k.cpp).
// e = 128h + 32k + l: low 2 bits (qs[32h + l] >> 2k) & 3, high bit hmask[l] bit (4h + k);
// value = d * (scale - 32) * (low2 - (high ? 0 : 4)).
struct BlockQ3_K { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; };
// 8 sub-blocks of 32 with 6-bit scale and min packed in 12 bytes (see blocks_k.cpp).
// e = 64g + l (l<32) is the low nibble of qs[32g + l], e = 64g + 32 + l its high nibble.
// value = d*scale*code - dmin*min.
struct BlockQ4_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[128]; };
// As Q4_K with a fifth bit: bit (e/32) of qh[e%32].
struct BlockQ5_K { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[32]; uint8_t qs[128]; };
// 16 sub-blocks of 16 with int8 scales; 6-bit codes stored +32.
// e = 128h + 32k + l: low 4 bits from ql[64h + 32(k&1) + l] (low nibble if k<2, else high),
// high 2 bits (qh[32h + l] >> 2k) & 3. value = d * scales[e/16] * (code - 32).
struct BlockQ6_K { uint8_t ql[128]; uint8_t qh[64]; int8_t scales[16]; uint16_t d; };
// 8 sub-blocks of 32; 6-bit scale of sub-block b: low 4 bits nibble (b&1) of scales_l[b/2],
// high 2 bits (scales_h >> 2b) & 3; value = d*(scale-32)*kIq4nlValues[code], codes of
// sub-block b in qs[16b..16b+15] laid out as Q4_0.
struct BlockIQ4_XS { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; };

// Ternary blocks: value e = d * (trit - 1), trit in {0, 1, 2}; d is the last field.
// TQ2_0: 2-bit trits placed as Q2_K's codes, e = 128h + 32k + l in (qs[32h + l] >> 2k) & 3.
struct BlockTQ2_0 {
  uint8_t qs[64];
  uint16_t d;
};
// TQ1_0: five trits per byte of qs, four per byte of qh, as base-3 fractions. A byte holding
// trits t0..t(n-1) (t0 most significant) stores ceil(256 * T / 243), T = sum t_j 3^(4-j)
// (qh's four trits are followed by a zero); trit j is ((byte * 3^j) mod 256) * 3 >> 8.
// Places: trit j of qs[m], m < 32, is value m + 32j (0-159); of qs[32 + m], m < 16, value
// 160 + m + 16j (160-239); trit j of qh[m] is value 240 + m + 4j.
struct BlockTQ1_0 {
  uint8_t qs[48];
  uint8_t qh[4];
  uint16_t d;
};

// IQ3_S: 8 sub-blocks of 32, each 8 groups of 4 values. Group g takes entry
// idx = qs[g] | bit (g % 8) of qh[g / 8] << 8 of the 512-entry IQ3_S grid (iq_grids.h), whose
// levels l give magnitudes 2l + 1 (1..15); bit e % 8 of signs[e / 8] negates value e.
// Sub-block b has the 4-bit scale code c = nibble (b % 2) of scales[b / 2];
// value e = d * (1 + 2c) * (2 l_(e % 4) + 1) * sign.
struct BlockIQ3_S {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t signs[32];
  uint8_t scales[4];
};
inline int iq3s_entry(const BlockIQ3_S* b, int g) {
  return b->qs[g] | ((b->qh[g / 8] >> (g % 8)) & 1) << 8;
}
inline int iq3s_scale_code(const BlockIQ3_S* b, int sub) {
  return (b->scales[sub / 2] >> (4 * (sub % 2))) & 15;
}
inline bool iq3s_negative(const BlockIQ3_S* b, int e) {
  return (b->signs[e / 8] >> (e % 8)) & 1;
}
// IQ3_XXS: groups of 4 take entry qs[g] of the 256-entry IQ3_XXS grid, magnitudes 4 (2l + 1)
// (62 for l = 7). Sub-block b has the little-endian u32 word = scales_signs[4b .. 4b + 3]: its
// bits 28-31 are the scale code c, bits 7k .. 7k + 6 the signs of values 8k .. 8k + 6 of the
// sub-block (bit set = negative); value 8k + 7 is negative when those 7 hold an odd count.
// value e = d * (0.5 + c) * 0.5 * magnitude * sign.
struct BlockIQ3_XXS {
  uint16_t d;
  uint8_t qs[64];
  uint8_t scales_signs[32];
};

// The 2-bit codebook types: groups of 8 values take one entry of an 8-wide grid whose levels
// l = 0, 1, 2 give magnitudes 8, 25, 43; value e = d * (0.5 + c) * 0.25 * magnitude * sign
// for the scale code c of e's sub-block.
// IQ2_XXS: sub-blocks of 32. Sub-block b has the entries of its groups 4b .. 4b + 3 in
// qs[8b .. 8b + 3] (256-entry grid) and the little-endian u32 word = qs[8b + 4 .. 8b + 7]:
// bits 28-31 the scale code c, bits 7k .. 7k + 6 the signs of values 8k .. 8k + 6 of the
// sub-block; value 8k + 7 is negative when those 7 hold an odd count (as IQ3_XXS).
struct BlockIQ2_XXS {
  uint16_t d;
  uint8_t qs[64];
};
// IQ2_XS: sub-blocks of 16. Group g has qs[g]: bits 0-8 its entry of the 512-entry grid,
// bits 9-15 the signs of its values 0-6 (the 8th by parity). Sub-block b has the scale code
// c = nibble (b % 2) of scales[b / 2].
struct BlockIQ2_XS {
  uint16_t d;
  uint16_t qs[32];
  uint8_t scales[8];
};
// IQ2_S: sub-blocks of 16. Group g takes entry qs[g] | bits 2 (g % 4) .. 2 (g % 4) + 1 of
// qh[g / 4] << 8 of the 1024-entry grid; bit j of qs[32 + g] negates its value j (no parity).
// Sub-block b has the scale code c = nibble (b % 2) of scales[b / 2].
struct BlockIQ2_S {
  uint16_t d;
  uint8_t qs[64];
  uint8_t qh[8];
  uint8_t scales[8];
};

// The 1-bit codebook types: groups of 8 values take one entry of the 2048-entry ternary grid
// (levels l = 0, 1, 2 stand for -1, 0, +1; no sign bits) shifted by a delta of +-1/8:
// value e = d * (2c + 1) * (l - 1 + delta) for the 3-bit scale code c of e's sub-block.
// IQ1_S: sub-blocks of 32. Group g takes entry qs[g] | bits 3 (g % 4) .. 3 (g % 4) + 2 of
// qh[g / 4] << 8; bits 12-14 of qh[b] are sub-block b's code c, bit 15 makes its delta -1/8.
struct BlockIQ1_S {
  uint16_t d;
  uint8_t qs[32];
  uint16_t qh[8];
};
// IQ1_M: sub-blocks of 16, no d field. Group g takes entry qs[g] | bits 4 (g % 2) .. 4 (g % 2)
// + 2 of qh[g / 2] << 8, and bit 4 (g % 2) + 3 of qh[g / 2] makes its delta -1/8. The four
// little-endian u16 words of scales hold sub-block b's code c in bits 3 (b % 4) .. + 2 of
// word b / 4, and in their bits 12-15 the nibbles of d's f16 bits, word k holding bits
// 4k .. 4k + 3.
struct BlockIQ1_M {
  uint8_t qs[32];
  uint8_t qh[16];
  uint8_t scales[8];
};

// 2:4 sparse blocks (lowbit only, docs/FORMATS.md): of each group g = e / 4 of four values at
// most two are not zero. Nibble g of pos (the low nibble of pos[g / 2] for even g) holds the
// places in the group of kept values k = 2g (bits 0-1) and k = 2g + 1 (bits 2-3), the first
// below the second (GGUF readers refuse other blocks: valid_2of4_pattern); the group's other
// two values are 0.
// value of kept k = d * qs[k].
struct BlockQ8_0_S24 {
  uint16_t d;
  uint8_t pos[4];
  int8_t qs[16];
};
// value of kept k = d * (code - 8); the code of k < 8 is qs[k] & 15, of k >= 8 qs[k - 8] >> 4.
struct BlockQ4_0_S24 {
  uint16_t d;
  uint8_t pos[4];
  uint8_t qs[8];
};

// The value (0-31) that kept value k (0-15) of a 2:4 block decodes to.
inline int kept_place(const uint8_t* pos, int k) {
  const int g = k / 2, nib = (pos[g / 2] >> (4 * (g % 2))) & 15;
  return 4 * g + ((k % 2 ? nib >> 2 : nib) & 3);
}
// True when every group's first place lies below its second.
inline bool valid_2of4_pattern(const uint8_t* pos) {
  for (int i = 0; i < 4; ++i)
    for (int g = 0; g < 2; ++g) {
      const int nib = (pos[i] >> (4 * g)) & 15;
      if ((nib & 3) >= (nib >> 2)) return false;
    }
  return true;
}

static_assert(sizeof(BlockQ8_0_S24) == 22 && sizeof(BlockQ4_0_S24) == 14);
static_assert(sizeof(BlockQ4_0) == 18 && sizeof(BlockQ4_1) == 20 && sizeof(BlockQ5_0) == 22 &&
              sizeof(BlockQ5_1) == 24 && sizeof(BlockQ8_0) == 34 && sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockQ2_K) == 84 && sizeof(BlockQ3_K) == 110 && sizeof(BlockQ4_K) == 144 &&
              sizeof(BlockQ5_K) == 176 && sizeof(BlockQ6_K) == 210 && sizeof(BlockIQ4_XS) == 136);
static_assert(sizeof(BlockTQ1_0) == 54 && sizeof(BlockTQ2_0) == 66 && sizeof(BlockIQ3_S) == 110 &&
              sizeof(BlockIQ3_XXS) == 98);
static_assert(sizeof(BlockIQ2_XXS) == 66 && sizeof(BlockIQ2_XS) == 74 && sizeof(BlockIQ2_S) == 82);
static_assert(sizeof(BlockIQ1_S) == 50 && sizeof(BlockIQ1_M) == 56);

// Q2_K, TQ2_0: the 2-bit code of value e (0-255) is bits 2 ((e % 128) / 32) .. + 1 of
// qs[32 (e / 128) + e % 32].
inline int code2_at(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}
// Ors code (0-3) into place; qs starts zeroed.
inline void put_code2(uint8_t* qs, int e, int code) {
  qs[32 * (e / 128) + e % 32] |= static_cast<uint8_t>((code & 3) << (2 * ((e % 128) / 32)));
}

// TQ1_0: the place (0-255) of trit j (0-4) of byte i (0-51; qs, then qh), -1 for qh's
// fifth, unused trit.
inline int tq1_place(int i, int j) {
  if (i < 32) return i + 32 * j;
  if (i < 48) return 160 + (i - 32) + 16 * j;
  return j < 4 ? 240 + (i - 48) + 4 * j : -1;
}
inline int tq1_trit(uint8_t byte, int j) {
  static constexpr int kPow3[5] = {1, 3, 9, 27, 81};
  return ((byte * kPow3[j]) & 255) * 3 >> 8;
}

// The 16 non-uniform levels of IQ4_NL / IQ4_XS (denser near zero, like a normal distribution).
inline constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

// Q4_K / Q5_K: 6-bit scale and min of sub-block j (0..7) from the 12 packed bytes:
// j < 4 in the low 6 bits of q[j] / q[j+4]; j >= 4 low nibbles from q[j+4], top 2 bits
// from the top of q[j-4] / q[j].
inline void unpack_scale_min_k4(int j, const uint8_t* q, int* sc, int* mn) {
  if (j < 4) {
    *sc = q[j] & 63;
    *mn = q[j + 4] & 63;
  } else {
    *sc = (q[j + 4] & 15) | ((q[j - 4] >> 6) << 4);
    *mn = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

// Q3_K: signed scale of sub-block i (0..15), stored +32 in 6 bits: low nibble of q[i % 8]
// (high nibble for i >= 8), top 2 bits at bit 2*(i/4) of q[8 + i%4].
inline int unpack_scale_q3k(const uint8_t* q, int i) {
  const int low = (q[i % 8] >> (i < 8 ? 0 : 4)) & 15;
  const int high = (q[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (low | high << 4) - 32;
}

// Byte offsets in a block of t of its f16 scale fields (d, and dmin or m where the type has
// one). Each value decodes linearly in each field, the others fixed: quantization-aware
// training moves them (train/scale_training.h). Empty for the types without a block and
// for IQ1_M, whose d is split into four nibbles.
inline std::vector<size_t> f16_scale_offsets(DType t) {
  switch (t) {
    case DType::Q4_0:
      return {offsetof(BlockQ4_0, d)};
    case DType::Q4_1:
      return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
    case DType::Q5_0:
      return {offsetof(BlockQ5_0, d)};
    case DType::Q5_1:
      return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
    case DType::Q8_0:
      return {offsetof(BlockQ8_0, d)};
    case DType::IQ4_NL:
      return {offsetof(BlockIQ4_NL, d)};
    case DType::Q2_K:
      return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case DType::Q3_K:
      return {offsetof(BlockQ3_K, d)};
    case DType::Q4_K:
      return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case DType::Q5_K:
      return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case DType::Q6_K:
      return {offsetof(BlockQ6_K, d)};
    case DType::IQ4_XS:
      return {offsetof(BlockIQ4_XS, d)};
    case DType::IQ3_S:
      return {offsetof(BlockIQ3_S, d)};
    case DType::IQ3_XXS:
      return {offsetof(BlockIQ3_XXS, d)};
    case DType::IQ2_XXS:
      return {offsetof(BlockIQ2_XXS, d)};
    case DType::IQ2_XS:
      return {offsetof(BlockIQ2_XS, d)};
    case DType::IQ2_S:
      return {offsetof(BlockIQ2_S, d)};
    case DType::IQ1_S:
      return {offsetof(BlockIQ1_S, d)};
    case DType::TQ1_0:
      return {offsetof(BlockTQ1_0, d)};
    case DType::TQ2_0:
      return {offsetof(BlockTQ2_0, d)};
    case DType::Q8_0_S24:
      return {offsetof(BlockQ8_0_S24, d)};
    case DType::Q4_0_S24:
      return {offsetof(BlockQ4_0_S24, d)};
    default:
      return {};
  }
}

}  // namespace lowbit::quant

// One-token VNNI rows of the 32-value types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL (the
// dispatch: matvec_vnni.cpp). As there, the weights are the unsigned operand of vpdpbusd and
// the activations the signed one; whatever offset makes a weight unsigned comes back out of
// the block sum through tok.corr8:
// - Q8_0: codes w + 128 by an xor (−128·Σq); w + 128 would overflow vpmaddubsw's int16, and
//   none of these types has sub-block scales to apply in int16, so all use vpdpbusd;
// - Q4_0: value = d·(code − 8), codes 0..15 (−8·Σq); Q5_0: d·(code − 16), codes 0..31
//   (−16·Σq);
// - Q4_1, Q5_1: value = d·code + m, codes unsigned as stored; m·d_act·Σq is added in f32;
// - IQ4_NL: Q4_0's layout, kIq4nlValues + 128 looked up by vpshufb (−128·Σq).
#include "kernels/matvec_vnni_parts.h"

#if defined(__x86_64__)
#include <cstring>
#include <type_traits>

namespace lowbit::kernels::vnni {
namespace {

template <class Block>
constexpr bool kHasMin =
    std::is_same_v<Block, quant::BlockQ4_1> || std::is_same_v<Block, quant::BlockQ5_1>;
template <class Block>
constexpr bool kHasFifth =
    std::is_same_v<Block, quant::BlockQ5_0> || std::is_same_v<Block, quant::BlockQ5_1>;
template <class Block>
constexpr bool kLooksUp = std::is_same_v<Block, quant::BlockIQ4_NL>;
template <class Block>
constexpr bool kBytes = std::is_same_v<Block, quant::BlockQ8_0>;

// The 64 weights (unsigned) of blocks b and b + 1, or of b alone (then lanes 32..63 hold b's
// codes again; the caller masks them). Q8_0's 32 code bytes per block are the weights once
// xored with 0x80. The nibble types' 16 code bytes hold values 0..15 in the low nibbles and
// 16..31 in the high ones, so [qs_b | qs_b+1] as 128-bit lanes [B0 B0 B1 B1], shifted by
// 0 | 4 | 0 | 4, are both blocks' 64 values in order. The fifth bit of value e is bit e of
// the block's 32-bit qh: the two qh words are the byte mask of bit 4.
template <class Block>
LOWBIT_VNNI inline __m512i block_weights(const Block* blk, size_t b, bool pair) {
  if constexpr (kBytes<Block>) {
    const __m256i w0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b].qs));
    const __m256i w1 =
        pair ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[b + 1].qs)) : w0;
    return _mm512_xor_si512(_mm512_inserti64x4(_mm512_castsi256_si512(w0), w1, 1),
                            _mm512_set1_epi8(static_cast<char>(0x80)));
  } else {
    const __m128i lo = _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[b].qs));
    const __m128i hi = pair ? _mm_loadu_si128(reinterpret_cast<const __m128i*>(blk[b + 1].qs)) : lo;
    const __m512i both = _mm512_castsi256_si512(_mm256_set_m128i(hi, lo));
    const __m512i lanes = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(1, 1, 0, 0));
    const __m512i codes =
        _mm512_and_si512(_mm512_srlv_epi16(lanes, eighths(0, 4, 0, 4)), _mm512_set1_epi8(15));
    if constexpr (kHasFifth<Block>) {
      uint32_t qh0, qh1 = 0;
      std::memcpy(&qh0, blk[b].qh, 4);
      if (pair) std::memcpy(&qh1, blk[b + 1].qh, 4);
      const __mmask64 fifth = _cvtu64_mask64(qh0 | uint64_t{qh1} << 32);
      return _mm512_or_si512(codes, _mm512_maskz_mov_epi8(fifth, _mm512_set1_epi8(16)));
    } else if constexpr (kLooksUp<Block>) {
      const __m512i values = _mm512_broadcast_i32x4(
          _mm_load_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned.data())));
      return _mm512_shuffle_epi8(values, codes);
    } else {
      return codes;
    }
  }
}

// An f16 field of block b in lanes 0..7 and of b + 1 in lanes 8..15 (b's again when !pair),
// as f32.
LOWBIT_VNNI inline __m512 spread_f16(uint16_t first, uint16_t second) {
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(second)),
                                          _mm_set1_epi16(static_cast<int16_t>(first))));
}

// acc += blocks b (and b + 1 when pair) · the token; lanes 8..15 stay out when !pair, and
// nothing past the row is read.
template <class Block>
LOWBIT_VNNI inline __m512 block_step(const Block* blk, size_t b, bool pair, const Token& tok,
                                     __m512 acc) {
  const __mmask16 lanes = pair ? 0xffff : 0x00ff;
  const __m512i s = _mm512_maskz_dpbusd_epi32(
      lanes, _mm512_maskz_loadu_epi32(lanes, tok.corr8.data() + 8 * b), block_weights(blk, b, pair),
      _mm512_maskz_loadu_epi8(pair ? ~uint64_t{0} : 0xffffffffULL, tok.q.data() + 32 * b));
  const __m512 d = spread_f16(blk[b].d, blk[pair ? b + 1 : b].d);
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                        _mm512_mul_ps(d, _mm512_maskz_loadu_ps(lanes, tok.d8.data() + 8 * b)), acc);
  if constexpr (kHasMin<Block>)  // m·d_act·Σq, an eighth in each of the block's lanes
    acc = _mm512_fmadd_ps(spread_f16(blk[b].m, blk[pair ? b + 1 : b].m),
                          _mm512_maskz_loadu_ps(lanes, tok.sum8.data() + 8 * b), acc);
  return acc;
}

// Σ over blocks [b, n_blocks) of the row · the token, two blocks per step and a masked
// step for an odd last one.
template <class Block>
LOWBIT_VNNI float blocks_from(const Block* blk, size_t b, size_t n_blocks, const Token& tok) {
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};  // two chains of fma
  for (size_t i = 0; b + 2 <= n_blocks; b += 2, ++i) {
    prefetch_block<2 * sizeof(Block), kBytes<Block>>(blk + b);
    acc[i % 2] = block_step(blk, b, true, tok, acc[i % 2]);
  }
  if (b < n_blocks) acc[0] = block_step(blk, b, false, tok, acc[0]);
  return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

// Q8_0, eight blocks (272 bytes) per step. Each block's vpdpbusd fills 8 int32 lanes of a
// ymm; two rounds of unpack-and-add fold the eight vectors into two, [s0 s1 s2 s3 | s0 s1 s2
// s3] and the same for blocks 4..7 (each half a partial sum of the block), so the float work
// is one conversion and one fma per four blocks. The eight d (f16 at bytes 34j) are picked
// out of the block bytes with vpermt2w.
LOWBIT_VNNI inline void q8_0_eight(const quant::BlockQ8_0* blk, const float* d_act,
                                   const Token& tok, size_t b, __m256& acc_lo, __m256& acc_hi) {
  prefetch_block<sizeof(quant::BlockQ8_0) * 8, true>(blk);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  __m256i s[8];
  for (int j = 0; j < 8; ++j) {
    const __m256i w =
        _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk[j].qs)), flip);
    s[j] = _mm256_dpbusd_epi32(
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tok.corr8.data() + 8 * (b + j))), w,
        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(tok.q.data() + 32 * (b + j))));
  }
  __m256i t[4];
  for (int j = 0; j < 4; ++j)  // per 128-bit half: [s_2j s_2j+1 s_2j s_2j+1]
    t[j] = _mm256_add_epi32(_mm256_unpacklo_epi32(s[2 * j], s[2 * j + 1]),
                            _mm256_unpackhi_epi32(s[2 * j], s[2 * j + 1]));
  const __m256i lo =
      _mm256_add_epi32(_mm256_unpacklo_epi64(t[0], t[1]), _mm256_unpackhi_epi64(t[0], t[1]));
  const __m256i hi =
      _mm256_add_epi32(_mm256_unpacklo_epi64(t[2], t[3]), _mm256_unpackhi_epi64(t[2], t[3]));
  // d_j is int16 17j of the group's bytes: 0, 17, 34, 51 in the first 128, 4, 21, 38, 55
  // (+64 lanes) in the next.
  const auto* bytes = reinterpret_cast<const uint8_t*>(blk);
  const __m512i first =
      _mm512_permutex2var_epi16(_mm512_loadu_si512(bytes),
                                _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 51, 34, 17, 0),
                                _mm512_loadu_si512(bytes + 64));
  const __m512i second =
      _mm512_permutex2var_epi16(_mm512_loadu_si512(bytes + 128),
                                _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                 0, 0, 0, 0, 0, 0, 0, 55, 38, 21, 4, 0, 0, 0, 0),
                                _mm512_loadu_si512(bytes + 192));
  const __m128i d16 = _mm512_castsi512_si128(_mm512_mask_blend_epi16(0xf0, first, second));
  const __m256 scale = _mm256_mul_ps(_mm256_cvtph_ps(d16), _mm256_loadu_ps(d_act));
  acc_lo =
      _mm256_fmadd_ps(_mm256_cvtepi32_ps(lo), _mm256_permute2f128_ps(scale, scale, 0x00), acc_lo);
  acc_hi =
      _mm256_fmadd_ps(_mm256_cvtepi32_ps(hi), _mm256_permute2f128_ps(scale, scale, 0x11), acc_hi);
}

}  // namespace

LOWBIT_VNNI float row_q8_0(const quant::BlockQ8_0* blk, size_t n_blocks, const ActRow& a,
                           const Token& tok) {
  __m256 acc_lo = _mm256_setzero_ps(), acc_hi = _mm256_setzero_ps();
  size_t b = 0;
  for (; b + 8 <= n_blocks; b += 8) q8_0_eight(blk + b, a.d + b, tok, b, acc_lo, acc_hi);
  return sum8(_mm256_add_ps(acc_lo, acc_hi)) + blocks_from(blk, b, n_blocks, tok);
}

float row_q4_0(const quant::BlockQ4_0* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return blocks_from(blk, 0, n_blocks, tok);
}
float row_q4_1(const quant::BlockQ4_1* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return blocks_from(blk, 0, n_blocks, tok);
}
float row_q5_0(const quant::BlockQ5_0* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return blocks_from(blk, 0, n_blocks, tok);
}
float row_q5_1(const quant::BlockQ5_1* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return blocks_from(blk, 0, n_blocks, tok);
}
float row_iq4_nl(const quant::BlockIQ4_NL* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return blocks_from(blk, 0, n_blocks, tok);
}

}  // namespace lowbit::kernels::vnni

#endif

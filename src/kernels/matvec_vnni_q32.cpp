// One-token VNNI rows of the 32-value nibble types Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL (the
// dispatch: matvec_vnni.cpp). As there, the weights are the unsigned operand of vpdpbusd and
// the activations the signed one; whatever offset makes a weight unsigned comes back out of
// the block sum through tok.corr8:
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

// The 64 weights (unsigned) of blocks b and b + 1, or of b alone (then lanes 32..63 hold b's
// nibbles again; the caller masks them). Block b's 16 code bytes hold its values 0..15 in the low
// nibbles and 16..31 in the high ones, so [qs_b | qs_b+1] as 128-bit lanes [B0 B0 B1 B1],
// shifted by 0 | 4 | 0 | 4, are both blocks' 64 values in order. The fifth bit of value e is
// bit e of the block's 32-bit qh: the two qh words are the byte mask of bit 4.
template <class Block>
LOWBIT_VNNI inline __m512i nibble_weights(const Block* blk, size_t b, bool pair) {
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

// An f16 field of block b in lanes 0..7 and of b + 1 in lanes 8..15 (b's again when !pair),
// as f32.
LOWBIT_VNNI inline __m512 spread_f16(uint16_t first, uint16_t second) {
  return _mm512_cvtph_ps(_mm256_set_m128i(_mm_set1_epi16(static_cast<int16_t>(second)),
                                          _mm_set1_epi16(static_cast<int16_t>(first))));
}

// acc += blocks b (and b + 1 when pair) · the token; lanes 8..15 stay out when !pair, and
// nothing past the row is read.
template <class Block>
LOWBIT_VNNI inline __m512 nibble_blocks(const Block* blk, size_t b, bool pair, const Token& tok,
                                        __m512 acc) {
  const __mmask16 lanes = pair ? 0xffff : 0x00ff;
  const __m512i s = _mm512_maskz_dpbusd_epi32(
      lanes, _mm512_maskz_loadu_epi32(lanes, tok.corr8.data() + 8 * b),
      nibble_weights(blk, b, pair),
      _mm512_maskz_loadu_epi8(pair ? ~uint64_t{0} : 0xffffffffULL, tok.q.data() + 32 * b));
  const __m512 d = spread_f16(blk[b].d, blk[pair ? b + 1 : b].d);
  acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s),
                        _mm512_mul_ps(d, _mm512_maskz_loadu_ps(lanes, tok.d8.data() + 8 * b)), acc);
  if constexpr (kHasMin<Block>)  // m·d_act·Σq, an eighth in each of the block's lanes
    acc = _mm512_fmadd_ps(spread_f16(blk[b].m, blk[pair ? b + 1 : b].m),
                          _mm512_maskz_loadu_ps(lanes, tok.sum8.data() + 8 * b), acc);
  return acc;
}

template <class Block>
LOWBIT_VNNI float row_nibbles(const Block* blk, size_t n_blocks, const Token& tok) {
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};  // two chains of fma
  size_t b = 0;
  for (; b + 2 <= n_blocks; b += 2) {
    prefetch_block<2 * sizeof(Block)>(blk + b);
    acc[b / 2 % 2] = nibble_blocks(blk, b, true, tok, acc[b / 2 % 2]);
  }
  if (b < n_blocks) acc[0] = nibble_blocks(blk, b, false, tok, acc[0]);  // an odd last block
  return _mm512_reduce_add_ps(_mm512_add_ps(acc[0], acc[1]));
}

}  // namespace

float row_q4_0(const quant::BlockQ4_0* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return row_nibbles(blk, n_blocks, tok);
}
float row_q4_1(const quant::BlockQ4_1* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return row_nibbles(blk, n_blocks, tok);
}
float row_q5_0(const quant::BlockQ5_0* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return row_nibbles(blk, n_blocks, tok);
}
float row_q5_1(const quant::BlockQ5_1* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return row_nibbles(blk, n_blocks, tok);
}
float row_iq4_nl(const quant::BlockIQ4_NL* blk, size_t n_blocks, const ActRow&, const Token& tok) {
  return row_nibbles(blk, n_blocks, tok);
}

}  // namespace lowbit::kernels::vnni

#endif

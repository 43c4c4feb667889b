// One-token VNNI rows of Q2_K, Q3_K and IQ4_XS (the 32-value types: matvec_vnni_q32.cpp;
// the rest and the dispatch: matvec_vnni.cpp). As there, the weights are the unsigned operand
// and the activations the signed one:
// - Q2_K: 2-bit codes 0..3 (the min term from the 16-value sums, as Q4_K's);
// - Q3_K: 3-bit codes 0..7 stored +4 (−4·Σ_s scale_s·Σq_s comes back out);
// - IQ4_XS: kIq4nlValues + 128 (1..241) looked up by vpshufb, multiplied with vpdpbusd,
//   since 241·127·2 would overflow vpmaddubsw's int16 (−128·Σ_s scale_s·Σq_s comes back out).
#include "kernels/matvec_vnni_parts.h"

#if defined(__x86_64__)
#include <cstring>

namespace lowbit::kernels::vnni {
namespace {

// Q3_K's 16 signed 6-bit scales (block_layouts.h, unpack_scale_q3k) as int16: scale i has
// low bits = nibble (i / 8) of scales[i % 8] and high bits = bits 2(i / 4) of scales[8 + i % 4].
LOWBIT_VNNI inline __m256i q3_k_scales(const uint8_t* sc) {
  const __m128i low4 = _mm_set1_epi8(15);
  const __m128i bytes = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(sc));
  const __m128i low =
      _mm_unpacklo_epi64(_mm_and_si128(bytes, low4), _mm_and_si128(_mm_srli_epi16(bytes, 4), low4));
  uint32_t high_bytes;
  std::memcpy(&high_bytes, sc + 8, 4);
  const __m128i high = _mm_and_si128(
      _mm_srlv_epi32(_mm_set1_epi32(static_cast<int32_t>(high_bytes)), _mm_set_epi32(6, 4, 2, 0)),
      _mm_set1_epi8(3));
  const __m128i s8 = _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(high, 4)), _mm_set1_epi8(32));
  return _mm256_cvtepi8_epi16(s8);
}

}  // namespace

// Q2_K: 16 sub-blocks of 16, scale and min 4 bits each; the code of value 128h + 32k + l is
// qs[32h + l] >> 2k & 3. qs's 32 bytes broadcast and shifted by 0 | 2 (4 | 6) give values
// 128h .. 128h + 63 (the next 64).
LOWBIT_VNNI float row_q2_k(const quant::BlockQ2_K* blk, size_t n_blocks, const ActRow& a,
                           const Token& tok) {
  const __m512i shift[2] = {halves(0, 2), halves(4, 6)};
  const __m512i pick[4] = {quarters(0), quarters(4), quarters(8), quarters(12)};
  const __m512i low2 = _mm512_set1_epi8(3);
  const __m128i low4 = _mm_set1_epi8(15);
  __m512 acc = _mm512_setzero_ps();
  __m256 min_acc = _mm256_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const quant::BlockQ2_K& k = blk[b];
    prefetch_block<sizeof(quant::BlockQ2_K)>(&k);
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(k.scales));
    const __m512i scales = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sc, low4)));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sc, 4), low4));
    const int8_t* q = tok.q.data() + 256 * b;
    __m512i isums[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};  // two chains
    for (int h = 0; h < 2; ++h) {
      const __m512i qs = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs + 32 * h)));
      for (int j = 0; j < 2; ++j) {
        const __m512i v = _mm512_and_si512(_mm512_srlv_epi16(qs, shift[j]), low2);
        const __m512i pairs = _mm512_maddubs_epi16(v, _mm512_loadu_si512(q + 128 * h + 64 * j));
        isums[j] =
            _mm512_dpwssd_epi32(isums[j], pairs, _mm512_permutexvar_epi16(pick[2 * h + j], scales));
      }
    }
    const __m512i isum = _mm512_add_epi32(isums[0], isums[1]);
    const float ad = a.d[b];
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(f16(k.d) * ad), acc);
    min_acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(mins, sums16(a, b))),
                              _mm256_set1_ps(f16(k.dmin) * ad), min_acc);
  }
  return _mm512_reduce_add_ps(acc) - sum8(min_acc);
}

// Q3_K: Q2_K's low bits, and the third bit of value 128h + 32k + l is hmask[l] >> (4h + k) & 1.
LOWBIT_VNNI float row_q3_k(const quant::BlockQ3_K* blk, size_t n_blocks, const ActRow& a,
                           const Token& tok) {
  const __m512i shift[2] = {halves(0, 2), halves(4, 6)};
  const __m512i high_shift[4] = {halves(0, 1), halves(2, 3), halves(4, 5), halves(6, 7)};
  const __m512i pick[4] = {quarters(0), quarters(4), quarters(8), quarters(12)};
  const __m512i low2 = _mm512_set1_epi8(3), one = _mm512_set1_epi8(1);
  __m512 acc = _mm512_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const quant::BlockQ3_K& k = blk[b];
    prefetch_block<sizeof(quant::BlockQ3_K)>(&k);
    const __m256i sc16 = q3_k_scales(k.scales);
    const __m512i scales = _mm512_castsi256_si512(sc16);
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, sums16(a, b)), 2);
    // two chains, one per j
    __m512i isums[2] = {_mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), offset)),
                        _mm512_setzero_si512()};
    const __m512i hmask =
        _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.hmask)));
    const int8_t* q = tok.q.data() + 256 * b;
    for (int h = 0; h < 2; ++h) {
      const __m512i qs = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs + 32 * h)));
      for (int j = 0; j < 2; ++j) {
        const __m512i low = _mm512_and_si512(_mm512_srlv_epi16(qs, shift[j]), low2);
        const __m512i high = _mm512_and_si512(_mm512_srlv_epi16(hmask, high_shift[2 * h + j]), one);
        const __m512i v = _mm512_or_si512(low, _mm512_slli_epi16(high, 2));
        const __m512i pairs = _mm512_maddubs_epi16(v, _mm512_loadu_si512(q + 128 * h + 64 * j));
        isums[j] =
            _mm512_dpwssd_epi32(isums[j], pairs, _mm512_permutexvar_epi16(pick[2 * h + j], scales));
      }
    }
    const __m512i isum = _mm512_add_epi32(isums[0], isums[1]);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(f16(k.d) * a.d[b]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// IQ4_XS: 8 sub-blocks of 32; sub-block s's codes are qs[16s .. 16s + 15], low nibbles its
// values 0..15 and high nibbles 16..31. qs[32m .. 32m + 31] as 128-bit lanes [B0 B0 B1 B1],
// shifted by 0 | 4 | 0 | 4, are values 64m .. 64m + 63 in order.
LOWBIT_VNNI float row_iq4_xs(const quant::BlockIQ4_XS* blk, size_t n_blocks, const ActRow& a,
                             const Token& tok) {
  const __m512i values = _mm512_broadcast_i32x4(
      _mm_load_si128(reinterpret_cast<const __m128i*>(kIq4nlUnsigned.data())));
  const __m512i nibble_shift = eighths(0, 4, 0, 4), low4 = _mm512_set1_epi8(15);
  __m512i pair_of[4];  // int32 lanes 0..7 take scale 2m, lanes 8..15 scale 2m + 1
  for (int m = 0; m < 4; ++m)
    pair_of[m] = _mm512_inserti64x4(_mm512_set1_epi32(2 * m), _mm256_set1_epi32(2 * m + 1), 1);
  const __m256i nibble_at = _mm256_set_epi32(28, 24, 20, 16, 12, 8, 4, 0);
  // bits 2s, 2s + 1 of scales_h (bits 16 + 2s, 17 + 2s of the head) moved to 4, 5
  const __m256i pair_at = _mm256_set_epi32(26, 24, 22, 20, 18, 16, 14, 12);
  const __m256i low4x8 = _mm256_set1_epi32(15), high2x8 = _mm256_set1_epi32(0x30);
  __m512 acc = _mm512_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const quant::BlockIQ4_XS& k = blk[b];
    prefetch_block<sizeof(quant::BlockIQ4_XS)>(&k);
    // scale s = (nibble s of scales_l | bits 2s, 2s + 1 of scales_h << 4) − 32, in lane s;
    // scales_h is the high half of the block's first 32 bits
    uint32_t head, low_bytes;
    std::memcpy(&head, &k, 4);
    std::memcpy(&low_bytes, k.scales_l, 4);
    const __m256i low = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int32_t>(low_bytes)), nibble_at), low4x8);
    const __m256i high = _mm256_and_si256(
        _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int32_t>(head)), pair_at), high2x8);
    const __m256i sc32 = _mm256_sub_epi32(_mm256_or_si256(low, high), _mm256_set1_epi32(32));
    const __m512i scales = _mm512_castsi256_si512(sc32);
    // −128·Σ_s scale_s·Σq_s: each scale twice, against the two 16-value sums of its sub-block
    const __m128i sc16 = _mm256_cvtepi32_epi16(sc32);
    const __m256i twice =
        _mm256_set_m128i(_mm_unpackhi_epi16(sc16, sc16), _mm_unpacklo_epi16(sc16, sc16));
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(twice, sums16(a, b)), 7);
    __m512i isum = _mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), offset));
    const int8_t* q = tok.q.data() + 256 * b;
    for (int m = 0; m < 4; ++m) {
      const __m512i both = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs + 32 * m)));
      const __m512i lanes = _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(1, 1, 0, 0));
      const __m512i codes = _mm512_and_si512(_mm512_srlv_epi16(lanes, nibble_shift), low4);
      const __m512i w = _mm512_shuffle_epi8(values, codes);
      const __m512i dot =
          _mm512_dpbusd_epi32(_mm512_setzero_si512(), w, _mm512_loadu_si512(q + 64 * m));
      isum = _mm512_add_epi32(
          isum, _mm512_mullo_epi32(dot, _mm512_permutexvar_epi32(pair_of[m], scales)));
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(f16(k.d) * a.d[b]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace lowbit::kernels::vnni

#endif

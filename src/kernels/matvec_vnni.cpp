// One token through Q4_K, Q5_K and Q6_K rows with vpmaddubsw, 64 values of one row per zmm,
// straight from the GGUF blocks (no repacking, so generation reads the file's bytes and
// nothing else), and the dispatch of every one-token VNNI row (the 32-value types:
// matvec_vnni_q32.cpp; Q2_K, Q3_K, IQ4_XS: matvec_vnni_low.cpp).
//
// Both byte products take an unsigned and a signed operand. The weights are the unsigned
// one: Q4_K's nibbles (0..15), Q5_K's codes (0..31) and Q6_K's codes (0..63, stored +32)
// are unsigned as they are. The activations are the signed one (q = u8 xor 0x80). The
// offsets come back out exactly, from the activations' sums: Q6_K −32·Σ_s scale_s·Σq_s per
// block.
//
// The K types' sub-blocks are scaled in int16 pairs: vpmaddubsw (|v·q| ≤ 63·127·2 < 2^15)
// then vpdpwssd with the scales spread over the lanes. Each block's int32 sum is converted
// to f32 once and multiplied by d·d_act, as in the reference.
#include "kernels/matvec_vnni.h"

#if defined(__x86_64__)
#include <cstddef>
#include <cstring>
#include <type_traits>

#include "kernels/matvec_vnni_parts.h"

namespace lowbit::kernels {
namespace vnni {
namespace {

LOWBIT_VNNI void signed_codes(const ActRow& a, size_t row_len, Token& tok) {
  tok.q.resize(row_len);
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (size_t i = 0; i < row_len; i += 32) {  // row_len is a multiple of 32
    const __m256i u = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.u8 + i));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(tok.q.data() + i), _mm256_xor_si256(u, flip));
  }
}

// 8 lanes per 32-value block: eight lanes of −(offset / 8)·Σq add up to the −offset·Σq that
// the weights' offset brought in (Q8_0 and IQ4_NL: w + 128; Q4_0: 8; Q5_0: 16, the offsets
// in their value = d·(code − offset)). With `sums` (the types with a minimum), also
// d_act·Σq / 8 per lane. Redone for every piece of rows a thread takes, so 16 blocks go per
// step: their sums in one zmm, spread to 8 lanes each by vpermd (scalar stores were 4% of
// Q8_0 generation's samples).
LOWBIT_VNNI void block_lanes(const ActRow& a, size_t n_blocks, int32_t offset, bool sums,
                             Token& tok) {
  tok.corr8.resize(8 * n_blocks);
  tok.d8.resize(8 * n_blocks);
  tok.sum8.resize(sums ? 8 * n_blocks : 0);
  const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
  size_t b = 0;
  for (; b + 16 <= n_blocks; b += 16) {
    const __m512i lo = _mm512_loadu_si512(a.sum16 + 2 * b),
                  hi = _mm512_loadu_si512(a.sum16 + 2 * b + 16);
    const __m512i sum = _mm512_add_epi32(_mm512_permutex2var_epi32(lo, evens, hi),
                                         _mm512_permutex2var_epi32(lo, odds, hi));
    const __m512i corr = _mm512_mullo_epi32(sum, _mm512_set1_epi32(-(offset / 8)));
    const __m512 d = _mm512_loadu_ps(a.d + b);
    const __m512 d_sum =
        _mm512_mul_ps(_mm512_mul_ps(d, _mm512_cvtepi32_ps(sum)), _mm512_set1_ps(0.125f));
    for (int k = 0; k < 8; ++k) {  // blocks b + 2k (lanes 0..7) and b + 2k + 1 (8..15)
      const __m512i pick = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi32(2 * k)),
                                              _mm256_set1_epi32(2 * k + 1), 1);
      const size_t at = 8 * (b + 2 * k);
      _mm512_storeu_si512(tok.corr8.data() + at, _mm512_permutexvar_epi32(pick, corr));
      _mm512_storeu_ps(tok.d8.data() + at, _mm512_permutexvar_ps(pick, d));
      if (sums) _mm512_storeu_ps(tok.sum8.data() + at, _mm512_permutexvar_ps(pick, d_sum));
    }
  }
  for (; b < n_blocks; ++b) {
    const int32_t sum = a.sum16[2 * b] + a.sum16[2 * b + 1];
    for (size_t l = 0; l < 8; ++l) {
      tok.corr8[8 * b + l] = -(offset / 8) * sum, tok.d8[8 * b + l] = a.d[b];
      if (sums) tok.sum8[8 * b + l] = a.d[b] * static_cast<float>(sum) / 8;
    }
  }
}

constexpr int kAndOr = 0xea;  // vpternlog's truth table for (a & b) | c

// Q4_K and Q5_K: 8 sub-blocks of 32 with 6-bit scales and mins (block_layouts.h). qs[32g + l]
// holds value 64g + l in its low nibble and 64g + 32 + l in its high one, so one 32-byte load
// broadcast to both halves of a zmm and shifted by 0 | 4 gives values 64g .. 64g + 63.
// Q5_K's fifth bit of value e is bit e / 32 of qh[e % 32]: qh broadcast, bit 2g | 2g + 1
// moved to bit 4.
template <class Block>
LOWBIT_VNNI float row_k_min(const Block* blk, size_t n_blocks, const ActRow& a, const Token& tok) {
  static_assert(offsetof(Block, scales) == 4, "the head load takes d, dmin, scales");
  constexpr bool kFifth = std::is_same_v<Block, quant::BlockQ5_K>;
  const __m512i shift04 = halves(0, 4), low4 = _mm512_set1_epi8(15);
  const __m512i pick[4] = {halves(0, 1), halves(2, 3), halves(4, 5), halves(6, 7)};
  // Q5_K: bits 2g | 2g + 1 onto bit 4, shifting left for g < 2 and right after. The int16
  // shifts move bits across the byte boundary, but only by ≤ 4 left or ≤ 3 right, so bit 4
  // of each byte still comes from that byte.
  const __m512i to_bit4[4] = {halves(4, 3), halves(2, 1), halves(0, 1), halves(2, 3)};
  const __m512i bit4 = _mm512_set1_epi8(0x10);
  // 32-bit lanes of the block's first 16 bytes: [d dmin | u0 | u1 | u2] (u = the 12 scale
  // bytes). Scale j < 4 is u0's byte j & 63, scale j >= 4 u2's nibble | u0's top bits << 4;
  // the mins the same from u1 and u2's high nibbles.
  const __m128i keep_low = _mm_set_epi32(0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f);
  const __m128i keep_top = _mm_set_epi32(0x30303030, 0, 0x30303030, 0);
  const __m128i nibble_shift = _mm_set_epi32(4, 0, 0, 0);
  // int16 lanes 2j, 2j + 1 take min j (lane 8 + j of the unpacked scales)
  const __m256i pick_min =
      _mm256_set_epi16(15, 15, 14, 14, 13, 13, 12, 12, 11, 11, 10, 10, 9, 9, 8, 8);
  __m512 acc = _mm512_setzero_ps();
  __m256 min_acc = _mm256_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const int8_t* q = tok.q.data() + 256 * b;
    const Block& k = blk[b];
    prefetch_block<sizeof(Block)>(&k);
    const __m128i head = _mm_loadu_si128(reinterpret_cast<const __m128i*>(&k));
    const __m128i low = _mm_and_si128(
        _mm_srlv_epi32(_mm_shuffle_epi32(head, _MM_SHUFFLE(3, 2, 3, 1)), nibble_shift), keep_low);
    const __m128i top = _mm_and_si128(
        _mm_srli_epi32(_mm_shuffle_epi32(head, _MM_SHUFFLE(2, 2, 1, 1)), 2), keep_top);
    // int16 lanes 0..7: the scales, 8..15: the mins
    const __m256i sc_mn = _mm256_cvtepu8_epi16(_mm_or_si128(low, top));
    const __m512i scales = _mm512_castsi256_si512(sc_mn);
    // [d·d_act, dmin·d_act, unused, unused] (lanes 2, 3: scale bytes read as f16)
    const __m128 dd = _mm_mul_ps(_mm_cvtph_ps(head), _mm_broadcast_ss(a.d + b));
    __m512i qh = _mm512_setzero_si512();
    if constexpr (kFifth)
      qh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh)));
    __m512i isums[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};  // two chains
    for (int g = 0; g < 4; ++g) {
      const __m512i bytes = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qs + 32 * g)));
      __m512i v;
      if constexpr (kFifth) {  // (nibble & 15) | bit 2g (2g + 1) of qh moved to bit 4
        const __m512i moved =
            g < 2 ? _mm512_sllv_epi16(qh, to_bit4[g]) : _mm512_srlv_epi16(qh, to_bit4[g]);
        const __m512i bit = _mm512_and_si512(moved, bit4);
        v = _mm512_ternarylogic_epi32(_mm512_srlv_epi16(bytes, shift04), low4, bit, kAndOr);
      } else {
        v = _mm512_and_si512(_mm512_srlv_epi16(bytes, shift04), low4);
      }
      const __m512i pairs = _mm512_maddubs_epi16(v, _mm512_loadu_si512(q + 64 * g));
      isums[g & 1] =
          _mm512_dpwssd_epi32(isums[g & 1], pairs, _mm512_permutexvar_epi16(pick[g], scales));
    }
    const __m512i isum = _mm512_add_epi32(isums[0], isums[1]);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_broadcastss_ps(dd), acc);
    // min term: lanes j of m_j·(Σq over values 32j .. 32j + 31), from the 16-value sums
    const __m256i m16 = _mm256_permutexvar_epi16(pick_min, sc_mn);
    min_acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(m16, sums16(a, b))),
                              _mm256_broadcastss_ps(_mm_movehdup_ps(dd)), min_acc);
  }
  return _mm512_reduce_add_ps(acc) - sum8(min_acc);
}

// Q6_K: 16 sub-blocks of 16 with int8 scales; the code of value 128h + 32k + l is the
// nibble of ql[64h + 32(k & 1) + l] (low for k < 2) plus (qh[32h + l] >> 2k & 3) << 4.
// So ql[64h .. 64h + 63]'s low nibbles are values 128h .. 128h + 63 and its high nibbles the
// next 64; qh's 32 bytes, broadcast and shifted so that bits 2k, 2k + 1 land on 4, 5 (left
// by 4 | 2 for k = 0 | 1, right by 0 | 2 for k = 2 | 3), give their top bits.
LOWBIT_VNNI float row_q6_k(const quant::BlockQ6_K* blk, size_t n_blocks, const ActRow& a,
                           const Token& tok) {
  const __m512i left42 = halves(4, 2), right02 = halves(0, 2);
  const __m512i low4 = _mm512_set1_epi8(15), bits45 = _mm512_set1_epi8(0x30);
  const __m512i pick[4] = {quarters(0), quarters(4), quarters(8), quarters(12)};
  __m512 acc = _mm512_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const quant::BlockQ6_K& k = blk[b];
    prefetch_block<sizeof(quant::BlockQ6_K), true>(&k);
    const __m256i sc16 =
        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(k.scales)));
    const __m512i scales = _mm512_castsi256_si512(sc16);
    // −32·Σ_s scale_s·Σq_s: the +32 of the stored codes
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(sc16, sums16(a, b)), 5);
    // two chains: the low nibbles' products and the high ones'
    __m512i isums[2] = {_mm512_zextsi256_si512(_mm256_sub_epi32(_mm256_setzero_si256(), offset)),
                        _mm512_setzero_si512()};
    const int8_t* q = tok.q.data() + 256 * b;
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = _mm512_loadu_si512(k.ql + 64 * h);
      const __m512i qh = _mm512_broadcast_i64x4(
          _mm256_loadu_si256(reinterpret_cast<const __m256i*>(k.qh + 32 * h)));
      const __m512i top_lo = _mm512_and_si512(_mm512_sllv_epi16(qh, left42), bits45);
      const __m512i top_hi = _mm512_and_si512(_mm512_srlv_epi16(qh, right02), bits45);
      const __m512i v_lo = _mm512_ternarylogic_epi32(ql, low4, top_lo, kAndOr);
      const __m512i v_hi =
          _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), low4, top_hi, kAndOr);
      const __m512i p_lo = _mm512_maddubs_epi16(v_lo, _mm512_loadu_si512(q + 128 * h));
      const __m512i p_hi = _mm512_maddubs_epi16(v_hi, _mm512_loadu_si512(q + 128 * h + 64));
      isums[0] = _mm512_dpwssd_epi32(isums[0], p_lo, _mm512_permutexvar_epi16(pick[2 * h], scales));
      isums[1] =
          _mm512_dpwssd_epi32(isums[1], p_hi, _mm512_permutexvar_epi16(pick[2 * h + 1], scales));
    }
    const __m512i isum = _mm512_add_epi32(isums[0], isums[1]);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(f16(k.d) * a.d[b]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// This thread's Token. Out of line on purpose: had GCC seen the thread_local itself, it
// specialised the row kernels on it and, in position-independent code, called
// __tls_get_addr on every row (and, in one rewrite, inside the block loop, spilling the
// vector registers around the call).
__attribute__((noinline)) Token& thread_token() {
  thread_local Token tok;
  return tok;
}

// y[r] = row(row r) for the n_rows rows of w, each n_blocks blocks of Block.
template <class Block>
void each_row(float (*row)(const Block*, size_t, const ActRow&, const Token&), const uint8_t* w,
              size_t row_bytes, size_t n_rows, size_t n_blocks, const ActRow& a, const Token& tok,
              float* y) {
  for (size_t r = 0; r < n_rows; ++r)
    y[r] = row(reinterpret_cast<const Block*>(w + r * row_bytes), n_blocks, a, tok);
}

}  // namespace
}  // namespace vnni

using namespace vnni;

bool has_matvec_vnni(DType t) {
  switch (t) {
    case DType::Q8_0:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::IQ4_NL:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
      return true;
    default:
      return false;
  }
}

void matvec_vnni(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                 const ActRow& a, float* y) {
  Token& tok = thread_token();
  signed_codes(a, row_len, tok);
  const size_t nb = row_len / 256;
  // The 32-value types: the weights' offset (what makes them unsigned) and whether they
  // have a minimum m (value = d·code + m).
  auto rows32 = [&](auto row, int32_t offset, bool has_min) {
    block_lanes(a, row_len / 32, offset, has_min, tok);
    return each_row(row, w, row_bytes, n_rows, row_len / 32, a, tok, y);
  };
  switch (t) {
    case DType::Q8_0:
      return rows32(row_q8_0, 128, false);
    case DType::Q4_0:
      return rows32(row_q4_0, 8, false);
    case DType::Q4_1:
      return rows32(row_q4_1, 0, true);
    case DType::Q5_0:
      return rows32(row_q5_0, 16, false);
    case DType::Q5_1:
      return rows32(row_q5_1, 0, true);
    case DType::IQ4_NL:
      return rows32(row_iq4_nl, 128, false);
    case DType::Q2_K:
      return each_row(row_q2_k, w, row_bytes, n_rows, nb, a, tok, y);
    case DType::Q3_K:
      return each_row(row_q3_k, w, row_bytes, n_rows, nb, a, tok, y);
    case DType::Q4_K:
      return each_row(row_k_min<quant::BlockQ4_K>, w, row_bytes, n_rows, nb, a, tok, y);
    case DType::Q5_K:
      return each_row(row_k_min<quant::BlockQ5_K>, w, row_bytes, n_rows, nb, a, tok, y);
    case DType::Q6_K:
      return each_row(row_q6_k, w, row_bytes, n_rows, nb, a, tok, y);
    case DType::IQ4_XS:
      return each_row(row_iq4_xs, w, row_bytes, n_rows, nb, a, tok, y);
    default:
      return dot_rows_reference(t, w, row_bytes, n_rows, row_len, a, y);
  }
}

}  // namespace lowbit::kernels

#else  // not x86-64

namespace lowbit::kernels {
bool has_matvec_vnni(DType) {
  return false;
}
void matvec_vnni(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                 const ActRow& a, float* y) {
  dot_rows_reference(t, w, row_bytes, n_rows, row_len, a, y);
}
}  // namespace lowbit::kernels

#endif

// Pieces shared by the one-token VNNI kernels (matvec_vnni.cpp: the K types with 32-value
// sub-blocks and Q6_K; matvec_vnni_low.cpp: Q2_K, Q3_K, IQ4_XS; matvec_vnni_q32.cpp: Q8_0,
// Q4_0, Q4_1, Q5_0, Q5_1, IQ4_NL). x86-64 only.
#pragma once

#if defined(__x86_64__)
#include <immintrin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/packed_layout.h"
#include "quant/block_layouts.h"

// GCC 12 flags the _mm512_undefined_* inside the cast and conversion intrinsics.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace lowbit::kernels::vnni {

// Weight bytes are requested ahead of the block in use: one row range streams through memory
// front to back. The types with the most bytes per multiply (Q8_0, Q6_K) wait on memory, and
// ask 32 KB ahead into L2 (BM_MatVec, one thread: Q8_0 +48%, Q6_K +21% against 3 KB into
// L1); the others wait on arithmetic and lose 3-6% that way, so they keep 3 KB into L1.
constexpr size_t kAheadNear = 3072, kAheadFar = 32768;

// lines 64 bytes apart covering `kBytes` from the distance past p
template <size_t kBytes, bool kFar = false>
inline void prefetch_block(const void* p) {
  constexpr auto kHint = kFar ? _MM_HINT_T1 : _MM_HINT_T0;
  const char* c = static_cast<const char*>(p) + (kFar ? kAheadFar : kAheadNear);
  for (size_t off = 0; off < kBytes; off += 64) _mm_prefetch(c + off, kHint);
}

// The token as the kernels read it, made once per call (one call covers a thread's rows).
struct Token {
  std::vector<int8_t> q;       // [row_len] the codes as signed bytes
  // The 32-value types, [n_blocks * 8] each: in lanes 8b .. 8b + 7, −(offset / 8)·Σq of
  // block b (corr8), its d_act (d8) and, for the types with a minimum, d_act·Σq / 8 (sum8).
  std::vector<int32_t> corr8;
  std::vector<float> d8;
  std::vector<float> sum8;
};

LOWBIT_VNNI inline float f16(uint16_t h) {
  return _cvtsh_ss(h);
}

// int16 lanes [0, 16) take lane a of the table, lanes [16, 32) lane b (vpermw indices).
LOWBIT_VNNI inline __m512i halves(int a, int b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set1_epi16(static_cast<int16_t>(a))),
                            _mm256_set1_epi16(static_cast<int16_t>(b)), 1);
}
// int16 lanes 8j .. 8j + 7 take the value of argument j.
LOWBIT_VNNI inline __m512i eighths(int a, int b, int c, int d) {
  const auto four = [](int v) { return 0x0001000100010001LL * v; };
  return _mm512_set_epi64(four(d), four(d), four(c), four(c), four(b), four(b), four(a), four(a));
}
// int16 lanes 8j .. 8j + 7 take lane first + j of the table (j = 0..3).
LOWBIT_VNNI inline __m512i quarters(int first) {
  return eighths(first, first + 1, first + 2, first + 3);
}

// kIq4nlValues + 128 (1..241): the unsigned weights vpshufb looks up for IQ4_NL and IQ4_XS.
alignas(16) inline constexpr std::array<uint8_t, 16> kIq4nlUnsigned = [] {
  std::array<uint8_t, 16> t{};
  for (int i = 0; i < 16; ++i) t[i] = static_cast<uint8_t>(quant::kIq4nlValues[i] + 128);
  return t;
}();

// Sum of the 8 f32 lanes.
LOWBIT_VNNI inline float sum8(__m256 v) {
  const __m128 m4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 m2 = _mm_add_ps(m4, _mm_movehl_ps(m4, m4));
  return _mm_cvtss_f32(_mm_add_ss(m2, _mm_movehdup_ps(m2)));
}
// The activations' 16 sums of 16 values of block b (256 values), as int16.
LOWBIT_VNNI inline __m256i sums16(const ActRow& a, size_t b) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.sum16_i16 + 16 * b));
}

// Rows of the 32-value types (matvec_vnni_q32.cpp; tok.corr8, tok.d8 and, for Q4_1 and
// Q5_1, tok.sum8 filled by block_lanes) and of Q2_K, Q3_K, IQ4_XS (matvec_vnni_low.cpp,
// blocks of 256): row · token for n_blocks blocks.
float row_q8_0(const quant::BlockQ8_0* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q4_0(const quant::BlockQ4_0* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q4_1(const quant::BlockQ4_1* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q5_0(const quant::BlockQ5_0* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q5_1(const quant::BlockQ5_1* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_iq4_nl(const quant::BlockIQ4_NL* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q2_k(const quant::BlockQ2_K* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_q3_k(const quant::BlockQ3_K* blk, size_t n_blocks, const ActRow& a, const Token& tok);
float row_iq4_xs(const quant::BlockIQ4_XS* blk, size_t n_blocks, const ActRow& a, const Token& tok);

}  // namespace lowbit::kernels::vnni

#endif

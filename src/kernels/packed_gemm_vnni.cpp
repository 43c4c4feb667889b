// The AVX-512 VNNI product on 16-row panels (layout in lowbit/kernels.h). A register tile is
// the panel's 16 rows (one zmm lane each) × T tokens: per 4 columns, one load of the codes
// and, per token, vpdpbusd with the token's 4 activation bytes broadcast to every lane.
// Sub-block sums are scaled in int32 (vpmulld); the 32-value types without sub-block scales
// take vpdpbusd straight into the block's sum. That sum is converted to f32 once and
// multiplied by d·d_act, exactly as packed_gemm_reference does. Compiled for these
// instructions through function attributes only; called after vnni_available().
#include <algorithm>

#include "kernels/packed_layout.h"

#if defined(__x86_64__)
#include <immintrin.h>

// GCC 12 flags the _mm512_undefined_ps() inside _mm512_cvtepi32_ps as maybe uninitialized.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace lowbit::kernels {
namespace {

constexpr size_t kPanel = PackedRows::kPanel;

// sums[p][t] += the codes of groups [0, kGroups) from byte `codes` of record rec[p] · token t's
// activations from column c (a group: 4 columns, one vpdpbusd per panel and token).
template <int P, int T, int kGroups>
LOWBIT_VNNI __attribute__((always_inline)) inline void dot_groups(const uint8_t* const* rec,
                                                                  size_t codes,
                                                                  const uint8_t* const* act,
                                                                  size_t c, __m512i (&sums)[P][T]) {
#pragma GCC unroll 8
  for (int k = 0; k < kGroups; ++k) {
    __m512i v[P];
    for (int p = 0; p < P; ++p) v[p] = _mm512_loadu_si512(rec[p] + codes + 64 * k);
    for (int t = 0; t < T; ++t) {
      const __m512i u = _mm512_set1_epi32(load_i32(act[t] + c + 4 * k));
      for (int p = 0; p < P; ++p) sums[p][t] = _mm512_dpbusd_epi32(sums[p][t], u, v[p]);
    }
  }
}

// P consecutive panels (16·P rows) × T tokens; rows[p] masks the rows that exist.
template <int P, int T, int kSub, bool kScaled, bool kMin>
LOWBIT_VNNI void tile(const PackedRows& w, const RecordLayout& l, const uint8_t* panel,
                      const QuantizedActs& a, size_t t0, float* y, size_t ld_y,
                      const __mmask16* rows) {
  const size_t cols = w.cols, n_blocks = cols / w.block;
  constexpr int kGroups = kSub / 4;  // 4-column groups per sub-block, unrolled
  const uint8_t* act[T];
  const int16_t* sums[T];  // each token's Σq per 16 values
  for (int t = 0; t < T; ++t) {
    act[t] = a.u8.data() + (t0 + t) * cols;
    sums[t] = a.sum16_i16.data() + (t0 + t) * (cols / 16);
  }
  __m512 acc[P][T];
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t) acc[p][t] = _mm512_setzero_ps();
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint8_t* rec[P];
    for (int p = 0; p < P; ++p) rec[p] = panel + p * w.panel_bytes + b * w.record_bytes;
    const size_t c0 = b * w.block;
    __m512i isum[P][T];
    for (int p = 0; p < P; ++p)
      for (int t = 0; t < T; ++t) isum[p][t] = _mm512_setzero_si512();
    if constexpr (!kScaled) {  // one unscaled sub-block: vpdpbusd straight into the sums
      dot_groups<P, T, kGroups>(rec, 0, act, c0, isum);
    } else {
      for (int s = 0; s < w.n_sub; ++s) {
        __m512i part[P][T];
        for (int p = 0; p < P; ++p)
          for (int t = 0; t < T; ++t) part[p][t] = _mm512_setzero_si512();
        dot_groups<P, T, kGroups>(rec, static_cast<size_t>(s) * kGroups * 64, act,
                                  c0 + static_cast<size_t>(s) * w.sub, part);
        for (int p = 0; p < P; ++p) {
          const __m512i sc = _mm512_loadu_si512(rec[p] + l.scale + s * 64);
          for (int t = 0; t < T; ++t)
            isum[p][t] = _mm512_add_epi32(isum[p][t], _mm512_mullo_epi32(part[p][t], sc));
        }
      }
    }
    for (int p = 0; p < P; ++p) {
      const __m512i corr = _mm512_loadu_si512(rec[p] + l.corr);
      const __m512 d = _mm512_loadu_ps(rec[p] + l.d);
      for (int t = 0; t < T; ++t) {
        const __m512 ad = _mm512_set1_ps(a.d[(t0 + t) * n_blocks + b]);
        const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(isum[p][t], corr));
        acc[p][t] = _mm512_fmadd_ps(f, _mm512_mul_ps(d, ad), acc[p][t]);
      }
    }
    if constexpr (kMin) {  // Σ_g min[g] · Σq over 16 values g, two groups per vpdpwssd
      for (int p = 0; p < P; ++p) {
        const __m512 dmin = _mm512_loadu_ps(rec[p] + l.dmin);
        __m512i msum[T];
        for (int t = 0; t < T; ++t) msum[t] = _mm512_setzero_si512();
        for (int j = 0; j < w.block / 32; ++j) {
          const __m512i m = _mm512_loadu_si512(rec[p] + l.min + 64 * j);
          for (int t = 0; t < T; ++t) {
            const uint8_t* pair =
                reinterpret_cast<const uint8_t*>(sums[t] + b * (w.block / 16) + 2 * j);
            msum[t] = _mm512_dpwssd_epi32(msum[t], m, _mm512_set1_epi32(load_i32(pair)));
          }
        }
        for (int t = 0; t < T; ++t) {
          const __m512 ad = _mm512_set1_ps(a.d[(t0 + t) * n_blocks + b]);
          acc[p][t] =
              _mm512_fnmadd_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(dmin, ad), acc[p][t]);
        }
      }
    }
  }
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t)
      _mm512_mask_storeu_ps(y + (t0 + t) * ld_y + p * kPanel, rows[p], acc[p][t]);
}

// Every token of `a` from t on over P panels: tiles of T tokens, the rest in tiles of T/2, ..., 1.
template <int P, int T, int kSub, bool kScaled, bool kMin>
LOWBIT_VNNI void token_tiles(const PackedRows& w, const RecordLayout& l, const uint8_t* panel,
                             const QuantizedActs& a, size_t t, float* y, size_t ld_y,
                             const __mmask16* rows) {
  for (; t + T <= a.n_rows; t += T)
    tile<P, T, kSub, kScaled, kMin>(w, l, panel, a, t, y, ld_y, rows);
  if constexpr (T > 1) token_tiles<P, T / 2, kSub, kScaled, kMin>(w, l, panel, a, t, y, ld_y, rows);
}

// Panels [p0, p1): pairs of panels × 4 tokens (each group of four columns then feeds eight
// vpdpbusd from two code loads and four broadcasts), a last odd panel × 8 tokens.
template <int kSub, bool kScaled, bool kMin>
LOWBIT_VNNI void panels(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                        size_t ld_y) {
  const RecordLayout l = record_layout(w);
  auto mask = [&](size_t p) {
    const size_t n_rows = std::min(kPanel, w.rows - p * kPanel);
    return static_cast<__mmask16>((1u << n_rows) - 1);
  };
  size_t p = p0;
  for (; p + 2 <= p1; p += 2) {
    const __mmask16 rows[2] = {mask(p), mask(p + 1)};
    token_tiles<2, 4, kSub, kScaled, kMin>(w, l, w.bytes.data() + p * w.panel_bytes, a, 0,
                                           y + p * kPanel, ld_y, rows);
  }
  if (p < p1) {
    const __mmask16 rows[1] = {mask(p)};
    token_tiles<1, 8, kSub, kScaled, kMin>(w, l, w.bytes.data() + p * w.panel_bytes, a, 0,
                                           y + p * kPanel, ld_y, rows);
  }
}

}  // namespace

bool vnni_available() {
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return ok;
}

void packed_gemm_vnni(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                      size_t ld_y) {
  // (sub-block size, scaled, minimum) of every packed type: 32-value types have one unscaled
  // sub-block; Q4_K/Q5_K 8 of 32 with mins; Q2_K 16 of 16 with mins; Q3_K/Q6_K 16 of 16;
  // IQ4_XS, IQ3_S, IQ3_XXS, IQ2_XXS, IQ1_S, TQ1_0, TQ2_0 8 of 32; IQ2_S, IQ2_XS, IQ1_M 16 of 16.
  if (!w.scaled)
    return w.has_min ? panels<32, false, true>(w, p0, p1, a, y, ld_y)
                     : panels<32, false, false>(w, p0, p1, a, y, ld_y);
  if (w.sub == 32)
    return w.has_min ? panels<32, true, true>(w, p0, p1, a, y, ld_y)
                     : panels<32, true, false>(w, p0, p1, a, y, ld_y);
  w.has_min ? panels<16, true, true>(w, p0, p1, a, y, ld_y)
            : panels<16, true, false>(w, p0, p1, a, y, ld_y);
}

}  // namespace lowbit::kernels

#else  // not x86-64: no VNNI kernel

namespace lowbit::kernels {
bool vnni_available() {
  return false;
}
void packed_gemm_vnni(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                      size_t ld_y) {
  packed_gemm_reference(w, p0, p1, a, y, ld_y);
}
}  // namespace lowbit::kernels

#endif

// The ceiling of the int8 panel products on this CPU, one thread, in GMAC/s:
// - BM_VnniPeak: vpdpbusd alone on 8 independent zmm sums (64 multiply-adds each), the
//   arithmetic peak every packed kernel is measured against;
// - BM_VnniPeakWithBlockScale: the same, plus what a 32-value block without sub-block scales
//   (Q8_0, Q4_0) needs per panel and token however it is tiled: 8 vpdpbusd, then the +128
//   correction subtracted, the sum converted to f32, one multiply (weight scale × activation
//   scale) and one fma. The kernel also loads the codes and broadcasts activations, which
//   this leaves out;
// - BM_VnniPeakWithIntegerSteps: that block without the multiply and the fma (the converted
//   sum is added). Subtraction, conversion and addition take other ports than vpdpbusd, so
//   this one stays within ~2% of the peak: the two f32 multiplies cost the second one its 20%.
// The second over the first bounds such a block's product below the peak.
// Run: build/bench/lowbit_bench --benchmark_filter=VnniPeak
#include <benchmark/benchmark.h>

#if defined(__x86_64__)
#include <immintrin.h>

#include "kernels/packed_layout.h"  // LOWBIT_VNNI, vnni_available

// GCC 12 flags the _mm512_undefined_* inside the conversion and reduction intrinsics.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

namespace {

namespace kernels = lowbit::kernels;
constexpr int kSums = 8;
constexpr long kSteps = 1 << 20;

LOWBIT_VNNI long dpbusd_only() {
  __m512i s[kSums];
  for (int i = 0; i < kSums; ++i) s[i] = _mm512_set1_epi32(i);
  __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
  for (long k = 0; k < kSteps; ++k) {
#pragma GCC unroll 8
    for (int i = 0; i < kSums; ++i) s[i] = _mm512_dpbusd_epi32(s[i], a, b);
    __asm__ volatile("" : "+v"(a));  // keeps the loop from being folded
  }
  long out = 0;
  for (int i = 0; i < kSums; ++i) out += _mm512_reduce_add_epi32(s[i]);
  return out;
}

// Per step, each of the 8 sums takes 8 vpdpbusd (one block of 32 values for one panel and
// token) and closes its block as the panel kernel's epilogue does: the correction
// subtracted, cvt, then mul and fma (kScale) or an add.
template <bool kScale>
LOWBIT_VNNI long dpbusd_with_block_epilogue() {
  __m512i s[kSums];
  __m512 acc[kSums], ad[kSums];  // ad: each token's activation scale
  for (int i = 0; i < kSums; ++i)
    s[i] = _mm512_set1_epi32(i), acc[i] = _mm512_setzero_ps(), ad[i] = _mm512_set1_ps(1e-3f * i);
  __m512i a = _mm512_set1_epi32(0x01020304), b = _mm512_set1_epi32(0x05060708);
  __m512i corr = _mm512_set1_epi32(3);
  __m512 d = _mm512_set1_ps(1e-3f);  // the weight scales, new every block
  for (long k = 0; k < kSteps; ++k) {
#pragma GCC unroll 8
    for (int i = 0; i < kSums; ++i) {
      s[i] = _mm512_dpbusd_epi32(s[i], a, b);
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(s[i], corr));
      acc[i] =
          kScale ? _mm512_fmadd_ps(f, _mm512_mul_ps(d, ad[i]), acc[i]) : _mm512_add_ps(f, acc[i]);
      for (int j = 0; j < 7; ++j) s[i] = _mm512_dpbusd_epi32(s[i], a, b);
    }
    __asm__ volatile("" : "+v"(a), "+v"(d), "+v"(corr));
  }
  long out = 0;
  for (int i = 0; i < kSums; ++i)
    out += _mm512_reduce_add_epi32(s[i]) + static_cast<long>(_mm512_reduce_add_ps(acc[i]));
  return out;
}

template <long (*Fn)(), int kDpbusdPerStep>
void peak(benchmark::State& st) {
  if (!kernels::vnni_available()) return st.SkipWithError("no AVX-512 VNNI");
  for (auto _ : st) benchmark::DoNotOptimize(Fn());
  st.counters["GMAC/s"] = benchmark::Counter(
      1e-9 * 64.0 * kSums * kDpbusdPerStep * kSteps * st.iterations(), benchmark::Counter::kIsRate);
}

void BM_VnniPeak(benchmark::State& st) {
  peak<dpbusd_only, 1>(st);
}
void BM_VnniPeakWithBlockScale(benchmark::State& st) {
  peak<dpbusd_with_block_epilogue<true>, 8>(st);
}
void BM_VnniPeakWithIntegerSteps(benchmark::State& st) {
  peak<dpbusd_with_block_epilogue<false>, 8>(st);
}
BENCHMARK(BM_VnniPeak)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_VnniPeakWithBlockScale)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_VnniPeakWithIntegerSteps)->Unit(benchmark::kMillisecond);

}  // namespace
#endif

// Quantization throughput per type with 2 threads: MB of f32 weights quantized per second
// (bytes_per_second) on a 512 x 4096 Gaussian matrix, as `lowbit quantize` runs it
// (rows split between threads). bench/quantize_memory.sh measures peak RSS on a 1B model.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "core/parallel.h"
#include "lowbit/quant.h"

namespace {

void BM_Quantize(benchmark::State& st, lowbit::DType type) {
  constexpr uint64_t kRows = 512, kCols = 4096;
  std::vector<float> x(kRows * kCols);
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 0.02f);
  for (auto& v : x) v = d(rng);
  const auto& tr = lowbit::traits(type);
  const uint64_t row_bytes = kCols / tr.block_size * tr.type_size;
  std::vector<uint8_t> out(kRows * row_bytes);
  for (auto _ : st) {
    lowbit::parallel_for(kRows, 2, [&](uint64_t r0, uint64_t r1) {
      lowbit::quantize_rows(type, x.data() + r0 * kCols, r1 - r0, kCols, nullptr,
                            out.data() + r0 * row_bytes);
    });
    benchmark::DoNotOptimize(out.data());
  }
  st.SetBytesProcessed(st.iterations() * x.size() * sizeof(float));
}

}  // namespace

#define QUANT_BENCH(T) \
  BENCHMARK_CAPTURE(BM_Quantize, T, lowbit::DType::T)->Unit(benchmark::kMillisecond)->UseRealTime()
QUANT_BENCH(Q4_0);
QUANT_BENCH(Q4_1);
QUANT_BENCH(Q5_0);
QUANT_BENCH(Q5_1);
QUANT_BENCH(Q8_0);
QUANT_BENCH(Q2_K);
QUANT_BENCH(Q3_K);
QUANT_BENCH(Q4_K);
QUANT_BENCH(Q5_K);
QUANT_BENCH(Q6_K);
QUANT_BENCH(IQ4_NL);
QUANT_BENCH(IQ4_XS);
QUANT_BENCH(IQ3_S);
QUANT_BENCH(IQ3_XXS);
QUANT_BENCH(IQ2_S);
QUANT_BENCH(IQ2_XS);
QUANT_BENCH(IQ2_XXS);
QUANT_BENCH(IQ1_M);
QUANT_BENCH(IQ1_S);
QUANT_BENCH(TQ2_0);
QUANT_BENCH(TQ1_0);
QUANT_BENCH(F16);

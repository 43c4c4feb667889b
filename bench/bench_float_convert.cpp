// Conversion throughput of the scalar float codecs (values per second).
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "lowbit/tensor.h"

static void BM_F32ToBf16(benchmark::State& st) {
  std::vector<float> x(1 << 16);
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  for (auto& v : x) v = d(rng);
  for (auto _ : st)
    benchmark::DoNotOptimize(lowbit::from_f32(x.data(), x.size(), lowbit::DType::BF16));
  st.SetItemsProcessed(st.iterations() * x.size());
}
BENCHMARK(BM_F32ToBf16);

static void BM_F32ToF16(benchmark::State& st) {
  std::vector<float> x(1 << 16);
  std::mt19937 rng(1);
  std::normal_distribution<float> d;
  for (auto& v : x) v = d(rng);
  for (auto _ : st)
    benchmark::DoNotOptimize(lowbit::from_f32(x.data(), x.size(), lowbit::DType::F16));
  st.SetItemsProcessed(st.iterations() * x.size());
}
BENCHMARK(BM_F32ToF16);

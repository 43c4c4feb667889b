// Cost of AWQ's sub-block scale search (awq_refine_sub_scales, 4 passes, 2 threads) on the
// widths of a Llama-3.2-1B block: MB of f32 weights per second for rows of 2048 columns
// (q/k/v/o, gate/up) and of 8192 (down). A row costs cols² for g = He (one GEMM for all rows)
// plus, per pass, 24 candidates × len² per sub-block and cols × len per accepted move, so
// throughput falls with the width. H is a loud diagonal plus a rank-32 correlation.
#include <benchmark/benchmark.h>

#include <random>
#include <vector>

#include "lowbit/awq.h"
#include "lowbit/quant.h"

namespace {

void BM_AwqSubSearch(benchmark::State& st, lowbit::DType type) {
  const uint64_t cols = static_cast<uint64_t>(st.range(0)), rows = 256, rank = 32;
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(rows * cols), a(cols * rank);
  for (auto& v : w) v = 0.02f * d(rng);
  for (auto& v : a) v = d(rng);
  std::vector<double> h(cols * cols, 0.0);
  for (uint64_t i = 0; i < cols; ++i) {
    h[i * cols + i] = i % 37 == 0 ? 100.0 : 1.0;
    for (uint64_t j = 0; j < cols; ++j) {
      double acc = 0;
      for (uint64_t k = 0; k < rank; ++k)
        acc += static_cast<double>(a[i * rank + k]) * a[j * rank + k];
      h[i * cols + j] += acc / rank;
    }
  }
  const auto& tr = lowbit::traits(type);
  std::vector<uint8_t> rtn(rows * cols / tr.block_size * tr.type_size), q;
  lowbit::quantize_rows(type, w.data(), rows, cols, nullptr, 2, rtn.data());
  for (auto _ : st) {
    q = rtn;
    lowbit::awq_refine_sub_scales(type, w.data(), rows, cols, h, 4, 2, q.data());
    benchmark::DoNotOptimize(q.data());
  }
  st.SetBytesProcessed(st.iterations() * w.size() * sizeof(float));
}

}  // namespace

BENCHMARK_CAPTURE(BM_AwqSubSearch, Q4_K, lowbit::DType::Q4_K)
    ->Arg(2048)
    ->Arg(8192)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK_CAPTURE(BM_AwqSubSearch, Q6_K, lowbit::DType::Q6_K)
    ->Arg(2048)
    ->Arg(8192)
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

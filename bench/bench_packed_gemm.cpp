// One thread's batched product on the packed panels against the row kernels, for a
// 2048 x 2048 weight (Llama-3.2-1B's attention shapes) and 128 tokens: giga multiply-adds per
// second (GMAC/s), the figure to compare with the CPU's peak (64 int8 MACs per vpdpbusd).
// BM_MatVec is generation's product: one token through 8192 x 2048 weights repeated past
// 128 MiB, larger than the caches, in weight bytes read per second (the 2:4 types read fewer
// bytes).
// Run: build/bench/lowbit_bench --benchmark_filter='Packed|RowKernels|MatVec'
#include <benchmark/benchmark.h>

#include <algorithm>
#include <random>

#include "lowbit/kernels.h"
#include "lowbit/quant.h"

namespace {

using lowbit::DType;
namespace kernels = lowbit::kernels;

constexpr size_t kRows = 2048, kCols = 2048, kTokens = 128;

struct Case {
  std::vector<uint8_t> w;
  size_t row_bytes = 0;
  kernels::QuantizedActs acts;
  std::vector<kernels::ActRow> act_rows;
  std::vector<float> y;
};

Case make_case(DType t, size_t rows = kRows) {
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> x(rows * kCols);
  for (float& v : x) v = g(rng);
  Case c;
  c.row_bytes = kCols / lowbit::traits(t).block_size * lowbit::traits(t).type_size;
  c.w.resize(rows * c.row_bytes);
  lowbit::quantize_rows(t, x.data(), rows, kCols, nullptr, c.w.data());
  x.resize(kTokens * kCols);
  kernels::quantize_acts(x.data(), kTokens, kCols, kernels::act_block(t), c.acts);
  for (size_t i = 0; i < kTokens; ++i) c.act_rows.push_back(kernels::act_row(c.acts, i));
  c.y.resize(kTokens * rows);
  return c;
}

void report(benchmark::State& st) {
  st.counters["GMAC/s"] = benchmark::Counter(1e-9 * kRows * kCols * kTokens * st.iterations(),
                                             benchmark::Counter::kIsRate);
}

void BM_PackedPanels(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  if (!kernels::packed_gemm_is_fast()) return st.SkipWithError("no AVX-512 VNNI");
  Case c = make_case(t);
  const auto p = kernels::pack_rows(t, c.w.data(), c.row_bytes, kRows, kCols);
  for (auto _ : st) kernels::packed_gemm(p, 0, p.n_panels(), c.acts, c.y.data(), kRows);
  st.SetLabel(lowbit::dtype_name(t));
  report(st);
}

void BM_RowKernels(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  Case c = make_case(t);
  for (auto _ : st)
    for (size_t r = 0; r < kRows; r += 16)
      kernels::dot_rows_multi(t, c.w.data() + r * c.row_bytes, c.row_bytes, 16, kCols,
                              c.act_rows.data(), kTokens, c.y.data() + r, kRows);
  st.SetLabel(lowbit::dtype_name(t));
  report(st);
}

void BM_MatVec(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  constexpr size_t kBigRows = 4 * kRows;
  Case c = make_case(t, kBigRows);
  // Copies of the weight past 128 MiB, four times the L3 of the machines we measure on, so
  // the rows come from memory as in generation.
  const size_t copies = ((size_t{128} << 20) + c.w.size() - 1) / c.w.size();
  std::vector<uint8_t> big(copies * c.w.size());
  for (size_t i = 0; i < copies; ++i)
    std::copy(c.w.begin(), c.w.end(), big.begin() + i * c.w.size());
  const size_t rows = copies * kBigRows;
  c.y.resize(rows);
  for (auto _ : st)
    kernels::dot_rows(t, big.data(), c.row_bytes, rows, kCols, c.act_rows[0], c.y.data());
  st.SetLabel(lowbit::dtype_name(t));
  st.counters["GB/s"] =
      benchmark::Counter(1e-9 * big.size() * st.iterations(), benchmark::Counter::kIsRate);
  st.counters["GMAC/s"] =
      benchmark::Counter(1e-9 * rows * kCols * st.iterations(), benchmark::Counter::kIsRate);
}

// The same product on 256 rows, which stay in L2: the kernel's arithmetic alone.
void BM_MatVecInCache(benchmark::State& st) {
  const auto t = static_cast<DType>(st.range(0));
  constexpr size_t kFewRows = 256;
  Case c = make_case(t, kFewRows);
  for (auto _ : st)
    kernels::dot_rows(t, c.w.data(), c.row_bytes, kFewRows, kCols, c.act_rows[0], c.y.data());
  st.SetLabel(lowbit::dtype_name(t));
  st.counters["GMAC/s"] =
      benchmark::Counter(1e-9 * kFewRows * kCols * st.iterations(), benchmark::Counter::kIsRate);
}

void types(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::Q8_0, DType::Q8_0_S24, DType::Q4_0, DType::Q4_0_S24, DType::Q4_K,
                  DType::Q6_K, DType::Q3_K, DType::IQ4_XS, DType::Q5_K, DType::Q2_K})
    b->Arg(static_cast<int>(t));
}
BENCHMARK(BM_PackedPanels)->Apply(types)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_RowKernels)->Apply(types)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_MatVec)->Apply(types)->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK(BM_MatVecInCache)->Apply(types)->Unit(benchmark::kMicrosecond);

// The 8-bit quantization of a batch's input (128 tokens × 2048) in blocks of 32 or 256, the
// step before every packed product: millions of values per second.
void BM_QuantizeActs(benchmark::State& st) {
  const auto block = static_cast<uint32_t>(st.range(0));
  std::mt19937 rng(7);
  std::normal_distribution<float> g;
  std::vector<float> x(kTokens * kCols);
  for (float& v : x) v = g(rng);
  kernels::QuantizedActs a;
  for (auto _ : st) {
    kernels::quantize_acts(x.data(), kTokens, kCols, block, a);
    benchmark::DoNotOptimize(a.u8.data());
    benchmark::ClobberMemory();
  }
  st.counters["Mvalues/s"] =
      benchmark::Counter(1e-6 * x.size() * st.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_QuantizeActs)->Arg(32)->Arg(256)->Unit(benchmark::kMicrosecond);

// The codebook and ternary types: generation's product only.
void low_bit_types(benchmark::internal::Benchmark* b) {
  for (DType t : {DType::IQ3_S, DType::IQ3_XXS, DType::IQ2_S, DType::IQ2_XS, DType::IQ2_XXS,
                  DType::IQ1_M, DType::IQ1_S, DType::TQ1_0, DType::TQ2_0})
    b->Arg(static_cast<int>(t));
}
BENCHMARK(BM_MatVec)->Apply(low_bit_types)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

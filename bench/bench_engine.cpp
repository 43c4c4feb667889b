// fp32 reference engine throughput on tinyllm-8m: one 512-token window (what perplexity
// evaluates), and the same window's linear layers alone, to show the share of time in GEMM.
// Run: build/bench/lowbit_bench --benchmark_filter=Engine   (LOWBIT_SHARED overrides ../shared)
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <filesystem>

#include "lowbit/engine.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"

namespace {

const lowbit::Model* tinyllm(benchmark::State& st) {
  static std::unique_ptr<lowbit::Model> m;
  if (!m) {
    const char* env = std::getenv("LOWBIT_SHARED");
    std::string dir = std::string(env && *env ? env : LOWBIT_SHARED_DEFAULT) + "/models/tinyllm-8m";
    if (!std::filesystem::exists(dir)) {
      st.SkipWithError(("missing " + dir).c_str());
      return nullptr;
    }
    m = std::make_unique<lowbit::Model>(lowbit::load_model(dir));
  }
  return m.get();
}

std::vector<int32_t> window(const lowbit::Model& m, size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 7919) % m.config.n_vocab);
  return t;
}

void BM_EngineWindow512(benchmark::State& st) {
  const lowbit::Model* m = tinyllm(st);
  if (!m) return;
  lowbit::Engine e(*m, {static_cast<int>(st.range(0)), 512});
  auto toks = window(*m, 512);
  std::vector<float> logits;
  for (auto _ : st) {
    e.reset();
    e.eval(toks.data(), toks.size(), logits, true);
  }
  st.counters["tokens/s"] =
      benchmark::Counter(512.0 * st.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EngineWindow512)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

// The linear layers of the same window: every weight matrix times a [512, in] input.
void BM_EngineLinearsOnly512(benchmark::State& st) {
  const lowbit::Model* m = tinyllm(st);
  if (!m) return;
  lowbit::Engine e(*m, {static_cast<int>(st.range(0)), 512});  // sets the BLAS thread count
  std::vector<float> x(512 * 1024, 0.01f), y(512 * m->config.n_vocab);
  for (auto _ : st)
    for (const auto& t : m->tensors)
      if (t.shape.size() == 2 && t.name != "token_embd.weight")
        lowbit::linear_forward(t, x.data(), 512, y.data());
  st.counters["tokens/s"] =
      benchmark::Counter(512.0 * st.iterations(), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_EngineLinearsOnly512)->Arg(1)->Arg(2)->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

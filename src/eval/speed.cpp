#include "lowbit/speed.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>

#include "core/thread_pool.h"
#include "lowbit/error.h"

namespace lowbit {
namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Sums 64-bit words with eight independent accumulators: plain loads the compiler turns
// into wide vector loads, with no dependency chain longer than the memory system's.
uint64_t sum_words(const uint64_t* p, size_t n) {
  uint64_t a[8] = {};
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int k = 0; k < 8; ++k) a[k] += p[i + k];
  for (; i < n; ++i) a[0] += p[i];
  uint64_t s = 0;
  for (uint64_t v : a) s += v;
  return s;
}

}  // namespace

BandwidthProbe measure_read_bandwidth(size_t bytes, int n_threads, int passes) {
  BandwidthProbe r{bytes, std::max(1, n_threads), std::max(1, passes), 0};
  const size_t words = bytes / sizeof(uint64_t);
  std::unique_ptr<uint64_t[]> buf(new uint64_t[words]);
  ThreadPool pool(r.n_threads);
  const size_t parts = static_cast<size_t>(r.n_threads);
  auto fill = [&](size_t p) {
    for (size_t i = words * p / parts; i < words * (p + 1) / parts; ++i) buf[i] = i;
  };
  pool.run(parts, fill);  // each thread touches the pages it will read
  std::vector<uint64_t> sums(parts);
  auto read = [&](size_t p) {
    const size_t b = words * p / parts, e = words * (p + 1) / parts;
    sums[p] = sum_words(buf.get() + b, e - b);
  };
  for (int i = 0; i < r.passes; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.run(parts, read);
    const double s = seconds_since(t0);
    r.best_gbs = std::max(r.best_gbs, static_cast<double>(words * sizeof(uint64_t)) / s / 1e9);
  }
  uint64_t total = 0;
  for (uint64_t s : sums) total += s;
  if (total != (words - 1) * words / 2)
    throw std::runtime_error("bandwidth probe: the buffer read back wrong");  // the reads happened
  return r;
}

void mean_sd(const std::vector<double>& x, double* mean, double* sd) {
  double m = 0, v = 0;
  for (double e : x) m += e;
  m /= std::max<size_t>(1, x.size());
  for (double e : x) v += (e - m) * (e - m);
  *mean = m;
  *sd = x.size() > 1 ? std::sqrt(v / (x.size() - 1)) : 0;
}

SpeedResult measure_speed(const Model& m, const SpeedOptions& o) {
  EngineOptions eo = o.engine;
  eo.n_ctx = static_cast<uint32_t>(std::max<size_t>(o.n_prompt, o.n_gen) + 1);
  Engine engine(m, eo);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> pick(0, static_cast<int32_t>(m.config.n_vocab) - 1);
  std::vector<int32_t> tokens(std::max(o.n_prompt, o.n_gen));
  for (auto& t : tokens) t = pick(rng);
  std::vector<float> logits;
  SpeedResult r;
  for (int run = 0; run <= o.repetitions; ++run) {  // run 0 warms up
    if (o.n_prompt) {
      engine.reset();
      const auto t0 = std::chrono::steady_clock::now();
      engine.eval(tokens.data(), o.n_prompt, logits, false);
      if (run) r.pp_runs.push_back(o.n_prompt / seconds_since(t0));
    }
    if (o.n_gen) {
      engine.reset();
      const auto t0 = std::chrono::steady_clock::now();
      for (size_t i = 0; i < o.n_gen; ++i) engine.eval(&tokens[i], 1, logits, false);
      if (run) r.tg_runs.push_back(o.n_gen / seconds_since(t0));
    }
  }
  mean_sd(r.pp_runs, &r.pp_tps, &r.pp_sd);
  mean_sd(r.tg_runs, &r.tg_tps, &r.tg_sd);
  return r;
}

}  // namespace lowbit

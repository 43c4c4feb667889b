// Speed measurements: prompt processing and generation tokens/s (as llama-bench reports them)
// and the machine's memory read bandwidth, so generation can be set against its physical
// bound (bandwidth / weight bytes read per token).
#pragma once

#include <cstddef>
#include <vector>

#include "lowbit/engine.h"

namespace lowbit {

struct BandwidthProbe {
  size_t bytes = 0;   // buffer size read per pass
  int n_threads = 0;
  int passes = 0;
  double best_gbs = 0;  // GB/s (1e9 bytes) of the fastest pass
};

// Reads a buffer of `bytes` (touched first, so it is resident) with n_threads threads, each a
// contiguous slice summed with wide loads; reports the best of `passes` passes.
BandwidthProbe measure_read_bandwidth(size_t bytes, int n_threads, int passes);

struct SpeedOptions {
  size_t n_prompt = 512;  // pp: one batch of this many tokens (0: skip)
  size_t n_gen = 128;     // tg: this many single-token evaluations from an empty cache (0: skip)
  int repetitions = 5;    // timed runs of each, after one untimed warm-up
  EngineOptions engine;
};

struct SpeedResult {
  std::vector<double> pp_runs, tg_runs;  // tokens/s of each run
  double pp_tps = 0, pp_sd = 0, tg_tps = 0, tg_sd = 0;
};

// Random token ids (fixed seed); the cache is cleared before every run.
SpeedResult measure_speed(const Model& m, const SpeedOptions& o);

// Mean and sample standard deviation.
void mean_sd(const std::vector<double>& x, double* mean, double* sd);

}  // namespace lowbit

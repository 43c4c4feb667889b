// The CLI's subcommands. Each registers its flags on the app and returns the action
// run when the subcommand is chosen. Parsing and printing only; logic is in the library.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>

#include "lowbit/engine.h"

namespace lowbit::cli {

using Action = std::function<int()>;

// "[#####.........]" for `done` of `total` steps, as the progress lines on stderr show it.
inline std::string progress_bar(size_t done, size_t total, size_t width = 30) {
  const size_t filled = total ? width * done / total : width;
  return "[" + std::string(filled, '#') + std::string(width - filled, '.') + "]";
}

// -t/--threads: 0 (every core) or a count; counts above lowbit::max_threads() are lowered
// to it, with a note on stderr.
void add_threads_option(CLI::App* c, int& threads);

// What the engine rounds besides the weights (lowbit::ActivationRounding): --cache-type-k/-v,
// --rotate-kv, --act-bits, --act-clip, --act-ranges. `run`, `perplexity` and `bench` simulate it;
// `quantize --method qat` trains for it.
struct RoundingFlags {
  std::string cache_k = "f32", cache_v = "f32";
  bool rotate_kv = false;
  int act_bits = 0;
  float act_clip = ActivationRounding{}.act_clip;
  std::string act_ranges = "dynamic";
};
void add_rounding_flags(CLI::App* c, RoundingFlags& f);
ActivationRounding activation_rounding(const RoundingFlags& f);

// Engine flags shared by `run`, `perplexity` and `bench`: threads, kernels (fast or
// reference), KV cache types and in-flight quantization.
struct EngineFlags {
  int threads = 0;  // 0: every core
  std::string kernels;  // "fast" or "reference"
  uint32_t blas_batch = EngineOptions{}.blas_batch;
  uint32_t packed_batch = EngineOptions{}.packed_batch;
  RoundingFlags rounding;
  std::string quantize;  // preset or type name; empty: the model's own types
};
void add_engine_flags(CLI::App* c, EngineFlags& f, const std::string& default_kernels);
EngineOptions engine_options(const EngineFlags& f, uint32_t n_ctx);
// The model as the engine should run it: quantized in memory when --quantize was given
// (progress on stderr).
Model prepare_model(Model m, const EngineFlags& f);

Action add_convert(CLI::App& app);
Action add_inspect(CLI::App& app);
Action add_tokenize(CLI::App& app);
Action add_run(CLI::App& app);
Action add_perplexity(CLI::App& app);
Action add_quantize(CLI::App& app);
Action add_prune(CLI::App& app);
Action add_calibrate(CLI::App& app);
Action add_sweep(CLI::App& app);
Action add_bench(CLI::App& app);

}  // namespace lowbit::cli

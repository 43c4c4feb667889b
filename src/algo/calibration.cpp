// Collects the input statistics of every linear layer through the engine's input hook.
#include <algorithm>
#include <filesystem>
#include <random>

#include "algo/stats_reducer.h"
#include "core/blas.h"
#include "lowbit/calibration.h"
#include "lowbit/distributed.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/tokenizer.h"

namespace lowbit {

std::vector<float> InputStats::importance() const {
  std::vector<float> out(sum_sq.size());
  for (size_t j = 0; j < out.size(); ++j)
    out[j] = count ? static_cast<float>(sum_sq[j] / count) : 0.0f;
  return out;
}

std::vector<double> InputStats::hessian() const {
  std::vector<double> h(xtx.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = count ? xtx[i] / count : 0.0;
  return h;
}

std::vector<std::vector<int32_t>> sample_windows(const std::vector<int32_t>& tokens, size_t n,
                                                 size_t len, uint64_t seed, int32_t bos) {
  if (len < 2) fail(ErrorKind::Argument, "calibration windows need at least 2 tokens, got {}", len);
  if (tokens.size() < len)
    fail(ErrorKind::Argument, "calibration text has {} tokens, fewer than one window of {}",
         tokens.size(), len);
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> start(0, tokens.size() - len);
  std::vector<std::vector<int32_t>> out;
  for (size_t i = 0; i < n; ++i) {
    const size_t s = start(rng);
    std::vector<int32_t> w(tokens.begin() + s, tokens.begin() + s + len);
    if (bos >= 0) w[0] = bos;
    out.push_back(std::move(w));
  }
  return out;
}

CalibrationStats collect_calibration_stats(const Model& m, const std::vector<int32_t>& tokens,
                                           const CalibrationOptions& o) {
  if (o.n_samples == 0 || o.n_ctx < 2)
    fail(ErrorKind::Argument, "calibration needs at least one window of two tokens, not {} x {}",
         o.n_samples, o.n_ctx);
  const auto windows = sample_windows(tokens, o.n_samples, o.n_ctx, o.seed, m.vocab.bos);
  // Ranks take windows in turns (algo/stats_reducer.h), each with its own engine.
  dist::Group& group = dist::world();
  const size_t n_ranks = static_cast<size_t>(group.size()), rank = group.rank();
  if (n_ranks > windows.size())
    fail(ErrorKind::Argument, "{} ranks for {} calibration windows: use at most {} ranks",
         n_ranks, windows.size(), windows.size());
  Engine engine(m, {o.n_threads, static_cast<uint32_t>(o.n_ctx)});
  blas::make_single_threaded();  // ssyrk's sums must not depend on OpenBLAS's threads
  StatsReducer reducer(group, o.hessian, o.n_threads);
  engine.set_linear_input_hook([&](const std::string& name, const float* x, size_t rows,
                                   size_t cols) { reducer.add(name, x, rows, cols); });
  std::vector<float> logits;
  const size_t n_rounds = (windows.size() + n_ranks - 1) / n_ranks;
  for (size_t round = 0; round < n_rounds; ++round) {
    std::vector<bool> present(n_ranks);
    for (size_t k = 0; k < n_ranks; ++k) present[k] = round * n_ranks + k < windows.size();
    // In the last round a rank without a window runs the last one as a stand-in.
    const size_t i = std::min(round * n_ranks + rank, windows.size() - 1);
    reducer.begin_round(std::move(present));
    engine.reset();
    engine.eval(windows[i].data(), windows[i].size(), logits, false);
    if (o.on_window && rank == 0)
      o.on_window(std::min(windows.size(), (round + 1) * n_ranks), windows.size());
  }
  CalibrationStats stats = reducer.finish(o.on_every_rank);
  stats.n_windows = windows.size();
  stats.window_len = o.n_ctx;
  return stats;
}

CalibrationStats collect_calibration_stats(const Model& m, const std::string& text_path,
                                           const CalibrationOptions& o) {
  const auto tokens =
      Tokenizer::create(m.vocab, m.source)->encode(read_text_file(text_path), false);
  CalibrationStats s = collect_calibration_stats(m, tokens, o);
  s.dataset = std::filesystem::path(text_path).filename().string();
  return s;
}

}  // namespace lowbit

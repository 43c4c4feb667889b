// Collects the input statistics of every linear layer through the engine's input hook.
#include <algorithm>
#include <cmath>
#include <cblas.h>

#include <filesystem>
#include <random>

#include "core/blas.h"
#include "lowbit/calibration.h"
#include "lowbit/distributed.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/tokenizer.h"
#include "lowbit/topology.h"

namespace lowbit {

std::vector<float> InputStats::importance() const {
  std::vector<float> out(sum_sq.size());
  for (size_t j = 0; j < out.size(); ++j) out[j] = count ? static_cast<float>(sum_sq[j] / count) : 0.0f;
  return out;
}

std::vector<double> InputStats::hessian() const {
  std::vector<double> h(xtx.size());
  for (size_t i = 0; i < h.size(); ++i) h[i] = count ? xtx[i] / count : 0.0;
  return h;
}

std::vector<std::vector<int32_t>> sample_windows(const std::vector<int32_t>& tokens, size_t n, size_t len, uint64_t seed,
                                                 int32_t bos) {
  if (len < 2) fail(ErrorKind::Argument, "calibration windows need at least 2 tokens, got {}", len);
  if (tokens.size() < len)
    fail(ErrorKind::Argument, "calibration text has {} tokens, fewer than one window of {}", tokens.size(), len);
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

namespace {

// What one window adds to the statistics of the weights that read one input (q/k/v, or
// gate/up, share it): its rows, their Σx² per column summed from zero, max |x|, and with
// Hessians their x xᵀ in float ([cols, cols], upper triangle). The totals add these in
// window order, whichever rank measured a window, so that they are the same sums for any
// number of ranks.
struct WindowShare {
  uint64_t rows = 0;
  std::vector<double> sum_sq;
  std::vector<float> absmax, xtx;
};

void measure_share(const float* x, size_t rows, size_t cols, bool hessian, WindowShare& c) {
  c.rows = rows;
  c.sum_sq.assign(cols, 0.0);
  c.absmax.assign(cols, 0.0f);
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < cols; ++j) {
      const float v = x[r * cols + j];
      c.sum_sq[j] += static_cast<double>(v) * v;
      c.absmax[j] = std::max(c.absmax[j], std::fabs(v));
    }
  if (!hessian) return;
  c.xtx.assign(cols * cols, 0.0f);
  cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols),
              static_cast<int>(rows), 1.0f, x, static_cast<int>(cols), 0.0f, c.xtx.data(),
              static_cast<int>(cols));
}

void fold(const WindowShare& c, InputStats& s) {
  const size_t cols = c.sum_sq.size();
  if (!c.xtx.empty())
    for (size_t i = 0; i < cols; ++i)
      for (size_t j = i; j < cols; ++j) {
        s.xtx[i * cols + j] += c.xtx[i * cols + j];
        if (j != i) s.xtx[j * cols + i] += c.xtx[i * cols + j];
      }
  for (size_t j = 0; j < cols; ++j) {
    s.sum_sq[j] += c.sum_sq[j];
    s.absmax[j] = std::max(s.absmax[j], c.absmax[j]);
  }
  s.count += c.rows;
}

constexpr int kShareTag = 11;

void send_share(dist::Group& g, const WindowShare& c) {
  g.send(0, kShareTag, &c.rows, sizeof c.rows);
  g.send(0, kShareTag, c.sum_sq.data(), c.sum_sq.size() * sizeof(double));
  g.send(0, kShareTag, c.absmax.data(), c.absmax.size() * sizeof(float));
  if (!c.xtx.empty()) g.send(0, kShareTag, c.xtx.data(), c.xtx.size() * sizeof(float));
}

void recv_share(dist::Group& g, int from, size_t cols, bool hessian, WindowShare& c) {
  g.recv(from, kShareTag, &c.rows, sizeof c.rows);
  c.sum_sq.resize(cols);
  c.absmax.resize(cols);
  g.recv(from, kShareTag, c.sum_sq.data(), cols * sizeof(double));
  g.recv(from, kShareTag, c.absmax.data(), cols * sizeof(float));
  c.xtx.resize(hessian ? cols * cols : 0);
  if (hessian) g.recv(from, kShareTag, c.xtx.data(), c.xtx.size() * sizeof(float));
}

// Rank 0's totals to every rank, weight by weight in name order.
void broadcast_totals(dist::Group& g, CalibrationStats& stats) {
  for (auto& [name, s] : stats.by_weight) {
    g.broadcast(0, &s.count, sizeof s.count);
    g.broadcast(0, s.sum_sq.data(), s.sum_sq.size() * sizeof(double));
    g.broadcast(0, s.absmax.data(), s.absmax.size() * sizeof(float));
    if (!s.xtx.empty()) g.broadcast(0, s.xtx.data(), s.xtx.size() * sizeof(double));
  }
}

}  // namespace

CalibrationStats collect_calibration_stats(const Model& m, const std::vector<int32_t>& tokens, const CalibrationOptions& o) {
  if (o.n_samples == 0 || o.n_ctx < 2)
    fail(ErrorKind::Argument, "calibration needs at least one window of two tokens, not {} x {}",
         o.n_samples, o.n_ctx);
  const auto windows = sample_windows(tokens, o.n_samples, o.n_ctx, o.seed, m.vocab.bos);
  // Ranks take windows in turns: in round t, rank k measures window t·N + k. Rank 0 adds
  // every window's share to the totals in window order.
  dist::Group& group = dist::world();
  const size_t n_ranks = static_cast<size_t>(group.size()), rank = group.rank();
  if (n_ranks > windows.size())
    fail(ErrorKind::Argument, "{} ranks for {} calibration windows: use at most {} ranks",
         n_ranks, windows.size(), windows.size());
  const bool totals_here = rank == 0 || o.on_every_rank;
  CalibrationStats stats;
  stats.n_windows = windows.size();
  stats.window_len = o.n_ctx;
  Engine engine(m, {o.n_threads, static_cast<uint32_t>(o.n_ctx)});
  blas::make_single_threaded();  // ssyrk's sums must not depend on OpenBLAS's threads
  size_t round = 0;
  std::string last_group;
  WindowShare own;
  std::vector<WindowShare> others(n_ranks);
  engine.set_linear_input_hook([&](const std::string& name, const float* x, size_t rows, size_t cols) {
    InputStats& s = stats.by_weight[name];
    if (s.sum_sq.empty()) {
      s.sum_sq.assign(cols, 0.0);
      s.absmax.assign(cols, 0.0f);
      if (o.hessian && totals_here) s.xtx.assign(cols * cols, 0.0);
    }
    if (const std::string key = input_group_key(name); key != last_group) {
      measure_share(x, rows, cols, o.hessian, own);
      last_group = key;
      if (rank != 0) return send_share(group, own);
      for (size_t k = 1; k < n_ranks && round * n_ranks + k < windows.size(); ++k)
        recv_share(group, static_cast<int>(k), cols, o.hessian, others[k]);
    }
    if (rank != 0) return;
    fold(own, s);
    for (size_t k = 1; k < n_ranks && round * n_ranks + k < windows.size(); ++k)
      fold(others[k], s);
  });
  std::vector<float> logits;
  for (size_t i = rank; i < windows.size(); i += n_ranks, ++round) {
    engine.reset();
    last_group.clear();
    engine.eval(windows[i].data(), windows[i].size(), logits, false);
    if (o.on_window && rank == 0) o.on_window(std::min(windows.size(), i + n_ranks), windows.size());
  }
  if (o.on_every_rank && n_ranks > 1) broadcast_totals(group, stats);
  return stats;
}

CalibrationStats collect_calibration_stats(const Model& m, const std::string& text_path, const CalibrationOptions& o) {
  const auto tokens = Tokenizer::create(m.vocab, m.source)->encode(read_text_file(text_path), false);
  CalibrationStats s = collect_calibration_stats(m, tokens, o);
  s.dataset = std::filesystem::path(text_path).filename().string();
  return s;
}

}  // namespace lowbit

// Collects the input statistics of every linear layer through the engine's input hook.
#include <algorithm>
#include <cmath>
#include <cblas.h>

#include <filesystem>
#include <random>

#include "lowbit/calibration.h"
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

CalibrationStats collect_calibration_stats(const Model& m, const std::vector<int32_t>& tokens, const CalibrationOptions& o) {
  if (o.n_samples == 0 || o.n_ctx < 2)
    fail(ErrorKind::Argument, "calibration needs at least one window of two tokens, not {} x {}",
         o.n_samples, o.n_ctx);
  const auto windows = sample_windows(tokens, o.n_samples, o.n_ctx, o.seed, m.vocab.bos);
  CalibrationStats stats;
  stats.n_windows = windows.size();
  stats.window_len = o.n_ctx;
  Engine engine(m, {o.n_threads, static_cast<uint32_t>(o.n_ctx)});
  // q/k/v (and gate/up) read the same input (lowbit/topology.h): its x^T x is computed once.
  std::string last_group;
  std::vector<float> xtx(0);
  engine.set_linear_input_hook([&](const std::string& name, const float* x, size_t rows, size_t cols) {
    InputStats& s = stats.by_weight[name];
    if (s.sum_sq.empty()) {
      s.sum_sq.assign(cols, 0.0);
      s.absmax.assign(cols, 0.0f);
      if (o.hessian) s.xtx.assign(cols * cols, 0.0);
    }
    if (o.hessian) {
      if (const std::string group = input_group_key(name); group != last_group) {
        xtx.assign(cols * cols, 0.0f);
        cblas_ssyrk(CblasRowMajor, CblasUpper, CblasTrans, static_cast<int>(cols), static_cast<int>(rows), 1.0f, x,
                    static_cast<int>(cols), 0.0f, xtx.data(), static_cast<int>(cols));
        last_group = group;
      }
      for (size_t i = 0; i < cols; ++i)
        for (size_t j = i; j < cols; ++j) {
          s.xtx[i * cols + j] += xtx[i * cols + j];
          if (j != i) s.xtx[j * cols + i] += xtx[i * cols + j];
        }
    }
    for (size_t r = 0; r < rows; ++r)
      for (size_t j = 0; j < cols; ++j) {
        const float v = x[r * cols + j];
        s.sum_sq[j] += static_cast<double>(v) * v;
        s.absmax[j] = std::max(s.absmax[j], std::fabs(v));
      }
    s.count += rows;
  });
  std::vector<float> logits;
  for (size_t i = 0; i < windows.size(); ++i) {
    engine.reset();
    engine.eval(windows[i].data(), windows[i].size(), logits, false);
    if (o.on_window) o.on_window(i + 1, windows.size());
  }
  return stats;
}

CalibrationStats collect_calibration_stats(const Model& m, const std::string& text_path, const CalibrationOptions& o) {
  const auto tokens = Tokenizer::create(m.vocab, m.source)->encode(read_text_file(text_path), false);
  CalibrationStats s = collect_calibration_stats(m, tokens, o);
  s.dataset = std::filesystem::path(text_path).filename().string();
  return s;
}

}  // namespace lowbit

#include "lowbit/awq.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"

namespace lowbit {
namespace {

// tr(ΔHΔᵀ) over `rows` rows of Δ [rows, cols].
double output_error(const std::vector<float>& d, uint64_t rows, uint64_t cols,
                    const std::vector<float>& h) {
  std::vector<float> dh(rows * cols);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
              static_cast<int>(cols), static_cast<int>(cols), 1.0f, d.data(),
              static_cast<int>(cols), h.data(), static_cast<int>(cols), 0.0f, dh.data(),
              static_cast<int>(cols));
  double e = 0;
  for (size_t i = 0; i < d.size(); ++i) e += static_cast<double>(d[i]) * dh[i];
  return e;
}

// Σ over weights of tr(ΔHΔᵀ) for scales s, on the sampled rows.
double scaled_error(const std::vector<std::vector<float>>& samples,
                    const std::vector<AwqWeight>& weights, const std::vector<float>& s,
                    const std::vector<float>& h) {
  double total = 0;
  for (size_t k = 0; k < weights.size(); ++k) {
    const uint64_t cols = weights[k].cols, rows = samples[k].size() / cols;
    std::vector<float> ws = samples[k];
    awq_scale_columns(ws, rows, cols, s);
    const auto& tr = traits(weights[k].type);
    std::vector<uint8_t> q(rows * cols / tr.block_size * tr.type_size);
    quant::quantize_rows(weights[k].type, ws.data(), rows, cols, nullptr, false, q.data());
    std::vector<float> dq(rows * cols);
    dequantize_values(weights[k].type, q.data(), dq.size(), dq.data());
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t j = 0; j < cols; ++j)
        dq[r * cols + j] = samples[k][r * cols + j] - dq[r * cols + j] / s[j];
    total += output_error(dq, rows, cols, h);
  }
  return total;
}

}  // namespace

AwqScales awq_search(const std::vector<AwqWeight>& weights, const std::vector<double>& H,
                     const std::vector<double>& mean_abs, int grid, uint64_t max_rows) {
  if (weights.empty()) fail(ErrorKind::Argument, "AWQ: no weights to scale");
  const uint64_t cols = weights[0].cols;
  for (const AwqWeight& w : weights)
    if (w.cols != cols || w.w->size() != w.rows * w.cols)
      fail(ErrorKind::Argument, "AWQ: weights sharing an input must have {} columns", cols);
  if (H.size() != cols * cols || mean_abs.size() != cols)
    fail(ErrorKind::Argument, "AWQ: statistics of {} columns expected (H {}, mean|x| {})", cols,
         H.size(), mean_abs.size());
  std::vector<std::vector<float>> samples;  // evenly spread rows of each weight
  for (const AwqWeight& w : weights) {
    const uint64_t n = std::min(w.rows, max_rows);
    std::vector<float> rows(n * cols);
    for (uint64_t i = 0; i < n; ++i) {
      const uint64_t r = i * w.rows / n;
      std::copy_n(w.w->begin() + r * cols, cols, rows.begin() + i * cols);
    }
    samples.push_back(std::move(rows));
  }
  const std::vector<float> h(H.begin(), H.end());
  AwqScales best;
  best.s.assign(cols, 1.0f);
  best.error_plain = best.error_scaled = scaled_error(samples, weights, best.s, h);
  for (int g = 1; g <= grid; ++g) {
    const double alpha = static_cast<double>(g) / grid;
    std::vector<float> s = awq_scales_for(mean_abs, alpha);
    const double e = scaled_error(samples, weights, s, h);
    if (e < best.error_scaled) {
      best.error_scaled = e;
      best.alpha = alpha;
      best.s = std::move(s);
    }
  }
  return best;
}

std::vector<float> awq_scales_for(const std::vector<double>& mean_abs, double alpha) {
  std::vector<float> s(mean_abs.size());
  double lo = INFINITY, hi = 0;
  for (size_t j = 0; j < s.size(); ++j) {
    s[j] = static_cast<float>(std::pow(std::max(mean_abs[j], 1e-8), alpha));
    lo = std::min<double>(lo, s[j]);
    hi = std::max<double>(hi, s[j]);
  }
  const float norm = static_cast<float>(1.0 / std::sqrt(lo * hi));
  for (float& v : s) v *= norm;
  return s;
}

void awq_scale_columns(std::vector<float>& w, uint64_t rows, uint64_t cols,
                       const std::vector<float>& s) {
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t j = 0; j < cols; ++j) w[r * cols + j] *= s[j];
}

void awq_unscale_norm(std::vector<float>& gamma, const std::vector<float>& s) {
  for (size_t j = 0; j < gamma.size(); ++j) gamma[j] /= s[j];
}

void awq_unscale_rows(std::vector<float>& w, uint64_t rows, uint64_t cols,
                      const std::vector<float>& s) {
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t j = 0; j < cols; ++j) w[r * cols + j] /= s[r];
}

void awq_unscale_hessian(std::vector<double>& h, const std::vector<float>& s) {
  const size_t n = s.size();
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) h[i * n + j] /= static_cast<double>(s[i]) * s[j];
}

}  // namespace lowbit

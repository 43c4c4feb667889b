#include "quant/tensor_errors.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <mutex>

#include "core/parallel.h"
#include "lowbit/quant.h"
#include "lowbit/sparsity.h"
#include "quant/error_sums.h"

namespace lowbit {

namespace {

struct Sums {
  ErrorSums weight;
  double out_err = 0, out_ref = 0;  // tr(ΔHΔᵀ), tr(WHWᵀ)
};

// The output error takes one SGEMM per chunk of rows: (W-Q)·H, then a row-wise dot.
Sums error_sums(DType type, const std::vector<float>& x, uint64_t row_len,
                const std::vector<uint8_t>& out, const std::vector<float>* hessian, int n_threads) {
  const uint64_t n_rows = x.size() / row_len, row_bytes = out.size() / n_rows;
  const bool with_h = hessian && hessian->size() == row_len * row_len;
  static const std::vector<float> kNone;
  const std::vector<float>& h = with_h ? *hessian : kNone;
  ErrorSums weight;
  double out_err = 0, out_ref = 0;
  std::mutex mu;
  parallel_for(n_rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    constexpr uint64_t kChunk = 64;
    std::vector<float> y(kChunk * row_len), d(kChunk * row_len), dh(with_h ? kChunk * row_len : 0);
    ErrorSums part;
    double e = 0, ref = 0;
    for (uint64_t c0 = r0; c0 < r1; c0 += kChunk) {
      const uint64_t n = std::min(kChunk, r1 - c0);
      const float* xr = x.data() + c0 * row_len;
      for (uint64_t r = 0; r < n; ++r)
        dequantize_values(type, out.data() + (c0 + r) * row_bytes, row_len, &y[r * row_len]);
      part.add(xr, y.data(), n * row_len);
      if (!with_h) continue;
      for (uint64_t i = 0; i < n * row_len; ++i) d[i] = xr[i] - y[i];
      const int k = static_cast<int>(row_len);
      for (const auto& [m, acc] :
           {std::pair{d.data(), &e}, std::pair{const_cast<float*>(xr), &ref}}) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(n), k, k, 1.0f, m,
                    k, h.data(), k, 0.0f, dh.data(), k);
        for (uint64_t i = 0; i < n * row_len; ++i) *acc += static_cast<double>(dh[i]) * m[i];
      }
    }
    std::lock_guard<std::mutex> lock(mu);
    weight.add(part);
    out_err += e;
    out_ref += ref;
  });
  return {weight, out_err, out_ref};
}

}  // namespace

TensorErrors measure_errors(DType type, const std::vector<float>& x, uint64_t row_len,
                            const std::vector<uint8_t>& out, const std::vector<float>* hessian,
                            int n_threads) {
  const Sums s = error_sums(type, x, row_len, out, hessian, n_threads);
  return {s.weight.relative_rms(),
          s.out_ref > 0 ? std::sqrt(std::max(0.0, s.out_err) / s.out_ref) : 0.0};
}

ErrorSums weight_error_sums(DType type, const std::vector<float>& x, uint64_t row_len,
                            const std::vector<uint8_t>& out, int n_threads) {
  return error_sums(type, x, row_len, out, nullptr, n_threads).weight;
}

double decoded_zero_share(DType type, const std::vector<uint8_t>& bytes, uint64_t n) {
  std::vector<float> y(n);
  dequantize_values(type, bytes.data(), n, y.data());
  return zero_share(y.data(), n);
}

std::vector<float> hessian_f32(const std::vector<double>* h, uint64_t row_len) {
  if (!h || h->size() != row_len * row_len) return {};
  return std::vector<float>(h->begin(), h->end());
}

}  // namespace lowbit

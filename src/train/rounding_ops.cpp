// Rounding of activations and KV rows in the student's pass (rounding_ops.h).
#include "train/rounding_ops.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <mutex>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/kernels.h"
#include "lowbit/quant.h"
#include "lowbit/rotation.h"
#include "train/block_ops.h"

namespace lowbit::train {
namespace {

// H / √n of order n in Real, built once per order.
template <class Real>
const std::vector<Real>& scaled_hadamard(uint32_t n) {
  static std::mutex mutex;
  static std::map<uint32_t, std::vector<Real>> made;
  std::lock_guard<std::mutex> lock(mutex);
  auto it = made.find(n);
  if (it == made.end()) {
    const std::vector<float> h = hadamard_matrix(n);
    std::vector<Real> scaled(h.size());
    const Real s = Real(1) / std::sqrt(Real(n));
    for (size_t i = 0; i < h.size(); ++i) scaled[i] = Real(h[i]) * s;
    it = made.emplace(n, std::move(scaled)).first;
  }
  return it->second;
}

}  // namespace

template <class Real>
void round_acts(const Real* x, size_t rows, size_t cols, int bits, float clip, float range,
                Real* out) {
  std::vector<float> f(x, x + rows * cols);
  if (range > 0)
    kernels::round_acts_to_range(f.data(), f.size(), bits, clip, range);
  else
    kernels::round_acts_per_token(f.data(), rows, cols, bits, clip);
  std::copy(f.begin(), f.end(), out);
}

template <class Real>
void round_acts_backward(const Real* x, size_t rows, size_t cols, float clip, float range, Real* dx,
                         const Real* rounded) {
  if (range > 0) {
    const Real limit = Real(clip) * Real(range);
    for (size_t i = 0; i < rows * cols; ++i)
      if (std::fabs(x[i]) > limit) dx[i] = 0;
    return;
  }
  if (clip >= 1 && !rounded) return;  // the scale covers max|x|: nothing is clamped
  for (size_t t = 0; t < rows; ++t) {
    const Real* row = x + t * cols;
    Real* d = dx + t * cols;
    size_t top = 0;
    for (size_t i = 1; i < cols; ++i)
      if (std::fabs(row[i]) > std::fabs(row[top])) top = i;
    const Real amax = std::fabs(row[top]), limit = Real(clip) * amax;
    double ds = 0;  // ∂L/∂s · s
    for (size_t i = 0; i < cols; ++i) {
      const bool clamped = clip < 1 && std::fabs(row[i]) > limit;
      if (rounded) ds += double(d[i]) * (rounded[t * cols + i] - (clamped ? Real(0) : row[i]));
      if (clamped) d[i] = 0;
    }
    if (rounded && amax > 0) d[top] += Real(ds / double(amax)) * (row[top] < 0 ? -1 : 1);
  }
}

template <class Real>
void round_rows_to(DType t, Real* x, size_t rows, size_t cols) {
  if (t == DType::F32) return;
  std::vector<float> f(x, x + rows * cols);
  uint64_t bytes = 0;
  if (!tensor_bytes(t, cols, rows * cols, &bytes))
    fail(ErrorKind::Argument, "rows of {} values cannot be stored as {}", cols, dtype_name(t));
  std::vector<uint8_t> q(bytes);
  quantize_rows(t, f.data(), rows, cols, nullptr, q.data());
  dequantize_values(t, q.data(), f.size(), f.data());
  std::copy(f.begin(), f.end(), x);
}

template <class Real>
void hadamard_rows(Real* x, size_t rows, uint32_t n, bool inverse) {
  const std::vector<Real>& h = scaled_hadamard<Real>(n);
  std::vector<Real> in(x, x + rows * n);
  // rows: x ← x·Hᵀ/√n (each row times H); the inverse x ← x·H/√n
  gemm<Real>(false, !inverse, rows, n, n, 1, in.data(), n, h.data(), n, 0, x, n);
}

template void round_acts<float>(const float*, size_t, size_t, int, float, float, float*);
template void round_acts<double>(const double*, size_t, size_t, int, float, float, double*);
template void round_acts_backward<float>(const float*, size_t, size_t, float, float, float*,
                                         const float*);
template void round_acts_backward<double>(const double*, size_t, size_t, float, float, double*,
                                          const double*);
template void round_rows_to<float>(DType, float*, size_t, size_t);
template void round_rows_to<double>(DType, double*, size_t, size_t);
template void hadamard_rows<float>(float*, size_t, uint32_t, bool);
template void hadamard_rows<double>(double*, size_t, uint32_t, bool);

}  // namespace lowbit::train

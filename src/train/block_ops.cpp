// The block's operations and their backward passes (block_ops.h).
#include "train/block_ops.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

namespace lowbit::train {
namespace {

CBLAS_TRANSPOSE op(bool t) {
  return t ? CblasTrans : CblasNoTrans;
}

template <class Real>
Real sigmoid(Real x) {
  return Real(1) / (Real(1) + std::exp(-x));
}

}  // namespace

template <>
void gemm<float>(bool ta, bool tb, size_t m, size_t n, size_t k, float alpha, const float* a,
                 size_t lda, const float* b, size_t ldb, float beta, float* c, size_t ldc) {
  cblas_sgemm(CblasRowMajor, op(ta), op(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}
template <>
void gemm<double>(bool ta, bool tb, size_t m, size_t n, size_t k, double alpha, const double* a,
                  size_t lda, const double* b, size_t ldb, double beta, double* c, size_t ldc) {
  cblas_dgemm(CblasRowMajor, op(ta), op(tb), int(m), int(n), int(k), alpha, a, int(lda), b,
              int(ldb), beta, c, int(ldc));
}

template <class Real>
void linear(const Real* w, size_t out, size_t in, const Real* x, size_t n, Real* y) {
  gemm<Real>(false, true, n, out, in, 1, x, in, w, in, 0, y, out);
}

template <class Real>
void linear_backward(const Real* w, size_t out, size_t in, const Real* x, size_t n, const Real* dy,
                     Real* dw, Real* dx, bool accumulate) {
  if (dw) gemm<Real>(true, false, out, in, n, 1, dy, out, x, in, 1, dw, in);
  if (dx) gemm<Real>(false, false, n, in, out, 1, dy, out, w, in, accumulate ? 1 : 0, dx, in);
}

template <class Real>
void rms_norm(const Real* x, const Real* w, size_t rows, size_t d, float eps, Real* y, Real* r) {
  for (size_t i = 0; i < rows; ++i) {
    const Real* xi = x + i * d;
    double sum = 0;
    for (size_t j = 0; j < d; ++j) sum += double(xi[j]) * xi[j];
    // float as the engine (and llama.cpp) computes it; double when checking gradients
    const Real ri = Real(1) / std::sqrt(Real(sum / d) + Real(eps));
    r[i] = ri;
    for (size_t j = 0; j < d; ++j) y[i * d + j] = xi[j] * ri * w[j];
  }
}

// y_j = x_j r w_j, r = (Σx²/d + eps)^-½, ∂r/∂x_j = -r³ x_j / d, so
// ∂L/∂x_j = r w_j dy_j - x_j r³/d · Σ_i dy_i w_i x_i.
template <class Real>
void rms_norm_backward(const Real* x, const Real* w, const Real* r, size_t rows, size_t d,
                       const Real* dy, Real* dx, Real* dw) {
  for (size_t i = 0; i < rows; ++i) {
    const Real *xi = x + i * d, *gi = dy + i * d;
    const Real ri = r[i];
    double dot = 0;
    for (size_t j = 0; j < d; ++j) dot += double(gi[j]) * w[j] * xi[j];
    const Real c = Real(dot) * ri * ri * ri / Real(d);
    for (size_t j = 0; j < d; ++j) dx[i * d + j] += ri * w[j] * gi[j] - xi[j] * c;
    if (dw)
      for (size_t j = 0; j < d; ++j) dw[j] += gi[j] * xi[j] * ri;
  }
}

template <class Real>
void rope(Real* x, size_t n, size_t heads, size_t hd, const std::vector<double>& inv_freq,
          RopeLayout layout, bool inverse) {
  const size_t half = hd / 2;
  for (size_t t = 0; t < n; ++t)
    for (size_t i = 0; i < half; ++i) {
      const double theta = double(t) * inv_freq[i];
      // the engine rounds cos/sin to float; so does the float pass
      const Real c = Real(float(std::cos(theta))), s0 = Real(float(std::sin(theta)));
      const Real s = inverse ? -s0 : s0;
      for (size_t h = 0; h < heads; ++h) {
        Real* head = x + (t * heads + h) * hd;
        Real* a = layout == RopeLayout::Halves ? head + i : head + 2 * i;
        Real* b = layout == RopeLayout::Halves ? head + i + half : head + 2 * i + 1;
        const Real x0 = *a, x1 = *b;
        *a = x0 * c - x1 * s;
        *b = x0 * s + x1 * c;
      }
    }
}

template <class Real>
void attention(const Real* q, const Real* k, const Real* v, size_t n, size_t heads, size_t kv_heads,
               size_t hd, Real* p, Real* a) {
  const size_t Q = heads * hd, KV = kv_heads * hd, group = heads / kv_heads;
  const Real scale = Real(1) / std::sqrt(Real(hd));
  for (size_t h = 0; h < heads; ++h) {
    const size_t kvh = h / group;
    Real* ph = p + h * n * n;
    gemm<Real>(false, true, n, n, hd, scale, q + h * hd, Q, k + kvh * hd, KV, 0, ph, n);
    for (size_t t = 0; t < n; ++t) {
      Real* row = ph + t * n;
      const Real mx = *std::max_element(row, row + t + 1);
      double sum = 0;
      for (size_t j = 0; j <= t; ++j) sum += (row[j] = std::exp(row[j] - mx));
      const Real inv = Real(1.0 / sum);
      for (size_t j = 0; j <= t; ++j) row[j] *= inv;
      std::fill(row + t + 1, row + n, Real(0));
    }
    gemm<Real>(false, false, n, hd, n, 1, ph, n, v + kvh * hd, KV, 0, a + h * hd, Q);
  }
}

// Per head: dV += Pᵀ dA; dP = dA Vᵀ; dS = P ⊙ (dP - rowsum(dP ⊙ P)); dQ = dS K · scale;
// dK += dSᵀ Q · scale. Masked entries have P = 0, so their dS is 0.
template <class Real>
void attention_backward(const Real* q, const Real* k, const Real* v, const Real* p, size_t n,
                        size_t heads, size_t kv_heads, size_t hd, const Real* da, Real* dq,
                        Real* dk, Real* dv) {
  const size_t Q = heads * hd, KV = kv_heads * hd, group = heads / kv_heads;
  const Real scale = Real(1) / std::sqrt(Real(hd));
  std::fill(dk, dk + n * KV, Real(0));
  std::fill(dv, dv + n * KV, Real(0));
  std::vector<Real> ds(n * n);
  for (size_t h = 0; h < heads; ++h) {
    const size_t kvh = h / group;
    const Real* ph = p + h * n * n;
    gemm<Real>(true, false, n, hd, n, 1, ph, n, da + h * hd, Q, 1, dv + kvh * hd, KV);
    gemm<Real>(false, true, n, n, hd, 1, da + h * hd, Q, v + kvh * hd, KV, 0, ds.data(), n);
    for (size_t t = 0; t < n; ++t) {
      Real* row = ds.data() + t * n;
      const Real* pr = ph + t * n;
      double dot = 0;
      for (size_t j = 0; j <= t; ++j) dot += double(row[j]) * pr[j];
      for (size_t j = 0; j <= t; ++j) row[j] = pr[j] * (row[j] - Real(dot));
      std::fill(row + t + 1, row + n, Real(0));
    }
    gemm<Real>(false, false, n, hd, n, scale, ds.data(), n, k + kvh * hd, KV, 0, dq + h * hd, Q);
    gemm<Real>(true, false, n, hd, n, scale, ds.data(), n, q + h * hd, Q, 1, dk + kvh * hd, KV);
  }
}

template <class Real>
void swiglu(const Real* g, const Real* u, size_t count, Real* m) {
  for (size_t i = 0; i < count; ++i) m[i] = g[i] * sigmoid(g[i]) * u[i];
}

// ∂silu(g)/∂g = σ(g) (1 + g (1 - σ(g))).
template <class Real>
void swiglu_backward(const Real* g, const Real* u, size_t count, const Real* dm, Real* dg,
                     Real* du) {
  for (size_t i = 0; i < count; ++i) {
    const Real s = sigmoid(g[i]);
    dg[i] = dm[i] * u[i] * s * (1 + g[i] * (1 - s));
    du[i] = dm[i] * g[i] * s;
  }
}

template <class Real>
void log_softmax(const Real* z, size_t vocab, double tau, std::vector<double>& logp) {
  double mx = -INFINITY;
  for (size_t j = 0; j < vocab; ++j) mx = std::max(mx, double(z[j]) / tau);
  double sum = 0;
  for (size_t j = 0; j < vocab; ++j) sum += std::exp(double(z[j]) / tau - mx);
  const double lse = mx + std::log(sum);
  logp.resize(vocab);
  for (size_t j = 0; j < vocab; ++j) logp[j] = double(z[j]) / tau - lse;
}

#define LOWBIT_INSTANTIATE_OPS(Real)                                                              \
  template void linear<Real>(const Real*, size_t, size_t, const Real*, size_t, Real*);            \
  template void linear_backward<Real>(const Real*, size_t, size_t, const Real*, size_t,           \
                                      const Real*, Real*, Real*, bool);                           \
  template void rms_norm<Real>(const Real*, const Real*, size_t, size_t, float, Real*, Real*);    \
  template void rms_norm_backward<Real>(const Real*, const Real*, const Real*, size_t, size_t,    \
                                        const Real*, Real*, Real*);                               \
  template void rope<Real>(Real*, size_t, size_t, size_t, const std::vector<double>&, RopeLayout, \
                           bool);                                                                 \
  template void attention<Real>(const Real*, const Real*, const Real*, size_t, size_t, size_t,    \
                                size_t, Real*, Real*);                                            \
  template void attention_backward<Real>(const Real*, const Real*, const Real*, const Real*,      \
                                         size_t, size_t, size_t, size_t, const Real*, Real*,      \
                                         Real*, Real*);                                           \
  template void swiglu<Real>(const Real*, const Real*, size_t, Real*);                            \
  template void swiglu_backward<Real>(const Real*, const Real*, size_t, const Real*, Real*,       \
                                      Real*);                                                     \
  template void log_softmax<Real>(const Real*, size_t, double, std::vector<double>&);
LOWBIT_INSTANTIATE_OPS(float)
LOWBIT_INSTANTIATE_OPS(double)
#undef LOWBIT_INSTANTIATE_OPS

}  // namespace lowbit::train

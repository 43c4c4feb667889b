// The operations of a transformer block with their backward passes (block_grad.h composes
// them). Each backward takes the upstream gradient of its output and what its forward saved.
// Templates on Real = float | double, instantiated in block_ops.cpp.
#pragma once

#include <cstddef>
#include <vector>

#include "lowbit/model_config.h"

namespace lowbit::train {

// C[m, n] = alpha · op(A) · op(B) + beta · C, row-major (sgemm / dgemm).
template <class Real>
void gemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, Real alpha, const Real* a,
          size_t lda, const Real* b, size_t ldb, Real beta, Real* c, size_t ldc);

// y[n, out] = x[n, in] · W[out, in]ᵀ.
template <class Real>
void linear(const Real* w, size_t out, size_t in, const Real* x, size_t n, Real* y);
// dW[out, in] += dyᵀ x; dx[n, in] (+)= dy · W (accumulate: add to dx instead of writing it).
template <class Real>
void linear_backward(const Real* w, size_t out, size_t in, const Real* x, size_t n, const Real* dy,
                     Real* dw, Real* dx, bool accumulate);

// RMSNorm over rows of d, as the engine computes it: y = x · r · w with r = 1/√(mean x² + eps).
// r[rows] receives each row's r.
template <class Real>
void rms_norm(const Real* x, const Real* w, size_t rows, size_t d, float eps, Real* y, Real* r);
// dx[rows, d] += ∂L/∂x; dw[d] += ∂L/∂w (dw may be null).
template <class Real>
void rms_norm_backward(const Real* x, const Real* w, const Real* r, size_t rows, size_t d,
                       const Real* dy, Real* dx, Real* dw);

// RoPE of x [n, heads · hd] in place at positions 0 .. n-1; backward rotates the other way.
template <class Real>
void rope(Real* x, size_t n, size_t heads, size_t hd, const std::vector<double>& inv_freq,
          RopeLayout layout, bool inverse);

// Causal grouped-query attention. q [n, H·hd], k/v [n, KV·hd]; p [H, n, n] receives the
// probabilities (zero above the diagonal); a [n, H·hd] the output.
template <class Real>
void attention(const Real* q, const Real* k, const Real* v, size_t n, size_t heads, size_t kv_heads,
               size_t hd, Real* p, Real* a);
// dq [n, H·hd] written; dk, dv [n, KV·hd] written (sums over the heads of each group).
template <class Real>
void attention_backward(const Real* q, const Real* k, const Real* v, const Real* p, size_t n,
                        size_t heads, size_t kv_heads, size_t hd, const Real* da, Real* dq,
                        Real* dk, Real* dv);

// m = silu(g) ⊙ u over `count` values; backward writes dg, du.
template <class Real>
void swiglu(const Real* g, const Real* u, size_t count, Real* m);
template <class Real>
void swiglu_backward(const Real* g, const Real* u, size_t count, const Real* dm, Real* dg,
                     Real* du);

// logp [vocab] = log softmax(z / τ), in double (the losses against next-token distributions).
template <class Real>
void log_softmax(const Real* z, size_t vocab, double tau, std::vector<double>& logp);

}  // namespace lowbit::train

// Forward and backward pass of a block (lowbit/block_grad.h), composed of block_ops.h.
#include "lowbit/block_grad.h"

#include <algorithm>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "train/block_ops.h"

namespace lowbit::train {

BlockShape block_shape(const Model& m) {
  const ModelConfig& c = m.config;
  BlockShape s;
  s.n_embd = c.n_embd, s.n_head = c.n_head, s.n_head_kv = c.n_head_kv, s.head_dim = c.head_dim,
  s.n_ff = c.n_ff;
  s.norm_eps = c.norm_eps;
  s.rope_layout = m.rope_layout;
  s.inv_freq = rope_frequencies(m);
  s.attn_bias = c.attn_bias, s.qk_norm = c.qk_norm;
  return s;
}

template <class Real>
std::vector<Real>* BlockWeights<Real>::linear(int i) {
  std::vector<Real>* all[7] = {&wq, &wk, &wv, &wo, &wgate, &wup, &wdown};
  return all[i];
}

template <class Real>
void BlockWeights<Real>::zeros_like(const BlockWeights& o) {
  auto z = [](std::vector<Real>& v, const std::vector<Real>& like) {
    v.assign(like.size(), Real(0));
  };
  z(wq, o.wq), z(wk, o.wk), z(wv, o.wv), z(wo, o.wo), z(wgate, o.wgate), z(wup, o.wup),
      z(wdown, o.wdown);
  z(attn_norm, o.attn_norm), z(ffn_norm, o.ffn_norm), z(bq, o.bq), z(bk, o.bk), z(bv, o.bv);
  z(q_norm, o.q_norm), z(k_norm, o.k_norm);
}

BlockWeights<float> block_weights(const Model& m, uint32_t layer) {
  if (layer >= m.config.n_layer)
    fail(ErrorKind::Argument, "block_weights: layer {} of {}", layer, m.config.n_layer);
  const std::string p = "blk." + std::to_string(layer) + ".";
  auto get = [&](const std::string& n) { return to_f32(m.tensor(p + n)); };
  BlockWeights<float> w;
  for (int i = 0; i < 7; ++i) *w.linear(i) = get(std::string(kLinearNames[i]) + ".weight");
  w.attn_norm = get("attn_norm.weight");
  w.ffn_norm = get("ffn_norm.weight");
  if (m.config.attn_bias)
    w.bq = get("attn_q.bias"), w.bk = get("attn_k.bias"), w.bv = get("attn_v.bias");
  if (m.config.qk_norm) w.q_norm = get("attn_q_norm.weight"), w.k_norm = get("attn_k_norm.weight");
  return w;
}

namespace {

template <class Real>
void add_bias(Real* y, const std::vector<Real>& b, size_t n) {
  if (b.empty()) return;
  for (size_t t = 0; t < n; ++t)
    for (size_t i = 0; i < b.size(); ++i) y[t * b.size() + i] += b[i];
}

template <class Real>
void bias_backward(const Real* dy, size_t n, std::vector<Real>& db) {
  for (size_t t = 0; t < n; ++t)
    for (size_t i = 0; i < db.size(); ++i) db[i] += dy[t * db.size() + i];
}

}  // namespace

template <class Real>
void block_forward(const BlockShape& s, const BlockWeights<Real>& w, const Real* x, size_t n,
                   Real* y, BlockCache<Real>* cache) {
  BlockCache<Real> local;
  BlockCache<Real>& c = cache ? *cache : local;
  const size_t D = s.n_embd, Q = s.q_dim(), KV = s.kv_dim(), F = s.n_ff, hd = s.head_dim;
  c.n = n;
  c.x.assign(x, x + n * D);
  c.r1.resize(n), c.h1.resize(n * D);
  rms_norm(x, w.attn_norm.data(), n, D, s.norm_eps, c.h1.data(), c.r1.data());
  c.q.resize(n * Q), c.k.resize(n * KV), c.v.resize(n * KV);
  linear(w.wq.data(), Q, D, c.h1.data(), n, c.q.data());
  linear(w.wk.data(), KV, D, c.h1.data(), n, c.k.data());
  linear(w.wv.data(), KV, D, c.h1.data(), n, c.v.data());
  add_bias(c.q.data(), w.bq, n), add_bias(c.k.data(), w.bk, n), add_bias(c.v.data(), w.bv, n);
  if (s.qk_norm) {
    c.q_pre = c.q, c.k_pre = c.k;
    c.rq.resize(n * s.n_head), c.rk.resize(n * s.n_head_kv);
    rms_norm(c.q_pre.data(), w.q_norm.data(), n * s.n_head, hd, s.norm_eps, c.q.data(),
             c.rq.data());
    rms_norm(c.k_pre.data(), w.k_norm.data(), n * s.n_head_kv, hd, s.norm_eps, c.k.data(),
             c.rk.data());
  }
  rope(c.q.data(), n, s.n_head, hd, s.inv_freq, s.rope_layout, false);
  rope(c.k.data(), n, s.n_head_kv, hd, s.inv_freq, s.rope_layout, false);
  c.p.resize(s.n_head * n * n), c.a.resize(n * Q);
  attention(c.q.data(), c.k.data(), c.v.data(), n, s.n_head, s.n_head_kv, hd, c.p.data(),
            c.a.data());
  c.x2.resize(n * D);
  linear(w.wo.data(), D, Q, c.a.data(), n, c.x2.data());
  for (size_t i = 0; i < n * D; ++i) c.x2[i] += x[i];
  c.r2.resize(n), c.h2.resize(n * D);
  rms_norm(c.x2.data(), w.ffn_norm.data(), n, D, s.norm_eps, c.h2.data(), c.r2.data());
  c.g.resize(n * F), c.u.resize(n * F), c.m.resize(n * F);
  linear(w.wgate.data(), F, D, c.h2.data(), n, c.g.data());
  linear(w.wup.data(), F, D, c.h2.data(), n, c.u.data());
  swiglu(c.g.data(), c.u.data(), n * F, c.m.data());
  linear(w.wdown.data(), D, F, c.m.data(), n, y);
  for (size_t i = 0; i < n * D; ++i) y[i] += c.x2[i];
}

template <class Real>
void block_backward(const BlockShape& s, const BlockWeights<Real>& w, const BlockCache<Real>& c,
                    const Real* dy, BlockWeights<Real>& grad, Real* dx) {
  const size_t n = c.n, D = s.n_embd, Q = s.q_dim(), KV = s.kv_dim(), F = s.n_ff, hd = s.head_dim;
  // feed-forward: y = x2 + Wd m, m = silu(Wg h2) ⊙ Wu h2, h2 = n2(x2)
  std::vector<Real> dm(n * F), dg(n * F), du(n * F), dh(n * D);
  linear_backward(w.wdown.data(), D, F, c.m.data(), n, dy, grad.wdown.data(), dm.data(), false);
  swiglu_backward(c.g.data(), c.u.data(), n * F, dm.data(), dg.data(), du.data());
  linear_backward(w.wgate.data(), F, D, c.h2.data(), n, dg.data(), grad.wgate.data(), dh.data(),
                  false);
  linear_backward(w.wup.data(), F, D, c.h2.data(), n, du.data(), grad.wup.data(), dh.data(), true);
  std::vector<Real> dx2(dy, dy + n * D);
  rms_norm_backward(c.x2.data(), w.ffn_norm.data(), c.r2.data(), n, D, dh.data(), dx2.data(),
                    grad.ffn_norm.data());
  // attention: x2 = x + Wo a
  std::vector<Real> da(n * Q), dq(n * Q), dk(n * KV), dv(n * KV);
  linear_backward(w.wo.data(), D, Q, c.a.data(), n, dx2.data(), grad.wo.data(), da.data(), false);
  attention_backward(c.q.data(), c.k.data(), c.v.data(), c.p.data(), n, s.n_head, s.n_head_kv, hd,
                     da.data(), dq.data(), dk.data(), dv.data());
  rope(dq.data(), n, s.n_head, hd, s.inv_freq, s.rope_layout, true);
  rope(dk.data(), n, s.n_head_kv, hd, s.inv_freq, s.rope_layout, true);
  if (s.qk_norm) {  // dq, dk are gradients of the normed values: take them back through the norms
    std::vector<Real> dq_pre(n * Q, Real(0)), dk_pre(n * KV, Real(0));
    rms_norm_backward(c.q_pre.data(), w.q_norm.data(), c.rq.data(), n * s.n_head, hd, dq.data(),
                      dq_pre.data(), grad.q_norm.data());
    rms_norm_backward(c.k_pre.data(), w.k_norm.data(), c.rk.data(), n * s.n_head_kv, hd, dk.data(),
                      dk_pre.data(), grad.k_norm.data());
    dq.swap(dq_pre), dk.swap(dk_pre);
  }
  if (s.attn_bias)
    bias_backward(dq.data(), n, grad.bq), bias_backward(dk.data(), n, grad.bk),
        bias_backward(dv.data(), n, grad.bv);
  std::fill(dh.begin(), dh.end(), Real(0));
  linear_backward(w.wq.data(), Q, D, c.h1.data(), n, dq.data(), grad.wq.data(), dh.data(), true);
  linear_backward(w.wk.data(), KV, D, c.h1.data(), n, dk.data(), grad.wk.data(), dh.data(), true);
  linear_backward(w.wv.data(), KV, D, c.h1.data(), n, dv.data(), grad.wv.data(), dh.data(), true);
  if (dx) std::copy(dx2.begin(), dx2.end(), dx);
  std::vector<Real> dx1(dx ? 0 : n * D, Real(0));
  rms_norm_backward(c.x.data(), w.attn_norm.data(), c.r1.data(), n, D, dh.data(),
                    dx ? dx : dx1.data(), grad.attn_norm.data());
}

template struct BlockWeights<float>;
template struct BlockWeights<double>;
template void block_forward<float>(const BlockShape&, const BlockWeights<float>&, const float*,
                                   size_t, float*, BlockCache<float>*);
template void block_forward<double>(const BlockShape&, const BlockWeights<double>&, const double*,
                                    size_t, double*, BlockCache<double>*);
template void block_backward<float>(const BlockShape&, const BlockWeights<float>&,
                                    const BlockCache<float>&, const float*, BlockWeights<float>&,
                                    float*);
template void block_backward<double>(const BlockShape&, const BlockWeights<double>&,
                                     const BlockCache<double>&, const double*,
                                     BlockWeights<double>&, double*);

}  // namespace lowbit::train

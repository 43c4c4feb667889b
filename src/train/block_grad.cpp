// Forward and backward pass of a block (lowbit/block_grad.h), composed of block_ops.h.
#include "lowbit/block_grad.h"

#include <algorithm>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "train/block_ops.h"
#include "train/rounding_ops.h"

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
  s.ffn_down_hadamard = c.ffn_down_hadamard;
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

// The static range of input `site` when the shape rounds to static ranges, else 0 (per token).
template <class Real>
float range_of(const BlockShape& s, const BlockWeights<Real>& w, int site) {
  if (!s.rounding.act_bits || !s.rounding.static_ranges) return 0;
  if (w.act_range.size() != size_t(kActRangeSites))
    fail(ErrorKind::Argument, "static activation ranges: the block has {} of its {} ranges",
         w.act_range.size(), kActRangeSites);
  return w.act_range[site];
}

// The input a linear multiplies: x itself, or x rounded into `rounded` when the shape asks for
// rounded activations (then `seen` receives max |x|).
template <class Real>
const Real* linear_input(const BlockShape& s, float range, const std::vector<Real>& x, size_t n,
                         std::vector<Real>& rounded, float* seen) {
  if (!s.rounding.act_bits) return x.data();
  Real amax = 0;
  for (const Real v : x) amax = std::max(amax, Real(std::fabs(v)));
  *seen = float(amax);
  rounded.resize(x.size());
  round_acts(x.data(), n, x.size() / n, s.rounding.act_bits, s.rounding.act_clip, range,
             rounded.data());
  return rounded.data();
}

// The straight-through pass of linear_input: dx (the gradient at the rounded input) kept where
// the rounding did not clamp.
template <class Real>
void linear_input_backward(const BlockShape& s, float range, const std::vector<Real>& x,
                           const std::vector<Real>& rounded, size_t n, Real* dx) {
  if (s.rounding.act_bits)
    round_acts_backward(x.data(), n, x.size() / n, s.rounding.act_clip, range, dx,
                        s.scale_gradient ? rounded.data() : nullptr);
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
  const Real* h1 = linear_input(s, range_of(s, w, 0), c.h1, n, c.h1q, &c.seen[0]);
  linear(w.wq.data(), Q, D, h1, n, c.q.data());
  linear(w.wk.data(), KV, D, h1, n, c.k.data());
  linear(w.wv.data(), KV, D, h1, n, c.v.data());
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
  const ActivationRounding& r = s.rounding;
  if (r.rotate_kv) {  // as the engine: q and k of every head, the scores unchanged
    hadamard_rows(c.q.data(), n * s.n_head, hd, false);
    hadamard_rows(c.k.data(), n * s.n_head_kv, hd, false);
  }
  round_rows_to(r.cache_type_k, c.k.data(), n, KV);  // what the KV cache keeps
  round_rows_to(r.cache_type_v, c.v.data(), n, KV);
  c.p.resize(s.n_head * n * n), c.a.resize(n * Q);
  attention(c.q.data(), c.k.data(), c.v.data(), n, s.n_head, s.n_head_kv, hd, c.p.data(),
            c.a.data());
  c.x2.resize(n * D);
  linear(w.wo.data(), D, Q, linear_input(s, range_of(s, w, 1), c.a, n, c.aq, &c.seen[1]), n,
         c.x2.data());
  for (size_t i = 0; i < n * D; ++i) c.x2[i] += x[i];
  c.r2.resize(n), c.h2.resize(n * D);
  rms_norm(c.x2.data(), w.ffn_norm.data(), n, D, s.norm_eps, c.h2.data(), c.r2.data());
  c.g.resize(n * F), c.u.resize(n * F), c.m.resize(n * F);
  const Real* h2 = linear_input(s, range_of(s, w, 2), c.h2, n, c.h2q, &c.seen[2]);
  linear(w.wgate.data(), F, D, h2, n, c.g.data());
  linear(w.wup.data(), F, D, h2, n, c.u.data());
  swiglu(c.g.data(), c.u.data(), n * F, c.m.data());
  if (s.ffn_down_hadamard) {
    c.md = c.m;
    hadamard_rows(c.md.data(), n, F, false);
  } else {
    c.md.clear();
  }
  linear(w.wdown.data(), D, F,
         linear_input(s, range_of(s, w, 3), c.md.empty() ? c.m : c.md, n, c.mq, &c.seen[3]), n, y);
  for (size_t i = 0; i < n * D; ++i) y[i] += c.x2[i];
}

template <class Real>
void block_backward(const BlockShape& s, const BlockWeights<Real>& w, const BlockCache<Real>& c,
                    const Real* dy, BlockWeights<Real>& grad, Real* dx) {
  const size_t n = c.n, D = s.n_embd, Q = s.q_dim(), KV = s.kv_dim(), F = s.n_ff, hd = s.head_dim;
  // feed-forward: y = x2 + Wd m, m = silu(Wg h2) ⊙ Wu h2, h2 = n2(x2)
  // The linears' inputs as the forward pass used them (rounded or not).
  auto used = [&](const std::vector<Real>& x, const std::vector<Real>& rounded) {
    return s.rounding.act_bits ? rounded.data() : x.data();
  };
  const std::vector<Real>& down_in = c.md.empty() ? c.m : c.md;
  std::vector<Real> dm(n * F), dg(n * F), du(n * F), dh(n * D);
  linear_backward(w.wdown.data(), D, F, used(down_in, c.mq), n, dy, grad.wdown.data(), dm.data(),
                  false);
  linear_input_backward(s, range_of(s, w, 3), down_in, c.mq, n, dm.data());
  if (!c.md.empty()) hadamard_rows(dm.data(), n, F, true);
  swiglu_backward(c.g.data(), c.u.data(), n * F, dm.data(), dg.data(), du.data());
  const Real* h2 = used(c.h2, c.h2q);
  linear_backward(w.wgate.data(), F, D, h2, n, dg.data(), grad.wgate.data(), dh.data(), false);
  linear_backward(w.wup.data(), F, D, h2, n, du.data(), grad.wup.data(), dh.data(), true);
  linear_input_backward(s, range_of(s, w, 2), c.h2, c.h2q, n, dh.data());
  std::vector<Real> dx2(dy, dy + n * D);
  rms_norm_backward(c.x2.data(), w.ffn_norm.data(), c.r2.data(), n, D, dh.data(), dx2.data(),
                    grad.ffn_norm.data());
  // attention: x2 = x + Wo a
  std::vector<Real> da(n * Q), dq(n * Q), dk(n * KV), dv(n * KV);
  linear_backward(w.wo.data(), D, Q, used(c.a, c.aq), n, dx2.data(), grad.wo.data(), da.data(),
                  false);
  linear_input_backward(s, range_of(s, w, 1), c.a, c.aq, n, da.data());
  // (the KV cache's rounding: straight through)
  attention_backward(c.q.data(), c.k.data(), c.v.data(), c.p.data(), n, s.n_head, s.n_head_kv, hd,
                     da.data(), dq.data(), dk.data(), dv.data());
  if (s.rounding.rotate_kv) {
    hadamard_rows(dq.data(), n * s.n_head, hd, true);
    hadamard_rows(dk.data(), n * s.n_head_kv, hd, true);
  }
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
  const Real* h1 = used(c.h1, c.h1q);
  linear_backward(w.wq.data(), Q, D, h1, n, dq.data(), grad.wq.data(), dh.data(), true);
  linear_backward(w.wk.data(), KV, D, h1, n, dk.data(), grad.wk.data(), dh.data(), true);
  linear_backward(w.wv.data(), KV, D, h1, n, dv.data(), grad.wv.data(), dh.data(), true);
  linear_input_backward(s, range_of(s, w, 0), c.h1, c.h1q, n, dh.data());
  if (dx) std::copy(dx2.begin(), dx2.end(), dx);
  std::vector<Real> dx1(dx ? 0 : n * D, Real(0));
  rms_norm_backward(c.x.data(), w.attn_norm.data(), c.r1.data(), n, D, dh.data(),
                    dx ? dx : dx1.data(), grad.attn_norm.data());
}

int linear_index(const std::string& weight) {
  for (int i = 0; i < 7; ++i)
    if (weight.find(std::string(".") + kLinearNames[i] + ".weight") != std::string::npos) return i;
  fail(ErrorKind::Argument, "'{}' is not a linear of a block", weight);
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

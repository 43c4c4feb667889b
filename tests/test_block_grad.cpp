// The block's backward pass against central finite differences (in double), op by op and
// for whole random blocks of every variant; the float forward against the engine's.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>

#include "lowbit/block_grad.h"
#include "lowbit/engine.h"
#include "lowbit/kernels.h"
#include "lowbit/synthetic.h"
#include "train/block_ops.h"
#include "train/rounding_ops.h"

namespace lowbit::train {
namespace {

std::vector<double> randn(size_t n, uint32_t seed, double scale = 1.0) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (double& x : v) x = d(rng);
  return v;
}

// L(p) = Σ probe ⊙ f(p): checks ∂L/∂p[i] (from `analytic`) at a dozen spread positions of p.
void check_gradient(std::vector<double>& p, const std::vector<double>& analytic,
                    const std::function<double()>& loss, const char* what) {
  ASSERT_EQ(p.size(), analytic.size()) << what;
  const double h = 1e-6;
  std::mt19937 rng(17);
  double scale = 0;
  for (double g : analytic) scale = std::max(scale, std::fabs(g));
  ASSERT_GT(scale, 0) << what << ": the gradient is all zeros";
  for (int k = 0; k < 12; ++k) {
    const size_t i = rng() % p.size();
    const double keep = p[i];
    p[i] = keep + h;
    const double up = loss();
    p[i] = keep - h;
    const double down = loss();
    p[i] = keep;
    const double fd = (up - down) / (2 * h);
    // relative to the spot's own size, with the gradient's largest entry as the floor
    EXPECT_LE(std::fabs(fd - analytic[i]), 1e-3 * std::max(std::fabs(fd), 1e-2 * scale))
        << what << "[" << i << "]: finite differences " << fd << ", backward " << analytic[i];
  }
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

TEST(BlockGrad, LinearMatchesFiniteDifferences) {
  const size_t n = 5, in = 7, out = 4;
  auto w = randn(out * in, 1), x = randn(n * in, 2), probe = randn(n * out, 3);
  std::vector<double> y(n * out), dw(out * in, 0.0), dx(n * in);
  auto loss = [&] {
    linear(w.data(), out, in, x.data(), n, y.data());
    return dot(probe, y);
  };
  linear_backward(w.data(), out, in, x.data(), n, probe.data(), dw.data(), dx.data(), false);
  check_gradient(w, dw, loss, "W");
  check_gradient(x, dx, loss, "x");
}

TEST(BlockGrad, RmsNormMatchesFiniteDifferences) {
  const size_t rows = 3, d = 8;
  auto x = randn(rows * d, 4), w = randn(d, 5), probe = randn(rows * d, 6);
  std::vector<double> y(rows * d), r(rows), dx(rows * d, 0.0), dw(d, 0.0);
  auto loss = [&] {
    rms_norm(x.data(), w.data(), rows, d, 1e-5f, y.data(), r.data());
    return dot(probe, y);
  };
  loss();
  rms_norm_backward(x.data(), w.data(), r.data(), rows, d, probe.data(), dx.data(), dw.data());
  check_gradient(x, dx, loss, "x");
  check_gradient(w, dw, loss, "w");
}

TEST(BlockGrad, RopeBothLayoutsMatchFiniteDifferences) {
  const size_t n = 6, heads = 2, hd = 8;
  const std::vector<double> freq = {1.0, 0.3, 0.05, 0.01};
  for (RopeLayout layout : {RopeLayout::Halves, RopeLayout::Interleaved}) {
    auto x = randn(n * heads * hd, 7), probe = randn(n * heads * hd, 8);
    auto loss = [&] {
      std::vector<double> y = x;
      rope(y.data(), n, heads, hd, freq, layout, false);
      return dot(probe, y);
    };
    std::vector<double> dx = probe;
    rope(dx.data(), n, heads, hd, freq, layout, true);
    check_gradient(x, dx, loss, layout == RopeLayout::Halves ? "halves" : "interleaved");
  }
}

TEST(BlockGrad, GroupedCausalAttentionMatchesFiniteDifferences) {
  const size_t n = 5, heads = 4, kv = 2, hd = 3;
  auto q = randn(n * heads * hd, 9), k = randn(n * kv * hd, 10), v = randn(n * kv * hd, 11);
  auto probe = randn(n * heads * hd, 12);
  std::vector<double> p(heads * n * n), a(n * heads * hd), dq(q.size()), dk(k.size()), dv(v.size());
  auto loss = [&] {
    attention(q.data(), k.data(), v.data(), n, heads, kv, hd, p.data(), a.data());
    return dot(probe, a);
  };
  loss();
  attention_backward(q.data(), k.data(), v.data(), p.data(), n, heads, kv, hd, probe.data(),
                     dq.data(), dk.data(), dv.data());
  check_gradient(q, dq, loss, "q");
  check_gradient(k, dk, loss, "k");
  check_gradient(v, dv, loss, "v");
  // causal: the first token's output depends only on the first key and value
  for (size_t j = 1; j < n; ++j) EXPECT_EQ(p[j], 0.0);
}

TEST(BlockGrad, SwigluMatchesFiniteDifferences) {
  const size_t count = 20;
  auto g = randn(count, 13, 2.0), u = randn(count, 14), probe = randn(count, 15);
  std::vector<double> m(count), dg(count), du(count);
  auto loss = [&] {
    swiglu(g.data(), u.data(), count, m.data());
    return dot(probe, m);
  };
  swiglu_backward(g.data(), u.data(), count, probe.data(), dg.data(), du.data());
  check_gradient(g, dg, loss, "g");
  check_gradient(u, du, loss, "u");
}

BlockShape small_shape(bool bias, bool qk_norm, RopeLayout layout) {
  BlockShape s;
  s.n_embd = 12, s.n_head = 4, s.n_head_kv = 2, s.head_dim = 4, s.n_ff = 20;
  s.rope_layout = layout;
  s.inv_freq = {1.0, 0.1};
  s.attn_bias = bias, s.qk_norm = qk_norm;
  return s;
}

BlockWeights<double> random_block(const BlockShape& s, uint32_t seed) {
  const size_t D = s.n_embd, Q = s.q_dim(), KV = s.kv_dim(), F = s.n_ff;
  BlockWeights<double> w;
  w.wq = randn(Q * D, seed + 1, 0.4), w.wk = randn(KV * D, seed + 2, 0.4),
  w.wv = randn(KV * D, seed + 3, 0.4);
  w.wo = randn(D * Q, seed + 4, 0.4), w.wgate = randn(F * D, seed + 5, 0.4),
  w.wup = randn(F * D, seed + 6, 0.4);
  w.wdown = randn(D * F, seed + 7, 0.3);
  auto around_one = [](std::vector<double> v) {
    for (double& x : v) x += 1.0;
    return v;
  };
  w.attn_norm = around_one(randn(D, seed + 8, 0.2)),
  w.ffn_norm = around_one(randn(D, seed + 9, 0.2));
  if (s.attn_bias)
    w.bq = randn(Q, seed + 10, 0.3), w.bk = randn(KV, seed + 11, 0.3),
    w.bv = randn(KV, seed + 12, 0.3);
  if (s.qk_norm)
    w.q_norm = around_one(randn(s.head_dim, seed + 13, 0.2)),
    w.k_norm = around_one(randn(s.head_dim, seed + 14, 0.2));
  return w;
}

// Every gradient of a random block of shape s (weights from w_seed, input from x_seed, the
// probe from x_seed + 1) against central differences; biases and q/k norms where s has them.
void check_whole_block(const BlockShape& s, uint32_t w_seed, uint32_t x_seed) {
  const size_t n = 6;
  BlockWeights<double> w = random_block(s, w_seed);
  auto x = randn(n * s.n_embd, x_seed), probe = randn(n * s.n_embd, x_seed + 1);
  std::vector<double> y(x.size());
  auto loss = [&] {
    block_forward(s, w, x.data(), n, y.data());
    return dot(probe, y);
  };
  BlockCache<double> cache;
  block_forward(s, w, x.data(), n, y.data(), &cache);
  BlockWeights<double> g;
  g.zeros_like(w);
  std::vector<double> dx(x.size());
  block_backward(s, w, cache, probe.data(), g, dx.data());
  check_gradient(x, dx, loss, "x");
  for (int i = 0; i < 7; ++i) check_gradient(*w.linear(i), *g.linear(i), loss, kLinearNames[i]);
  check_gradient(w.attn_norm, g.attn_norm, loss, "attn_norm");
  check_gradient(w.ffn_norm, g.ffn_norm, loss, "ffn_norm");
  if (s.attn_bias) {
    check_gradient(w.bq, g.bq, loss, "bq");
    check_gradient(w.bk, g.bk, loss, "bk");
    check_gradient(w.bv, g.bv, loss, "bv");
  }
  if (s.qk_norm) {
    check_gradient(w.q_norm, g.q_norm, loss, "q_norm");
    check_gradient(w.k_norm, g.k_norm, loss, "k_norm");
  }
}

TEST(BlockGrad, WholeBlockMatchesFiniteDifferencesInEveryVariant) {
  struct Variant {
    bool bias, qk_norm;
    RopeLayout layout;
  };
  for (Variant var :
       {Variant{false, false, RopeLayout::Interleaved}, Variant{true, false, RopeLayout::Halves},
        Variant{true, true, RopeLayout::Halves}}) {
    SCOPED_TRACE(testing::Message() << "bias " << var.bias << " qk_norm " << var.qk_norm);
    check_whole_block(small_shape(var.bias, var.qk_norm, var.layout), 20, 30);
  }
}

// The float forward is the engine's forward_layer, for each architecture variant.
TEST(BlockGrad, FloatForwardEqualsEngineBlock) {
  for (const char* arch : {"llama", "qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    ModelConfig c;
    c.arch = arch;
    c.n_vocab = 64, c.n_embd = 64, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2, c.head_dim = 16,
    c.n_ff = 96;
    c.n_ctx = 32;
    c.attn_bias = c.arch == "qwen2";
    c.qk_norm = c.arch == "qwen3";
    Model m = make_synthetic_model(c, Vocab{}, 5, DType::F32, 0.2f);
    const size_t n = 24;
    std::vector<float> x(n * c.n_embd);
    std::mt19937 rng(3);
    std::normal_distribution<float> d;
    for (float& v : x) v = d(rng);
    Engine e(m, {1, 32});
    std::vector<float> want = x, got(x.size());
    e.forward_layer(1, want.data(), n);
    block_forward(block_shape(m), block_weights(m, 1), x.data(), n, got.data());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < x.size(); ++i)
      worst = std::max(worst, double(std::fabs(got[i] - want[i]))),
      scale = std::max(scale, double(std::fabs(want[i])));
    EXPECT_LE(worst, 1e-5 * scale);
  }
}

// The online transforms as the engine applies them (ffn_down's input; q and k per head): their
// backward passes, Hᵀ, checked where H is not symmetric (n_ff = 20 takes a Paley I factor).
TEST(BlockGrad, OnlineHadamardTransformsMatchFiniteDifferences) {
  BlockShape s = small_shape(true, false, RopeLayout::Halves);
  s.ffn_down_hadamard = true;
  s.rounding.rotate_kv = true;
  check_whole_block(s, 40, 41);
  // Rotating q and k alike leaves the scores, so the output, as they were.
  const size_t n = 6;
  const BlockWeights<double> w = random_block(s, 40);
  const auto x = randn(n * s.n_embd, 41);
  std::vector<double> rotated(x.size()), plain(x.size());
  block_forward(s, w, x.data(), n, rotated.data());
  s.rounding.rotate_kv = false;
  block_forward(s, w, x.data(), n, plain.data());
  for (size_t i = 0; i < rotated.size(); ++i) EXPECT_NEAR(plain[i], rotated[i], 1e-12);
}

// Rounded linear inputs: the weight gradient of ffn_down (whose rounded input its weights do
// not move) is exact, and the gradients further back pass straight through the rounding.
TEST(BlockGrad, RoundedActivationsPassGradientsStraightThrough) {
  for (int bits : {4, 8}) {
    SCOPED_TRACE(testing::Message() << bits << " bits");
    BlockShape s = small_shape(false, false, RopeLayout::Halves);
    const size_t n = 6;
    BlockWeights<double> w = random_block(s, 50);
    auto x = randn(n * s.n_embd, 51), probe = randn(n * s.n_embd, 52);
    auto gradients = [&](const BlockShape& shape) {
      std::vector<double> y(x.size());
      BlockCache<double> cache;
      block_forward(shape, w, x.data(), n, y.data(), &cache);
      BlockWeights<double> g;
      g.zeros_like(w);
      block_backward(shape, w, cache, probe.data(), g);
      return g;
    };
    const BlockWeights<double> exact = gradients(s);
    s.rounding.act_bits = bits;
    BlockWeights<double> ste = gradients(s);
    std::vector<double> y(x.size());
    check_gradient(
        w.wdown, ste.wdown,
        [&] {
          block_forward(s, w, x.data(), n, y.data());
          return dot(probe, y);
        },
        "wdown");
    // At 8 bits the rounding barely moves anything, so neither does the gradient; at 4 bits
    // it does (the test sees the rounded inputs).
    for (int i = 0; i < 7; ++i) {
      const std::vector<double>&a = *ste.linear(i),
            &b = *const_cast<BlockWeights<double>&>(exact).linear(i);
      double diff = 0, norm = 0;
      for (size_t k = 0; k < a.size(); ++k)
        diff += (a[k] - b[k]) * (a[k] - b[k]), norm += b[k] * b[k];
      const double rel = std::sqrt(diff / norm);
      if (bits == 8)
        EXPECT_LT(rel, 0.05) << kLinearNames[i];
      else
        EXPECT_GT(rel, 0.01) << kLinearNames[i];
    }
  }
}

TEST(BlockGrad, ActivationRoundingIsTheEnginesAndClampedValuesGetNoGradient) {
  const size_t rows = 3, cols = 40;
  const auto x = randn(rows * cols, 60);
  std::vector<float> want(x.begin(), x.end());
  kernels::round_acts_per_token(want.data(), rows, cols, 4, 0.5f);
  std::vector<double> got(x.size());
  round_acts(x.data(), rows, cols, 4, 0.5f, 0.0f, got.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(float(got[i]), want[i]) << i;
  std::vector<double> dx(x.size(), 1.0);
  round_acts_backward(x.data(), rows, cols, 0.5f, 0.0f, dx.data());
  size_t clamped = 0;
  for (size_t t = 0; t < rows; ++t) {
    double amax = 0;
    for (size_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(x[t * cols + i]));
    for (size_t i = 0; i < cols; ++i) {
      const bool out = std::fabs(x[t * cols + i]) > 0.5 * amax;
      clamped += out;
      EXPECT_EQ(dx[t * cols + i], out ? 0.0 : 1.0) << t << "," << i;
    }
  }
  EXPECT_GT(clamped, 0u);
  std::vector<double> all(x.size(), 1.0);
  round_acts_backward(x.data(), rows, cols, 1.0f, 0.0f, all.data());  // clip 1: nothing clamped
  for (double v : all) EXPECT_EQ(v, 1.0);
  // A static range: one step for all rows, and what lies beyond clip·range gets no gradient.
  std::vector<float> fixed(x.begin(), x.end());
  kernels::round_acts_to_range(fixed.data(), fixed.size(), 4, 0.5f, 1.5f);
  round_acts(x.data(), rows, cols, 4, 0.5f, 1.5f, got.data());
  for (size_t i = 0; i < x.size(); ++i) EXPECT_EQ(float(got[i]), fixed[i]) << i;
  std::fill(dx.begin(), dx.end(), 1.0);
  round_acts_backward(x.data(), rows, cols, 0.5f, 1.5f, dx.data());
  clamped = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const bool out = std::fabs(x[i]) > 0.75;
    clamped += out;
    EXPECT_EQ(dx[i], out ? 0.0 : 1.0) << i;
  }
  EXPECT_GT(clamped, 0u);
  EXPECT_LT(clamped, x.size());
}

}  // namespace
}  // namespace lowbit::train

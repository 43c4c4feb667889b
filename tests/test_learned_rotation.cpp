// Learned rotations (SpinQuant, learn_rotation in lowbit/rotation.h): the frame gradient
// against central differences of the loss under a further (not orthogonal) transform, its
// skew part vanishing where the loss cannot change, the Cayley step, and a short run.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/model_grad.h"
#include "lowbit/rotation.h"
#include "test_support.h"
#include "train/rotation_grad.h"
#include "train/rounding_ops.h"

namespace lowbit::train {
namespace {

// n Gaussian values scaled to a unit norm.
std::vector<double> gaussian(size_t n, uint32_t seed) {
  const std::vector<float> g = test::gaussian(n, seed);
  std::vector<double> v(g.begin(), g.end());
  double norm2 = 0;
  for (double x : v) norm2 += x * x;
  for (double& x : v) x /= std::sqrt(norm2);
  return v;
}

// I + eps·e, as floats.
std::vector<float> near_identity(const std::vector<double>& e, size_t n, double eps) {
  std::vector<float> out(n * n);
  for (size_t i = 0; i < n * n; ++i) out[i] = float((i % (n + 1) == 0 ? 1.0 : 0.0) + eps * e[i]);
  return out;
}

double dot(const std::vector<double>& a, const std::vector<double>& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// ‖G − Gᵀ‖ and ‖G‖ (Frobenius).
std::pair<double, double> skew_and_norm(const std::vector<double>& g, size_t n) {
  double skew = 0, all = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      const double s = g[i * n + j] - g[j * n + i];
      skew += s * s, all += g[i * n + j] * g[i * n + j];
    }
  return {std::sqrt(skew), std::sqrt(all)};
}

struct Problem {
  Model rotated;
  std::vector<std::vector<int32_t>> windows;
  std::vector<std::vector<float>> teacher;
};

// The model folded and rotated by Hadamard matrices; a teacher of random logits, so that
// the loss has a gradient in every direction the model can move.
Problem problem(const char* arch, bool tied) {
  const Model m = test::small_synthetic_model(arch, tied);
  RotationOptions o;
  o.kind = RotationKind::Hadamard;
  Problem p{rotate_model(m, o), {}, {}};
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0, 2);
  for (int w = 0; w < 2; ++w) {
    std::vector<int32_t> t(12);
    for (int32_t& v : t) v = static_cast<int32_t>(rng() % 64);
    std::vector<float> logits(t.size() * 64);
    for (float& v : logits) v = d(rng);
    p.windows.push_back(t);
    p.teacher.push_back(logits);
  }
  return p;
}

TEST(LearnedRotation, FrameGradientMatchesCentralDifferences) {
  for (const char* arch : {"llama", "qwen2"})
    for (bool tied : {false, true}) {
      SCOPED_TRACE(testing::Message() << arch << (tied ? " tied" : ""));
      const Problem p = problem(arch, tied);
      const ModelConfig& c = p.rotated.config;
      FrameGradient g;
      rotation_loss<double>(p.rotated, DType::F32, {}, p.windows, p.teacher, 0, 1, &g);
      ASSERT_EQ(g.heads.size(), c.n_layer);
      const size_t D = c.n_embd, d = c.head_dim;
      const std::vector<double> e = gaussian(D * D, 7);
      std::vector<std::vector<double>> eh;
      for (uint32_t l = 0; l < c.n_layer; ++l) eh.push_back(gaussian(d * d, 11 + l));
      const RotationOptions plain{RotationKind::None};
      auto loss_at = [&](double eps) {
        RotationMatrices r{near_identity(e, D, eps), {}};
        for (const auto& h : eh) r.heads.push_back(near_identity(h, d, eps));
        return rotation_loss<double>(rotate_model(p.rotated, r, plain), DType::F32, {}, p.windows,
                                     p.teacher, 0, 1, nullptr);
      };
      const double eps = 1e-3, fd = (loss_at(eps) - loss_at(-eps)) / (2 * eps);
      double an = dot(g.residual, e), norm2 = dot(g.residual, g.residual);
      for (uint32_t l = 0; l < c.n_layer; ++l)
        an += dot(g.heads[l], eh[l]), norm2 += dot(g.heads[l], g.heads[l]);
      // The directions have unit norm, so |an| ≤ ‖G‖; the weights are floats, so the
      // differences carry noise of a small fraction of ‖G‖.
      const double tol = 2e-3 * (std::fabs(fd) + std::sqrt(norm2));
      EXPECT_NEAR(an, fd, tol);
      // Each part alone, so that one part's error cannot hide in the sum.
      RotationMatrices only_heads{near_identity(e, D, 0), {}};
      for (const auto& h : eh) only_heads.heads.push_back(near_identity(h, d, eps));
      const double heads_up =
          rotation_loss<double>(rotate_model(p.rotated, only_heads, plain), DType::F32, {},
                                p.windows, p.teacher, 0, 1, nullptr);
      for (auto& h : only_heads.heads) h = near_identity(eh[&h - &only_heads.heads[0]], d, -eps);
      const double heads_down =
          rotation_loss<double>(rotate_model(p.rotated, only_heads, plain), DType::F32, {},
                                p.windows, p.teacher, 0, 1, nullptr);
      double an_heads = 0;
      for (uint32_t l = 0; l < c.n_layer; ++l) an_heads += dot(g.heads[l], eh[l]);
      const double fd_heads = (heads_up - heads_down) / (2 * eps);
      EXPECT_NEAR(an_heads, fd_heads, tol);
    }
}

// An orthogonal transform leaves an unrounded model's function, so the loss, unchanged: the
// gradient has no skew part. With 4-bit activations it does (there is something to learn).
TEST(LearnedRotation, OnlyRoundingGivesTheFrameGradientASkewPart) {
  const Problem p = problem("llama", false);
  const ModelConfig& c = p.rotated.config;
  FrameGradient g;
  rotation_loss<double>(p.rotated, DType::F32, {}, p.windows, p.teacher, 0, 1, &g);
  const auto [skew, norm] = skew_and_norm(g.residual, c.n_embd);
  EXPECT_GT(norm, 1e-3);
  EXPECT_LT(skew, 1e-4 * norm);
  for (const auto& h : g.heads) {
    const auto [hs, hn] = skew_and_norm(h, c.head_dim);
    EXPECT_LT(hs, 1e-4 * hn + 1e-9);
  }
  ActivationRounding a4;
  a4.act_bits = 4;
  FrameGradient r;
  rotation_loss<float>(p.rotated, DType::Q8_0, a4, p.windows, p.teacher, 0, 1, &r);
  const auto [rskew, rnorm] = skew_and_norm(r.residual, c.n_embd);
  EXPECT_GT(rskew, 1e-3 * rnorm);
}

// One row rounded to 4 bits with clip 0.5: the clamped values are ±clip·max|x|, and the
// others s·k with k fixed for a small move of the maximum (each x/s sits a quarter step
// from a rounding threshold). So the loss L = Σ c_i·x̂_i changes with the maximum by the
// held-k derivative, which the LSQ gradient equals once the straight-through part of the
// unclamped values (−Σ c_i·x_i/max|x|) is added back.
TEST(LearnedRotation, ActivationScaleGradientFollowsTheRowMaximum) {
  const double clip = 0.5, amax = 8, s = clip * amax / 7;
  std::vector<double> x;
  for (int k = -6; k <= 6; ++k) x.push_back((k + 0.25) * s);
  for (double big : {5.0, -6.0, -7.5}) x.push_back(big);  // clamped (> clip·max = 4)
  const size_t top = x.size();
  x.push_back(-amax);
  const std::vector<double> c = gaussian(x.size(), 5);
  auto loss = [&](const std::vector<double>& at) {
    std::vector<double> r(at.size());
    round_acts(at.data(), 1, at.size(), 4, float(clip), 0.0f, r.data());
    return dot(c, r);
  };
  std::vector<double> rounded(x.size()), dx = c;
  round_acts(x.data(), 1, x.size(), 4, float(clip), 0.0f, rounded.data());
  round_acts_backward(x.data(), 1, x.size(), float(clip), 0.0f, dx.data(), rounded.data());
  const double eps = 1e-3;
  std::vector<double> up = x, down = x;
  up[top] -= eps, down[top] += eps;  // x[top] < 0: these move max|x| up and down
  const double held_k = (loss(up) - loss(down)) / (2 * eps) * -1;  // ∂L/∂x[top]
  double straight = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (std::fabs(x[i]) <= clip * amax) straight += c[i] * x[i];
  EXPECT_NEAR(dx[top], held_k + straight / amax, 1e-4);
  for (size_t i = 0; i + 1 < x.size(); ++i)  // the rest: straight through, clamped ones 0
    EXPECT_EQ(dx[i], std::fabs(x[i]) > clip * amax ? 0.0 : c[i]) << i;
  std::vector<double> plain = c;  // without `rounded`: no scale term
  round_acts_backward(x.data(), 1, x.size(), float(clip), 0.0f, plain.data());
  EXPECT_EQ(plain[top], 0.0);
}

TEST(LearnedRotation, CayleyStepsAreOrthogonalAndFollowTheGenerator) {
  const size_t n = 6;
  const std::vector<double> a = gaussian(n * n, 2);
  std::vector<double> s(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) s[i * n + j] = a[i * n + j] - a[j * n + i];
  for (double step : {1e-4, 0.3, 3.0}) {
    const std::vector<double> q = cayley(s, n, step);
    for (size_t i = 0; i < n; ++i)
      for (size_t j = 0; j < n; ++j) {
        double g = 0;
        for (size_t k = 0; k < n; ++k) g += q[i * n + k] * q[j * n + k];
        EXPECT_NEAR(g, i == j ? 1.0 : 0.0, 1e-12);
      }
    if (step < 1e-3) {  // ≈ I − step·S
      for (size_t i = 0; i < n * n; ++i)
        EXPECT_NEAR(q[i], (i % (n + 1) == 0 ? 1.0 : 0.0) - step * s[i], 1e-7);
    }
  }
}

// A short run on a fixed batch: the rounded model's loss falls, and the unrounded learned
// model computes what the original does.
TEST(LearnedRotation, StepsLowerTheRoundedLossAndKeepTheFunction) {
  const Model m = test::small_synthetic_model("llama", false);
  std::vector<int32_t> tokens(400);
  std::mt19937 rng(9);
  for (int32_t& v : tokens) v = static_cast<int32_t>(rng() % 64);
  RotationOptions o;
  o.kind = RotationKind::Hadamard;
  o.learn.steps = 30;
  o.learn.lr = 0.05;
  o.learn.n_ctx = 24, o.learn.n_windows = 2, o.learn.batch = 2;
  o.learn.rounding.act_bits = 3;
  o.n_threads = 1;
  LearnedRotationReport rep;
  const Model learned = learn_rotation(m, o, tokens, &rep);
  ASSERT_EQ(rep.losses.size(), 30u);
  EXPECT_LT(rep.losses.back(), 0.9 * rep.losses.front());
  Engine a(m, {1, 24}), b(learned, {1, 24});
  std::vector<float> want, got;
  a.eval(tokens.data(), 24, want, true);
  b.eval(tokens.data(), 24, got, true);
  EXPECT_LE(test::max_relative_difference(want, got), 1e-4);
  o.kind = RotationKind::None;
  EXPECT_NE(test::expect_error([&] { learn_rotation(m, o, tokens); }).find("hadamard"),
            std::string::npos);
  o.kind = RotationKind::Hadamard;
  o.learn.weights = DType::Q4_K;  // blocks of 256 in rows of 32
  EXPECT_NE(test::expect_error([&] { learn_rotation(m, o, tokens); }).find("rows of 32"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit::train

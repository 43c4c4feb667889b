// The whole model's backward pass against central differences (in double), its forward
// against the engine, and distillation (lowbit/distill.h) on a small synthetic model.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <random>

#include "lowbit/calibration.h"
#include "lowbit/distill.h"
#include "lowbit/engine.h"
#include "lowbit/model_grad.h"
#include "lowbit/quant.h"
#include "lowbit/synthetic.h"
#include "test_support.h"
#include "train/teacher_top_k.h"

namespace lowbit::train {
namespace {

Model small_model(const char* arch, bool tied, uint64_t seed = 5) {
  return test::small_synthetic_model(arch, tied, seed);
}

std::vector<int32_t> random_tokens(size_t n, uint32_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<int32_t> t(n);
  for (int32_t& v : t) v = static_cast<int32_t>(rng() % vocab);
  return t;
}

// A student: the teacher's weights with noise of half their size.
Model noisy_student(const Model& teacher, uint32_t seed) {
  ModelWeights<float> w = model_weights<float>(teacher);
  std::mt19937 rng(seed);
  for (std::vector<float>* t : w.tensors())
    for (float& v : *t) v += 0.5f * v * std::normal_distribution<float>()(rng);
  return with_weights(teacher, w);
}

// Distillation on small_model: `steps` steps over 16 windows of 32 tokens at a step size
// that moves it within them.
DistillOptions short_run(int steps) {
  DistillOptions o;
  o.steps = steps;
  o.n_ctx = 32;
  o.n_windows = 16;
  o.lr = 3e-3;
  return o;
}

// Each block linear of small_model's two blocks -> `type`.
std::map<std::string, DType> every_linear_in(DType type) {
  std::map<std::string, DType> types;
  for (int l = 0; l < 2; ++l)
    for (const char* lin : kLinearNames)
      types["blk." + std::to_string(l) + "." + lin + ".weight"] = type;
  return types;
}

TEST(ModelGrad, ForwardEqualsTheEngine) {
  for (bool tied : {false, true}) {
    const Model m = small_model("llama", tied);
    const auto tokens = random_tokens(20, 64, 1);
    Engine e(m, {1, 32});
    std::vector<float> want, got;
    e.eval(tokens.data(), tokens.size(), want, true);
    std::vector<std::vector<float>> inputs;
    ModelPass<float>(m).forward(model_weights<float>(m), tokens.data(), tokens.size(), got, inputs);
    ASSERT_EQ(got.size(), want.size());
    double worst = 0, scale = 0;
    for (size_t i = 0; i < got.size(); ++i)
      worst = std::max(worst, double(std::fabs(got[i] - want[i]))),
      scale = std::max(scale, double(std::fabs(want[i])));
    EXPECT_LE(worst, 1e-4 * scale) << "tied " << tied;
    EXPECT_EQ(inputs.size(), m.config.n_layer + 1u);
  }
}

// KD loss of the model's logits against fixed teacher logits, and its gradient by backward().
TEST(ModelGrad, GradientMatchesCentralDifferences) {
  for (const char* arch : {"llama", "qwen2", "qwen3"})
    for (bool tied : {false, true}) {
      SCOPED_TRACE(testing::Message() << arch << (tied ? " tied" : ""));
      const Model m = small_model(arch, tied);
      const ModelPass<double> pass(m);
      ModelWeights<double> w = model_weights<double>(m);
      const size_t n = 9;
      const auto tokens = random_tokens(n, 64, 2);
      std::vector<float> teacher(n * 64);
      std::mt19937 rng(4);
      std::normal_distribution<float> d(0, 2);
      for (float& v : teacher) v = d(rng);
      const double tau = 1.5;
      auto loss = [&](const ModelWeights<double>& at, ModelWeights<double>* grad) {
        std::vector<double> logits;
        std::vector<std::vector<double>> inputs;
        pass.forward(at, tokens.data(), n, logits, inputs);
        std::vector<double> dl(logits.size());
        const double l = kd_loss(logits.data(), teacher.data(), n, 64, tau, dl.data());
        if (grad) pass.backward(at, inputs, dl.data(), n, *grad);
        return l * tau * tau;  // the gradient is scaled by τ²
      };
      ModelWeights<double> g;
      g.zeros_like(w);
      loss(w, &g);
      std::vector<std::vector<double>*> p = w.tensors(), gp = g.tensors();
      // a few entries of every tensor: block 0's and 1's linears, norms, biases, final norm
      for (size_t k = 0; k < p.size(); ++k)
        for (size_t i : {size_t(0), p[k]->size() / 2, p[k]->size() - 1}) {
          const double keep = (*p[k])[i], eps = 1e-5;
          (*p[k])[i] = keep + eps;
          const double up = loss(w, nullptr);
          (*p[k])[i] = keep - eps;
          const double down = loss(w, nullptr);
          (*p[k])[i] = keep;
          const double fd = (up - down) / (2 * eps), an = (*gp[k])[i];
          EXPECT_NEAR(an, fd, 1e-6 + 1e-5 * std::fabs(fd)) << "tensor " << k << " entry " << i;
        }
    }
}

TEST(ModelGrad, TrainedWeightsGoBackIntoTheModel) {
  const Model m = small_model("qwen2", false);
  ModelWeights<float> w = model_weights<float>(m);
  w.blocks[1].wdown[7] = 42.0f;
  w.output_norm[3] = -2.0f;
  const ModelWeights<float> back = model_weights<float>(with_weights(m, w));
  EXPECT_EQ(back.blocks[1].wdown, w.blocks[1].wdown);
  EXPECT_EQ(back.blocks[0].bq, w.blocks[0].bq);
  EXPECT_EQ(back.output_norm, w.output_norm);
}

TEST(Distill, AStudentMovesTowardsItsTeacher) {
  const Model teacher = small_model("llama", false, 5);
  const Model student = noisy_student(teacher, 9);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o = short_run(60);
  DistillReport rep;
  const Model trained = distill(student, teacher, tokens, o, &rep);
  ASSERT_EQ(rep.losses.size(), 60u);
  EXPECT_EQ(rep.n_params, model_weights<float>(teacher).count());
  const double first = (rep.losses[0] + rep.losses[1]) / 2,
               last = (rep.losses[58] + rep.losses[59]) / 2;
  EXPECT_LT(last, 0.5 * first) << first << " -> " << last;

  // The same seed gives the same weights.
  const Model again = distill(student, teacher, tokens, o);
  EXPECT_EQ(model_weights<float>(again).blocks[0].wq, model_weights<float>(trained).blocks[0].wq);
}

std::vector<float> random_logits(size_t n, size_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0, 2);
  std::vector<float> z(n * vocab);
  for (float& v : z) v = d(rng);
  return z;
}

TEST(TeacherTopK, TheWholeVocabularyGivesTheFullLoss) {
  const size_t n = 5, V = 30;
  const auto teacher = random_logits(n, V, 1), student = random_logits(n, V, 2);
  std::vector<float> want(n * V), got(n * V);
  const double full = kd_loss(student.data(), teacher.data(), n, V, 1.5, want.data());
  const TopKDistribution all = top_k_of(teacher.data(), n, V, V, 1.5);
  EXPECT_NEAR(kd_loss_top_k(student.data(), all, V, 1.5, got.data()), full, 1e-6 * full);
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], 1e-6) << i;
  const TopKDistribution few = top_k_of(teacher.data(), n, V, 4, 1.5);
  for (size_t t = 0; t < n; ++t) {  // the most likely first, and the bucket holds the rest
    double mass = few.tail[t];
    for (size_t i = 0; i < 4; ++i) mass += std::exp(double(few.logp[t * 4 + i]));
    EXPECT_NEAR(mass, 1.0, 1e-6);
    EXPECT_GE(few.logp[t * 4], few.logp[t * 4 + 1]);
    const float* z = teacher.data() + t * V;
    EXPECT_EQ(few.token[t * 4], std::max_element(z, z + V) - z);
  }
  EXPECT_NE(test::expect_error([&] { top_k_of(teacher.data(), n, V, V + 1, 1); }).find("1..30"),
            std::string::npos);
}

TEST(TeacherTopK, GradientMatchesCentralDifferences) {
  const size_t n = 3, V = 20, k = 5;
  const double tau = 2;
  const auto teacher = random_logits(n, V, 3);
  const auto start = random_logits(n, V, 4);
  std::vector<double> z(start.begin(), start.end()), dz(z.size()), scratch(z.size());
  const TopKDistribution d = top_k_of(teacher.data(), n, V, k, tau);
  kd_loss_top_k(z.data(), d, V, tau, dz.data());
  for (size_t i = 0; i < z.size(); i += 7) {
    const double keep = z[i], eps = 1e-6;
    z[i] = keep + eps;
    const double up = kd_loss_top_k(z.data(), d, V, tau, scratch.data());
    z[i] = keep - eps;
    const double down = kd_loss_top_k(z.data(), d, V, tau, scratch.data());
    z[i] = keep;
    // dz carries τ²
    EXPECT_NEAR(dz[i], tau * tau * (up - down) / (2 * eps), 1e-7) << i;
  }
}

TEST(ModelGrad, CrossEntropyGradientMatchesCentralDifferences) {
  const size_t n = 4, V = 16;
  const double weight = 0.7;
  const auto start = random_logits(n, V, 8);
  const auto tokens = random_tokens(n, V, 2);
  std::vector<double> z(start.begin(), start.end()), dz(z.size(), 0.5), scratch(z.size());
  const double loss = ce_loss(z.data(), tokens.data(), n, V, weight, dz.data());
  double direct = 0;  // −log p(next), from the softmax written out
  for (size_t t = 0; t + 1 < n; ++t) {
    double sum = 0;
    for (size_t j = 0; j < V; ++j) sum += std::exp(z[t * V + j]);
    direct -= std::log(std::exp(z[t * V + size_t(tokens[t + 1])]) / sum) / double(n - 1);
  }
  EXPECT_NEAR(loss, direct, 1e-12);
  for (size_t i = 0; i < z.size(); ++i) {
    const double keep = z[i], eps = 1e-6;
    z[i] = keep + eps;
    const double up = ce_loss(z.data(), tokens.data(), n, V, weight, scratch.data());
    z[i] = keep - eps;
    const double down = ce_loss(z.data(), tokens.data(), n, V, weight, scratch.data());
    z[i] = keep;
    // added to what dz held (0.5); the last position has no next token: nothing added
    const double want = i >= (n - 1) * V ? 0 : weight * (up - down) / (2 * eps);
    EXPECT_NEAR(dz[i] - 0.5, want, 1e-7) << i;
  }
}

// With a cross-entropy term the student also learns the text: the teacher here is a random
// network, so the text's own tokens pull the student away from it.
TEST(Distill, ACrossEntropyTermLowersTheStudentsLossOnTheText) {
  const Model teacher = small_model("llama", false, 5);
  const Model student = noisy_student(teacher, 9);
  std::vector<int32_t> tokens(4000);  // a text that repeats a short pattern
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i % 7 + 3);
  DistillOptions o = short_run(40);
  const Model kl_only = distill(student, teacher, tokens, o);
  o.ce_weight = 1;
  DistillReport rep;
  const Model with_ce = distill(student, teacher, tokens, o, &rep);
  const auto windows = sample_windows(tokens, 8, 32, 77, teacher.vocab.bos);
  auto text_ce = [&](const Model& m) {
    Engine e(m, {1, 32});
    double sum = 0;
    for (const auto& w : windows) {
      std::vector<float> z;
      e.reset();
      e.eval(w.data(), w.size(), z, true);
      std::vector<float> dz(z.size());
      sum += ce_loss(z.data(), w.data(), w.size(), 64, 1.0, dz.data());
    }
    return sum / windows.size();
  };
  const double before = text_ce(student), kl = text_ce(kl_only), ce = text_ce(with_ce);
  EXPECT_LT(ce, 0.5 * std::min(before, kl)) << before << ", KL only " << kl << ", with CE " << ce;
  EXPECT_GT(rep.losses[0], 1.0) << "the reported loss includes the cross-entropy";
  o.ce_weight = -1;
  EXPECT_NE(test::expect_error([&] { distill(student, teacher, tokens, o); }).find("-1"),
            std::string::npos);
}

TEST(Distill, AStudentLearnsFromTheTeachersTopTokens) {
  const Model teacher = small_model("llama", false, 5);
  const Model student = noisy_student(teacher, 9);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o = short_run(60);
  o.teacher_top_k = 8;
  const Model trained = distill(student, teacher, tokens, o);
  // Scored with the teacher's whole distribution on windows of the text.
  const auto windows = sample_windows(tokens, 8, 32, 77, teacher.vocab.bos);
  auto full_kl = [&](const Model& m) {
    Engine t(teacher, {1, 32}), s(m, {1, 32});
    double sum = 0;
    for (const auto& w : windows) {
      std::vector<float> zt, zs;
      t.reset(), s.reset();
      t.eval(w.data(), w.size(), zt, true);
      s.eval(w.data(), w.size(), zs, true);
      std::vector<float> dz(zs.size());
      sum += kd_loss(zs.data(), zt.data(), w.size(), 64, 1.0, dz.data());
    }
    return sum / windows.size();
  };
  o.teacher_top_k = 0;
  const double before = full_kl(student), after = full_kl(trained),
               whole = full_kl(distill(student, teacher, tokens, o));
  EXPECT_LT(after, 0.8 * before) << before << " -> " << after;
  EXPECT_LT(after, 1.2 * whole) << "trained on the whole distributions: " << whole;
  o.teacher_top_k = 65;
  EXPECT_NE(test::expect_error([&] { distill(student, teacher, tokens, o); }).find("1..64"),
            std::string::npos);
}

TEST(ModelGrad, FakeQuantizeRoundsTheNamedLinearsAsTheWriterDoes) {
  const Model m = small_model("llama", false);
  const ModelWeights<float> latent = model_weights<float>(m);
  const std::map<std::string, DType> types = {{"blk.0.ffn_up.weight", DType::Q8_0},
                                              {"blk.1.attn_q.weight", DType::Q4_0}};
  ModelWeights<float> rounded;
  fake_quantize(m, types, latent, rounded, 2);
  for (const auto& [name, type] : types) {
    const TensorView& t = m.tensor(name);
    const std::vector<float>& w = name[4] == '0' ? latent.blocks[0].wup : latent.blocks[1].wq;
    const std::vector<float>& r = name[4] == '0' ? rounded.blocks[0].wup : rounded.blocks[1].wq;
    uint64_t bytes = 0;
    ASSERT_TRUE(tensor_bytes(type, t.row_len(), w.size(), &bytes));
    std::vector<uint8_t> q(bytes);
    quantize_rows(type, w.data(), t.n_rows(), t.row_len(), nullptr, 1, q.data());
    std::vector<float> want(w.size());
    dequantize_values(type, q.data(), w.size(), want.data());
    EXPECT_EQ(r, want) << name;
    EXPECT_NE(r, w) << name;
  }
  EXPECT_EQ(rounded.blocks[0].wq, latent.blocks[0].wq);  // not named: as it was
  EXPECT_EQ(rounded.blocks[1].ffn_norm, latent.blocks[1].ffn_norm);
}

// The straight-through estimator: Adam's first step moves each weight by lr against the
// sign of the gradient, and that gradient must be the one at the rounded weights (GGUF
// blocks, then an affine grid).
TEST(Distill, QuantizationAwareStepsFollowTheGradientAtTheRoundedWeights) {
  const Model m = small_model("llama", false);
  const std::map<std::string, DType> types = every_linear_in(DType::Q4_0);
  std::map<std::string, AffineSpec> grids;
  for (const auto& [name, type] : types) grids[name] = AffineSpec{3, 32, false};
  const auto tokens = random_tokens(64, 64, 5);
  for (const bool affine : {false, true}) {
    SCOPED_TRACE(affine ? "int3 g32 asym" : "Q4_0");
    DistillOptions o;
    o.steps = 1, o.batch = 1, o.n_ctx = 32, o.n_windows = 1, o.lr = 1e-3;
    if (affine)
      o.affine_to = grids;
    else
      o.quantize_to = types;
    const ModelWeights<float> before = model_weights<float>(m);
    const ModelWeights<float> after = model_weights<float>(distill(m, m, tokens, o));
    // The one window, its teacher logits, the gradient at the rounded weights.
    const auto window = sample_windows(tokens, 1, 32, o.seed, m.vocab.bos)[0];
    Engine teacher(m, {1, 32});
    std::vector<float> zt, zs;
    teacher.eval(window.data(), window.size(), zt, true);
    ModelWeights<float> rounded, g;
    fake_quantize(m, o.quantize_to, before, rounded, 1, o.affine_to);
    EXPECT_NE(rounded.blocks[1].wdown, before.blocks[1].wdown);
    g.zeros_like(rounded);
    const ModelPass<float> pass(m);
    std::vector<std::vector<float>> inputs;
    pass.forward(rounded, window.data(), window.size(), zs, inputs);
    std::vector<float> dz(zs.size());
    kd_loss(zs.data(), zt.data(), window.size(), 64, 1.0, dz.data());
    pass.backward(rounded, inputs, dz.data(), window.size(), g);
    const std::vector<float>&w0 = before.blocks[1].wdown, &w1 = after.blocks[1].wdown,
          &gd = g.blocks[1].wdown;
    double largest = 0;
    for (float v : gd) largest = std::max(largest, double(std::fabs(v)));
    size_t checked = 0;
    for (size_t i = 0; i < gd.size(); ++i) {
      if (std::fabs(gd[i]) < 1e-3 * largest) continue;  // Adam's ε blurs the smallest
      EXPECT_NEAR(w1[i] - w0[i], gd[i] > 0 ? -1e-3 : 1e-3, 1e-5) << i;
      ++checked;
    }
    EXPECT_GT(checked, gd.size() / 2);
  }
}

// Mean KL from `teacher`'s distributions to `pass` with weights w over `windows`.
double mean_kd(const Model& teacher, const ModelPass<float>& pass, const ModelWeights<float>& w,
               const std::vector<std::vector<int32_t>>& windows) {
  Engine e(teacher, {1, 32});
  double sum = 0;
  for (const auto& win : windows) {
    std::vector<float> zt, zs;
    std::vector<std::vector<float>> inputs;
    e.reset();
    e.eval(win.data(), win.size(), zt, true);
    pass.forward(w, win.data(), win.size(), zs, inputs);
    std::vector<float> dz(zs.size());
    sum += kd_loss(zs.data(), zt.data(), win.size(), teacher.config.n_vocab, 1.0, dz.data());
  }
  return sum / windows.size();
}

TEST(Distill, QuantizationAwareTrainingLowersTheRoundedModelsLoss) {
  const Model m = small_model("llama", false);
  const std::map<std::string, DType> types = every_linear_in(DType::Q4_0);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o;
  o.steps = 60, o.n_ctx = 32, o.n_windows = 16, o.lr = 1e-3;
  o.quantize_to = types;
  const Model trained = distill(m, m, tokens, o);
  // The loss of the rounded model on the training windows, before and after.
  const auto windows = sample_windows(tokens, 16, 32, o.seed, m.vocab.bos);
  auto loss_of = [&](const Model& weights) {
    ModelWeights<float> rounded;
    fake_quantize(m, types, model_weights<float>(weights), rounded, 1);
    return mean_kd(m, ModelPass<float>(m), rounded, windows);
  };
  const double start = loss_of(m), end = loss_of(trained);
  EXPECT_LT(end, 0.7 * start) << start << " -> " << end;
}

// The student's pass rounds what the engine rounds with the same settings: 4-bit activations,
// a 4-bit KV cache of rotated keys.
TEST(ModelGrad, RoundedForwardEqualsTheEnginesSimulation) {
  ModelConfig c = small_model("llama", false).config;
  c.n_head_kv = 4;  // kv rows of 32 values: the cache's blocks
  const Model m = make_synthetic_model(c, Vocab{}, 5, DType::F32, 0.3f);
  const auto tokens = random_tokens(20, 64, 1);
  ActivationRounding r;
  r.act_bits = 4, r.cache_type_k = DType::Q4_0, r.cache_type_v = DType::Q4_1, r.rotate_kv = true;
  EngineOptions eo{1, 32};
  eo.rounding = r;
  Engine e(m, eo);
  std::vector<float> want, got, plain;
  e.eval(tokens.data(), tokens.size(), want, true);
  std::vector<std::vector<float>> inputs;
  ModelPass<float>(m, r).forward(model_weights<float>(m), tokens.data(), tokens.size(), got,
                                 inputs);
  ModelPass<float>(m).forward(model_weights<float>(m), tokens.data(), tokens.size(), plain, inputs);
  ASSERT_EQ(got.size(), want.size());
  double worst = 0, unrounded = 0, scale = 0;
  for (size_t i = 0; i < got.size(); ++i)
    worst = std::max(worst, double(std::fabs(got[i] - want[i]))),
    unrounded = std::max(unrounded, double(std::fabs(plain[i] - want[i]))),
    scale = std::max(scale, double(std::fabs(want[i])));
  EXPECT_LE(worst, 1e-4 * scale);
  EXPECT_GT(unrounded, 100 * worst) << "the rounding should show";
  r.cache_type_k = DType::Q2_K;
  EXPECT_NE(test::expect_error([&] { ModelPass<float>(m, r); }).find("Q2_K"), std::string::npos);
}

// Static ranges: each block's four inputs rounded with the model's ranges, in the engine and
// in the student's pass alike. The ranges are the inputs' maxima scaled by 0.5..1.2, so some
// clamp.
TEST(ModelGrad, StaticRangesRoundAsTheEngineDoes) {
  Model m = small_model("qwen2", false);
  const auto tokens = random_tokens(20, 64, 1);
  ActivationRounding r;
  r.act_bits = 6;
  std::vector<float> logits, seen, plain;
  std::vector<std::vector<float>> inputs;
  ModelPass<float>(m, r).forward(model_weights<float>(m), tokens.data(), tokens.size(), plain,
                                 inputs, &seen);
  ASSERT_EQ(seen.size(), 2u * kActRangeSites);
  for (size_t i = 0; i < seen.size(); ++i) {
    EXPECT_GT(seen[i], 0.0f) << i;
    m.config.act_ranges.push_back(seen[i] * (0.5f + 0.1f * float(i)));
  }
  r.static_ranges = true;
  EngineOptions eo{1, 32};
  eo.rounding = r;
  Engine e(m, eo);
  std::vector<float> want;
  e.eval(tokens.data(), tokens.size(), want, true);
  ModelPass<float>(m, r).forward(model_weights<float>(m), tokens.data(), tokens.size(), logits,
                                 inputs);
  ASSERT_EQ(logits.size(), want.size());
  EXPECT_LT(test::max_relative_difference(want, logits), 1e-4);
  EXPECT_GT(test::max_relative_difference(plain, logits), 1e-2) << "per token rounds otherwise";
}

// The ranges follow the inputs' maxima as a moving average: from ranges 50 times too large,
// 12 steps at momentum 0.5 bring them within a few percent of a fresh run's; without static
// ranges the trained model keeps none.
TEST(Distill, StaticRangesFollowTheInputsMaxima) {
  const Model m = small_model("llama", false);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o = short_run(12);
  o.lr = 1e-6;  // the weights stay put: the ranges alone move
  o.rounding.act_bits = 8, o.rounding.static_ranges = true;
  o.range_momentum = 0.5;
  const Model fresh = distill(m, m, tokens, o);
  ASSERT_EQ(fresh.config.act_ranges.size(), 2u * kActRangeSites);
  Model wide = m;
  for (float v : fresh.config.act_ranges) wide.config.act_ranges.push_back(50 * v);
  const Model followed = distill(wide, m, tokens, o);
  for (size_t i = 0; i < fresh.config.act_ranges.size(); ++i) {
    const float a = fresh.config.act_ranges[i], b = followed.config.act_ranges[i];
    EXPECT_NEAR(b, a, 0.05 * a) << i;  // 50·0.5^12 ≈ 0.012 of the start is left
  }
  o.rounding.static_ranges = false;
  EXPECT_TRUE(distill(wide, m, tokens, o).config.act_ranges.empty());
  o.rounding.static_ranges = true, o.range_momentum = 1;
  EXPECT_NE(test::expect_error([&] { distill(m, m, tokens, o); }).find("range momentum 1"),
            std::string::npos);
}

// Trained for 4-bit activations, the model's loss with them falls.
TEST(Distill, TrainingForRoundedActivationsLowersTheirLoss) {
  const Model m = small_model("llama", false);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o = short_run(40);
  o.rounding.act_bits = 4;
  const Model trained = distill(m, m, tokens, o);
  const auto windows = sample_windows(tokens, 16, 32, o.seed, m.vocab.bos);
  auto loss_of = [&](const Model& weights) {
    return mean_kd(m, ModelPass<float>(m, o.rounding), model_weights<float>(weights), windows);
  };
  const double start = loss_of(m), end = loss_of(trained);
  EXPECT_LT(end, 0.7 * start) << start << " -> " << end;
}

TEST(Distill, ATeacherWithAnotherVocabularyIsNamed) {
  Model teacher = small_model("llama", false);
  ModelConfig c = teacher.config;
  c.n_vocab = 80;
  const Model other = make_synthetic_model(c, Vocab{}, 3, DType::F32, 0.3f);
  DistillOptions o;
  o.steps = 1;
  const std::string err =
      test::expect_error([&] { distill(teacher, other, random_tokens(100, 64, 1), o); });
  EXPECT_NE(err.find("80 tokens"), std::string::npos) << err;
  EXPECT_NE(err.find("has 64"), std::string::npos) << err;
}

// Stopped after step 5 of 8 (a checkpoint every 3 steps, and one when stopped), then
// resumed: the weights and losses of an uninterrupted run, bit for bit; the checkpoint
// goes when the run is done, and another run's checkpoint is refused.
TEST(Distill, AStoppedRunResumesToTheSameWeights) {
  test::TempDir dir;
  const Model teacher = small_model("llama", false, 5);
  const Model student = noisy_student(teacher, 9);
  const auto tokens = random_tokens(4000, 64, 3);
  DistillOptions o = short_run(8);
  o.quantize_to = every_linear_in(DType::Q4_0);  // QAT: the rounded weights run
  o.rounding.act_bits = 8, o.rounding.static_ranges = true;  // ... on inputs of tracked ranges
  DistillReport whole;
  const Model uninterrupted = distill(student, teacher, tokens, o, &whole);
  ModelWeights<float> expected = model_weights<float>(uninterrupted);

  o.checkpoint = dir.file("ck/distill.bin");
  o.checkpoint_every = 3;
  o.on_step = [](int step, int, double) { return step < 5; };
  const std::string stopped = test::expect_error([&] { distill(student, teacher, tokens, o); });
  EXPECT_NE(stopped.find("--resume"), std::string::npos) << stopped;
  ASSERT_TRUE(std::filesystem::exists(o.checkpoint));

  DistillOptions other = o;
  other.resume = true;
  other.seed = 2;  // other windows: another run
  const std::string refused = test::expect_error([&] { distill(student, teacher, tokens, other); });
  EXPECT_NE(refused.find("another run"), std::string::npos) << refused;

  o.on_step = nullptr;
  o.resume = true;
  DistillReport resumed;
  const Model resumed_model = distill(student, teacher, tokens, o, &resumed);
  EXPECT_EQ(resumed_model.config.act_ranges, uninterrupted.config.act_ranges);
  ModelWeights<float> got = model_weights<float>(resumed_model);
  const auto a = expected.tensors(), b = got.tensors();
  ASSERT_EQ(a.size(), b.size());
  for (size_t k = 0; k < a.size(); ++k) EXPECT_EQ(*a[k], *b[k]) << "tensor " << k;
  EXPECT_EQ(resumed.losses, whole.losses);
  EXPECT_FALSE(std::filesystem::exists(dir.file("ck")));
}

// A loss that stops being finite keeps the state before the bad step, and the message
// names where.
TEST(Distill, ADivergingRunKeepsItsLastGoodStep) {
  test::TempDir dir;
  const Model teacher = small_model("llama", false, 5);
  ModelWeights<float> w = model_weights<float>(teacher);
  w.blocks[0].wq[3] = std::numeric_limits<float>::quiet_NaN();
  const Model broken = with_weights(teacher, w);
  DistillOptions o;
  o.steps = 4;
  o.n_ctx = 32;
  o.n_windows = 4;
  o.checkpoint = dir.file("distill.bin");
  const std::string err =
      test::expect_error([&] { distill(broken, teacher, random_tokens(1000, 64, 3), o); });
  EXPECT_NE(err.find("diverged at step 1"), std::string::npos) << err;
  EXPECT_NE(err.find(o.checkpoint), std::string::npos) << err;
  EXPECT_TRUE(std::filesystem::exists(o.checkpoint));
}

// The held-out score (the last tenth of the text, never trained on) falls as the student
// learns, and goes into the loss curve as a third column and a second line.
TEST(Distill, AHeldOutScoreFallsAsTheStudentLearns) {
  test::TempDir dir;
  const Model teacher = small_model("llama", false, 5);
  DistillOptions o = short_run(40);
  o.eval_every = 10;
  o.loss_curve = dir.file("loss.csv");
  DistillReport rep;
  distill(noisy_student(teacher, 9), teacher, random_tokens(4000, 64, 3), o, &rep);
  ASSERT_EQ(rep.held_out.size(), 5u);  // before the first step, then every 10
  EXPECT_EQ(rep.held_out.front().first, 0);
  EXPECT_EQ(rep.held_out.back().first, 40);
  EXPECT_LT(rep.held_out.back().second, 0.85 * rep.held_out.front().second);
  const std::string csv = test::read_file(o.loss_curve);
  EXPECT_EQ(csv.rfind("step,loss,held_out\n0,,", 0), 0u) << csv;
  EXPECT_NE(csv.find(fmt::format("\n10,{},{}\n", rep.losses[9], rep.held_out[1].second)),
            std::string::npos)
      << csv;
  EXPECT_NE(test::read_file(dir.file("loss.svg")).find("held out"), std::string::npos);

  o.eval_every = 1;  // a text whose last tenth is shorter than a window is named
  const std::string err = test::expect_error(
      [&] { distill(noisy_student(teacher, 9), teacher, random_tokens(200, 64, 3), o); });
  EXPECT_NE(err.find("last tenth of the text (20 tokens)"), std::string::npos) << err;
}

// The loss curve: one CSV row per step and an SVG line with one point per step.
TEST(Distill, WritesTheLossCurveAsCsvAndSvg) {
  test::TempDir dir;
  const Model teacher = small_model("llama", false, 5);
  DistillOptions o;
  o.steps = 5;
  o.n_ctx = 32;
  o.n_windows = 8;
  o.loss_curve = dir.file("loss.csv");
  DistillReport rep;
  distill(noisy_student(teacher, 9), teacher, random_tokens(2000, 64, 3), o, &rep);
  const std::string csv = test::read_file(o.loss_curve);
  EXPECT_EQ(csv.rfind("step,loss\n1,", 0), 0u) << csv;
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 6);
  EXPECT_NE(csv.find(fmt::format("5,{}\n", rep.losses[4])), std::string::npos) << csv;
  const std::string svg = test::read_file(dir.file("loss.svg"));
  const size_t points = svg.find("points=\"");
  ASSERT_NE(points, std::string::npos) << svg;
  const std::string line = svg.substr(points, svg.find('"', points + 8) - points);
  EXPECT_EQ(std::count(line.begin(), line.end(), ','), 5) << line;
}

// `quantize --method qat`: the label names the training, the file holds the planned types,
// and a job without calibration text is refused before any output.
TEST(QatCli, TrainsThenWritesThePlannedTypes) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m"), out = dir.file("q.gguf");
  const std::string text = test::shared_path("data/calibration/calib-en-1mb.txt");
  auto r = test::run_cli({"quantize",
                          model,
                          "-o",
                          out,
                          "--type",
                          "Q4_0",
                          "--method",
                          "qat",
                          "--calib",
                          text,
                          "--calib-samples",
                          "4",
                          "--calib-ctx",
                          "64",
                          "--distill-steps",
                          "3",
                          "--qat-start",
                          "rtn",
                          "--act-bits",
                          "8",
                          "--cache-type-v",
                          "q8_0",
                          "--distill-ce",
                          "0.5",
                          "--act-ranges",
                          "static",
                          "-q",
                          "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string label = nlohmann::json::parse(r.out).at("method").get<std::string>();
  EXPECT_EQ(label.rfind("qat start=rtn steps=3", 0), 0u) << label;
  EXPECT_NE(label.find(" ce=0.5 act-bits=8 act-ranges=static cache-type-v=q8_0"), std::string::npos)
      << label;
  const Model written = load_model(out);
  EXPECT_EQ(written.tensor("blk.2.ffn_up.weight").dtype, DType::Q4_0);
  EXPECT_EQ(written.config.act_ranges.size(), kActRangeSites * written.config.n_layer);
  const auto bad = test::run_cli(
      {"quantize", model, "-o", dir.file("bad.gguf"), "--type", "Q4_0", "--method", "qat"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("calibration text"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
  const auto start = test::run_cli({"quantize", model, "-o", dir.file("bad.gguf"), "--type", "Q4_0",
                                    "--method", "qat", "--calib", text, "--qat-start", "awq"});
  EXPECT_EQ(start.exit_code, 1);
  EXPECT_NE(start.err.find("awq not in {adaquant,adaround,autoround,gptq,rtn}"), std::string::npos)
      << start.err;
  const auto acts = test::run_cli({"quantize", model, "-o", dir.file("bad.gguf"), "--type", "Q4_0",
                                   "--method", "gptq", "--calib", text, "--act-bits", "4"});
  EXPECT_EQ(acts.exit_code, 1);
  EXPECT_NE(acts.err.find("are trained for by --method qat"), std::string::npos) << acts.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
}

// The default schedule's two phases: adaquant block by block (2 steps per block here), then
// the whole model from its file; the start's file goes with the checkpoint at the end.
TEST(QatCli, StartsFromTheBlockWiseMethodsFile) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m"), out = dir.file("q.gguf");
  const std::string text = test::shared_path("data/calibration/calib-en-1mb.txt");
  auto r = test::run_cli({"quantize",    model,   "-o",      out,  "--type",          "Q4_0",
                          "--method",    "qat",   "--calib", text, "--calib-samples", "4",
                          "--calib-ctx", "64",    "--steps", "2",  "--distill-steps", "2",
                          "-q",          "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("method").get<std::string>().rfind(
                "qat start=adaquant steps=2", 0),
            0u)
      << r.out;
  EXPECT_EQ(load_model(out).tensor("blk.0.ffn_down.weight").dtype, DType::Q4_0);
  EXPECT_FALSE(std::filesystem::exists(out + ".lowbit-checkpoint"));
}

// Training onto the affine layout: the file written from the trained weights holds exactly
// the values the last step ran (the writer rounds as fake_quantize does), in lowbit's and
// GPTQ's layouts.
TEST(Distill, AffineTrainingWritesTheGridItRan) {
  test::TempDir dir;
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens = random_tokens(2000, m.config.n_vocab, 4);
  DistillOptions o;
  o.steps = 2, o.n_ctx = 32, o.n_windows = 2, o.lr = 1e-3;
  for (const auto& [spec, format] : {std::pair{AffineSpec{4, 64, true}, AffineFormat::Lowbit},
                                     std::pair{AffineSpec{3, 128, false}, AffineFormat::Gptq}}) {
    SCOPED_TRACE(spec.describe());
    o.affine_to.clear();
    for (const TensorView& t : m.tensors)
      if (t.name.rfind("blk.", 0) == 0 && t.shape.size() == 2) o.affine_to[t.name] = spec;
    const Model trained = distill(m, m, tokens, o);
    ModelWeights<float> ran;
    fake_quantize(trained, {}, model_weights<float>(trained), ran, 2, o.affine_to);
    AffineWriteOptions w;
    w.format = format;
    const std::string out = dir.file(affine_format_name(format));
    write_affine_model(trained, out, spec, w);
    const ModelWeights<float> written = model_weights<float>(load_model(out));
    const ModelWeights<float> start = model_weights<float>(m);
    for (size_t l = 0; l < ran.blocks.size(); ++l)
      for (int i = 0; i < 7; ++i) {
        auto& a = *const_cast<BlockWeights<float>&>(written.blocks[l]).linear(i);
        ASSERT_EQ(a, *ran.blocks[l].linear(i)) << "block " << l << " " << kLinearNames[i];
        EXPECT_NE(a, *const_cast<BlockWeights<float>&>(start.blocks[l]).linear(i));
      }
  }
  o.train_scales = true;
  EXPECT_NE(test::expect_error([&] { distill(m, m, tokens, o); }).find("not the affine layout"),
            std::string::npos);
}

// `--method qat --type int4`: GPTQ's file, then training; scales and a teacher are refused.
TEST(QatCli, TrainsOntoTheAffineLayout) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string text = test::shared_path("data/calibration/calib-en-1mb.txt");
  const std::vector<std::string> args = {
      "quantize", model, "--type",      "int4", "--group",         "64", "--method",        "qat",
      "--calib",  text,  "--calib-ctx", "64",   "--calib-samples", "4",  "--distill-steps", "2"};
  auto with = [&](std::vector<std::string> tail) {
    std::vector<std::string> a = args;
    a.insert(a.end(), tail.begin(), tail.end());
    return test::run_cli(a);
  };
  const auto r = with({"-o", dir.file("int4"), "-q", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string label = nlohmann::json::parse(r.out).at("method").get<std::string>();
  EXPECT_EQ(label.rfind("qat start=gptq steps=2", 0), 0u) << label;
  EXPECT_FALSE(std::filesystem::exists(dir.file("int4.lowbit-checkpoint")));
  const Model q = load_model(dir.file("int4"));
  EXPECT_EQ(q.affine_weights.at("blk.1.ffn_down.weight")->spec.bits, 4);
  const auto scales = with({"-o", dir.file("bad"), "--qat-train", "scales"});
  EXPECT_EQ(scales.exit_code, 1);
  EXPECT_NE(scales.err.find("for the affine layout qat trains the weights"), std::string::npos)
      << scales.err;
  const auto teacher = with({"-o", dir.file("bad"), "--teacher", model});
  EXPECT_EQ(teacher.exit_code, 1);
  EXPECT_NE(teacher.err.find("drop --teacher"), std::string::npos) << teacher.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad")));
}

// `--teacher`: training may start from a quantized file (here plain Q4_0) and learn from the
// unquantized model; a teacher of another network is named with the student.
TEST(QatCli, StartsFromAQuantizedFileWithTheUnquantizedTeacher) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string text = test::shared_path("data/calibration/calib-en-1mb.txt");
  const std::string start = dir.file("start.gguf"), out = dir.file("q.gguf");
  ASSERT_EQ(test::run_cli({"quantize", model, "-o", start, "--type", "Q4_0", "-q"}).exit_code, 0);
  const std::vector<std::string> qat = {
      "--type",      "Q4_0", "--method",        "qat", "--calib", text, "--calib-samples", "4",
      "--calib-ctx", "64",   "--distill-steps", "2",   "-q"};
  auto args = [&](std::vector<std::string> head) {
    head.insert(head.end(), qat.begin(), qat.end());
    return head;
  };
  auto r = test::run_cli(args({"quantize", start, "-o", out, "--teacher", model}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(load_model(out).tensor("blk.0.attn_q.weight").dtype, DType::Q4_0);
  // Trained scales keep the start's codes: only each block's d (its first two bytes) moves.
  const std::string scales = dir.file("scales.gguf");
  r = test::run_cli(args({"quantize", start, "-o", scales, "--teacher", model, "--qat-train",
                          "scales", "--distill-lr", "1e-2"}));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model a = load_model(start), b = load_model(scales);
  const TensorView &ta = a.tensor("blk.1.ffn_up.weight"), &tb = b.tensor("blk.1.ffn_up.weight");
  ASSERT_EQ(tb.dtype, DType::Q4_0);
  ASSERT_EQ(ta.nbytes, tb.nbytes);
  size_t moved = 0;
  for (size_t i = 0; i < ta.nbytes; ++i) {
    if (i % 18 >= 2) {
      ASSERT_EQ(ta.data[i], tb.data[i]) << "byte " << i;
    }
    moved += ta.data[i] != tb.data[i];
  }
  EXPECT_GT(moved, 0u);

  const std::string other = test::shared_path("models/stories260K/stories260K.bin");
  const auto bad =
      test::run_cli(args({"quantize", model, "-o", dir.file("bad.gguf"), "--teacher", other}));
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("is not the network of the student"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("stories260K"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
}

}  // namespace
}  // namespace lowbit::train

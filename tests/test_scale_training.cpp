// Quantization-aware training of the block scales (train/scale_training.h): the gradient of
// the f16 fields against differences, the bytes it keeps, and a run that learns them.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "lowbit/distill.h"
#include "lowbit/quant.h"
#include "lowbit/synthetic.h"
#include "quant/block_layouts.h"
#include "test_support.h"
#include "train/scale_training.h"

namespace lowbit::train {
namespace {

std::vector<float> gaussian(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d;
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

std::vector<uint8_t> quantized(DType t, const std::vector<float>& x, size_t row_len) {
  uint64_t n = 0;
  EXPECT_TRUE(tensor_bytes(t, row_len, x.size(), &n));
  std::vector<uint8_t> q(n);
  quantize_rows(t, x.data(), x.size() / row_len, row_len, nullptr, q.data());
  return q;
}

// L(θ) = Σ probe ⊙ decode(θ): backward() against central differences, for a type with one
// field (Q6_K), with d and dmin (Q2_K) and with d and m (Q4_1).
TEST(ScaleTraining, FieldGradientsMatchDifferences) {
  for (DType t : {DType::Q6_K, DType::Q2_K, DType::Q4_1}) {
    SCOPED_TRACE(dtype_name(t));
    const size_t n = 1024;
    const auto x = gaussian(n, 1), probe = gaussian(n, 2);
    TrainedScales s("w", t, quantized(t, x, 512), n);
    std::vector<float> w, dtheta;
    auto loss = [&] {
      s.decode(w);
      double l = 0;
      for (size_t i = 0; i < n; ++i) l += double(probe[i]) * w[i];
      return l;
    };
    s.backward(probe, dtheta);
    ASSERT_EQ(dtheta.size(), s.theta().size());
    // The fields are rounded to f16 in the pass: a step of 10% keeps that below 1%.
    const float h = 0.1f;
    for (size_t k = 0; k < dtheta.size(); k += std::max<size_t>(1, dtheta.size() / 7)) {
      s.theta()[k] = h;
      const double up = loss();
      s.theta()[k] = -h;
      const double down = loss();
      s.theta()[k] = 0;
      const double fd = (up - down) / (2 * h);
      EXPECT_NEAR(dtheta[k], fd, 0.01 * std::fabs(fd) + 1e-4) << "field " << k;
    }
  }
}

TEST(ScaleTraining, UntrainedFieldsKeepTheBytesAndTrainedOnesOnlyTheirFields) {
  const size_t n = 2048;
  const auto q = quantized(DType::Q4_K, gaussian(n, 3), 1024);
  TrainedScales s("w", DType::Q4_K, q, n);
  EXPECT_EQ(s.bytes(), q);
  std::vector<float> w, want(n);
  s.decode(w);
  dequantize_values(DType::Q4_K, q.data(), n, want.data());
  EXPECT_EQ(w, want);
  for (float& v : s.theta()) v = 0.25f;
  const std::vector<uint8_t> moved = s.bytes();
  const std::vector<size_t> fields = quant::f16_scale_offsets(DType::Q4_K);
  const size_t block = traits(DType::Q4_K).type_size;
  size_t changed = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    const size_t at = i % block;
    const bool in_field =
        std::any_of(fields.begin(), fields.end(), [&](size_t f) { return at == f || at == f + 1; });
    if (!in_field) {
      EXPECT_EQ(moved[i], q[i]) << "byte " << i;
    }
    changed += moved[i] != q[i];
  }
  EXPECT_GT(changed, 0u);
  EXPECT_NE(test::expect_error([&] {
              TrainedScales("blk.0.attn_q.weight", DType::F16, {}, 32);
            }).find("blk.0.attn_q.weight"),
            std::string::npos);
}

// A run on a small model: the loss falls, and the model it returns holds the linears in their
// types with the start's codes.
TEST(ScaleTraining, DistillationLearnsTheScalesOnly) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = 64, c.n_embd = 256, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 4, c.head_dim = 64,
  c.n_ff = 256, c.n_ctx = 32;
  const Model m = make_synthetic_model(c, Vocab{}, 5, DType::F32, 0.3f);
  DistillOptions o;
  o.steps = 40, o.n_ctx = 32, o.n_windows = 16, o.lr = 1e-2, o.train_scales = true;
  for (int l = 0; l < 2; ++l)
    for (const char* lin : kLinearNames)
      o.quantize_to["blk." + std::to_string(l) + "." + lin + ".weight"] = DType::Q2_K;
  std::mt19937 rng(3);
  std::vector<int32_t> tokens(4000);
  for (int32_t& t : tokens) t = int32_t(rng() % 64);
  DistillReport rep;
  const Model trained = distill(m, m, tokens, o, &rep);
  const double first = (rep.losses[0] + rep.losses[1]) / 2,
               last = (rep.losses[38] + rep.losses[39]) / 2;
  EXPECT_LT(last, 0.8 * first) << first << " -> " << last;
  const TensorView& t = trained.tensor("blk.1.ffn_up.weight");
  ASSERT_EQ(t.dtype, DType::Q2_K);
  const std::vector<float> w = to_f32(m.tensor("blk.1.ffn_up.weight"));
  const std::vector<uint8_t> start = quantized(DType::Q2_K, w, c.n_embd);
  const size_t block = traits(DType::Q2_K).type_size;
  for (size_t i = 0; i < start.size(); ++i)
    if (i % block < offsetof(quant::BlockQ2_K, d)) {
      ASSERT_EQ(t.data[i], start[i]) << "byte " << i;
    }
}

}  // namespace
}  // namespace lowbit::train

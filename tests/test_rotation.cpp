// Rotations (lowbit/rotation.h): the matrices are orthogonal, and a rotated model computes
// the same logits as the original in fp32 while its weights changed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/job.h"
#include "lowbit/kernels.h"
#include "lowbit/quant.h"
#include "lowbit/rotation.h"
#include "lowbit/synthetic.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;

// max |A·Aᵀ - scale·I| over the entries, A n × n row-major.
double gram_error(const std::vector<float>& a, uint32_t n, double scale) {
  double worst = 0;
  for (uint32_t i = 0; i < n; ++i)
    for (uint32_t j = 0; j < n; ++j) {
      double dot = 0;
      for (uint32_t k = 0; k < n; ++k) dot += double{a[i * n + k]} * a[j * n + k];
      worst = std::max(worst, std::fabs(dot - (i == j ? scale : 0.0)));
    }
  return worst;
}

std::vector<float> values(const Model& m, const std::string& name) {
  const TensorView& t = m.tensor(name);
  std::vector<float> v(t.n_values());
  dequantize_values(t.dtype, t.data, v.size(), v.data());
  return v;
}

std::vector<float> logits(const Model& m, const std::vector<int32_t>& tokens) {
  Engine e(m, {2, static_cast<uint32_t>(tokens.size())});
  std::vector<float> out;
  e.eval(tokens.data(), tokens.size(), out, true);
  return out;
}

std::vector<int32_t> some_tokens(uint32_t vocab, size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = 3 + static_cast<int32_t>((i * 7919 + 13) % (vocab - 3));
  return t;
}

TEST(Rotation, HadamardMatricesAreOrthogonalForEveryConstruction) {
  // powers of two, Paley I (12 = 11+1, 20, 44 = 43+1), Paley II (28 = 2·14 with q = 13),
  // and products of both with powers of two (768 = 12·64, tinyllm's n_ff; 14336 = 28·512)
  for (uint32_t n : {1u, 2u, 4u, 12u, 20u, 28u, 44u, 64u, 96u, 256u, 768u}) {
    SCOPED_TRACE(n);
    ASSERT_TRUE(has_hadamard(n));
    const auto h = hadamard_matrix(n);
    for (float x : h) ASSERT_TRUE(x == 1.0f || x == -1.0f);
    EXPECT_EQ(gram_error(h, n, n), 0.0);
  }
  EXPECT_TRUE(has_hadamard(14336));
  for (uint32_t n : {0u, 3u, 6u, 172u, 11008u}) {  // 11008 = 2^8·43: only m = 5504 > 256
    EXPECT_FALSE(has_hadamard(n)) << n;
    if (n) {
      EXPECT_NE(test::expect_error([&] { hadamard_matrix(n); }).find("order"), std::string::npos);
    }
  }
}

// The fast transform is the matrix product x ← H x / √n; every instruction set gives the
// scalar reference's values bit for bit (same additions, same order).
TEST(Rotation, HadamardTransformIsTheMatrixOnEveryInstructionSet) {
  for (uint32_t n : {1u, 2u, 8u, 12u, 20u, 28u, 64u, 96u, 112u, 256u, 768u}) {
    SCOPED_TRACE(n);
    const size_t rows = 3;
    const auto x = test::gaussian(rows * n, n);
    const auto h = hadamard_matrix(n);
    auto ref = x;
    kernels::hadamard_rows_reference(ref.data(), rows, n);
    for (size_t r = 0; r < rows; ++r)
      for (uint32_t i = 0; i < n; ++i) {
        double want = 0;
        for (uint32_t j = 0; j < n; ++j) want += double{h[i * n + j]} * x[r * n + j];
        ASSERT_NEAR(ref[r * n + i], want / std::sqrt(static_cast<double>(n)), 1e-5)
            << r << " " << i;
      }
    for (int64_t isa : kernels::available_isas()) {
      kernels::restrict_isa(isa);
      SCOPED_TRACE(kernels::isa_name(isa));
      auto y = x;
      kernels::hadamard_rows(y.data(), rows, n);
      EXPECT_EQ(y, ref);
    }
    kernels::restrict_isa(0);
  }
  std::vector<float> x(22);
  EXPECT_NE(test::expect_error([&] { kernels::hadamard_rows(x.data(), 1, 22); }).find("order 22"),
            std::string::npos);
}

TEST(Rotation, OrthogonalMatricesAreOrthonormalAndSeeded) {
  for (RotationKind k : {RotationKind::Hadamard, RotationKind::Random})
    for (uint32_t n : {12u, 64u, 96u}) {
      SCOPED_TRACE(std::string(rotation_name(k)) + " " + std::to_string(n));
      const auto q = orthogonal_matrix(k, n, 3);
      EXPECT_LT(gram_error(q, n, 1.0), 1e-5);
      EXPECT_EQ(q, orthogonal_matrix(k, n, 3));
      EXPECT_NE(q, orthogonal_matrix(k, n, 4));
    }
  // Haar: the first entry is positive about as often as negative (Stewart's sign step).
  int positive = 0;
  for (uint64_t seed = 0; seed < 200; ++seed)
    positive += orthogonal_matrix(RotationKind::Random, 4, seed)[0] > 0;
  EXPECT_GT(positive, 60);
  EXPECT_LT(positive, 140);
  EXPECT_EQ(rotation_from_name("hadamard"), RotationKind::Hadamard);
  EXPECT_FALSE(rotation_from_name("walsh").has_value());
}

// tinyllm-8m-outliers is the case rotations are for: its logits stay, its weights change.
TEST(Rotation, RotatedTinyllmComputesTheSameLogits) {
  const Model m = load_model(shared_path("models/tinyllm-8m-outliers"));
  const auto tokens = some_tokens(m.config.n_vocab, 48);
  const auto base = logits(m, tokens);
  const Model folded = fold_norms(m);
  for (float g : values(folded, "blk.3.ffn_norm.weight")) ASSERT_EQ(g, 1.0f);
  EXPECT_LT(test::max_relative_difference(base, logits(folded, tokens)), 1e-5);
  for (RotationKind k : {RotationKind::Hadamard, RotationKind::Random}) {
    SCOPED_TRACE(rotation_name(k));
    RotationOptions o;
    o.kind = k;
    const Model r = rotate_model(m, o);
    EXPECT_LT(test::max_relative_difference(base, logits(r, tokens)), 1e-4);
    EXPECT_GT(test::max_relative_difference(values(m, "token_embd.weight"),
                                            values(r, "token_embd.weight")),
              0.5);
    EXPECT_GT(test::max_relative_difference(values(m, "blk.0.attn_v.weight"),
                                            values(r, "blk.0.attn_v.weight")),
              0.5);
  }
}

// The architecture variants: q/k/v bias with a tied head (Qwen2: the head is untied), per-head
// q/k norms with head_dim ≠ n_embd / n_head (Qwen3).
TEST(Rotation, RotatedArchitectureVariantsComputeTheSameLogits) {
  const Vocab v = read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model"));
  for (const char* arch : {"qwen2", "qwen3"}) {
    SCOPED_TRACE(arch);
    ModelConfig c;
    c.arch = arch;
    c.n_vocab = 4096, c.n_embd = 96, c.n_layer = 2, c.n_head = 4, c.n_head_kv = 2;
    c.n_ff = 160, c.head_dim = 32, c.n_ctx = 64, c.rope_theta = 1e6f;
    c.attn_bias = c.tied_embeddings = std::string(arch) == "qwen2";
    if (!c.attn_bias) c.qk_norm = true, c.head_dim = 48;
    const Model m = make_synthetic_model(c, v, 7, DType::F32, 0.25f);
    const auto tokens = some_tokens(c.n_vocab, 32);
    const auto base = logits(m, tokens);
    for (RotationKind k : {RotationKind::Hadamard, RotationKind::Random}) {
      SCOPED_TRACE(rotation_name(k));
      RotationOptions o;
      o.kind = k;
      const Model r = rotate_model(m, o);
      EXPECT_FALSE(r.config.tied_embeddings);
      EXPECT_LT(test::max_relative_difference(base, logits(r, tokens)), 1e-4);
    }
  }
}

// The online rotation: ffn_down's rows transformed in the file, its input in the engine. It
// survives a GGUF round trip (lowbit.rotation.ffn_down) and a Hugging Face checkpoint,
// which cannot carry it, is refused.
TEST(Rotation, OnlineFfnDownRotationComputesTheSameLogitsAndTravelsInGguf) {
  test::TempDir dir;
  const Model m = load_model(shared_path("models/tinyllm-8m-outliers"));
  const auto tokens = some_tokens(m.config.n_vocab, 32);
  const auto base = logits(m, tokens);
  for (RotationKind k : {RotationKind::None, RotationKind::Hadamard}) {
    SCOPED_TRACE(rotation_name(k));
    RotationOptions o;
    o.kind = k;
    o.ffn_down = true;
    const Model r = rotate_model(m, o);
    EXPECT_TRUE(r.config.ffn_down_hadamard);
    EXPECT_GT(test::max_relative_difference(values(m, "blk.2.ffn_down.weight"),
                                            values(r, "blk.2.ffn_down.weight")),
              0.5);
    EXPECT_LT(test::max_relative_difference(base, logits(r, tokens)), 1e-4);
    const std::string path = dir.file(std::string(rotation_name(k)) + ".gguf");
    write_model_gguf(r, path, DType::F32);
    const Model g = load_model(path);
    EXPECT_TRUE(g.config.ffn_down_hadamard);
    EXPECT_LT(test::max_relative_difference(base, logits(g, tokens)), 1e-4);
    const std::string e = test::expect_error(
        [&] { write_model_safetensors(g, dir.file("m.safetensors"), DType::F32); });
    EXPECT_NE(e.find("online rotation"), std::string::npos) << e;
    EXPECT_NE(test::expect_error([&] { rotate_model(g, o); }).find("already"), std::string::npos);
    // A method that cannot follow the transform is refused for a file that carries it.
    QuantizeJob j;
    j.model = path, j.output = dir.file("awq.gguf"), j.method.kind = Method::Awq;
    j.calib.text = shared_path("data/calibration/calib-en-1mb.txt");
    EXPECT_NE(test::expect_error([&] { run_quantize_job(j); }).find("method awq does not support"),
              std::string::npos);
    EXPECT_FALSE(std::filesystem::exists(j.output));
  }
  // The fast path splits the transforms over its threads: the same values at 1 and 2 threads.
  RotationOptions o;
  o.ffn_down = true;
  const Model r = rotate_model(m, o);
  auto fast = [&](int threads) {
    EngineOptions eo;
    eo.fast = true, eo.n_threads = threads, eo.rounding.rotate_kv = true, eo.n_ctx = 32;
    Engine e(r, eo);
    std::vector<float> out;
    e.eval(tokens.data(), tokens.size(), out, true);
    return out;
  };
  const auto one = fast(1);
  EXPECT_EQ(one, fast(2));
  EXPECT_LT(test::max_relative_difference(base, one), 2e-2);
}

// A file that claims the online rotation for an n_ff without a Hadamard transform.
TEST(Rotation, OnlineRotationOfAnImpossibleSizeIsRefusedNamingTheKey) {
  test::TempDir dir;
  const Vocab v = read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model"));
  ModelConfig c;
  c.n_vocab = 4096, c.n_embd = 64, c.n_layer = 1, c.n_head = 2, c.n_head_kv = 2;
  c.n_ff = 52, c.head_dim = 32, c.n_ctx = 32;  // 52 = 4·13: no Hadamard matrix
  Model m = make_synthetic_model(c, v, 7);
  m.config.ffn_down_hadamard = true;
  write_model_gguf(m, dir.file("m.gguf"), DType::F32);
  const std::string e = test::expect_error([&] { load_model(dir.file("m.gguf")); });
  EXPECT_NE(e.find("lowbit.rotation.ffn_down"), std::string::npos) << e;
  EXPECT_NE(e.find("52"), std::string::npos) << e;
}

TEST(ActivationRounding, ValuesLandOnTheGridWithinHalfAStep) {
  const size_t cols = 96;
  auto x = test::gaussian(2 * cols, 3);
  x[5] = 40.0f;                                // an outlier sets row 0's scale
  std::fill(x.begin() + cols, x.end(), 0.0f);  // row 1: zeros stay
  for (int bits : {2, 4, 8})
    for (float clip : {1.0f, 0.5f}) {
      SCOPED_TRACE(std::to_string(bits) + " bits, clip " + std::to_string(clip));
      auto y = x;
      kernels::round_acts_per_token(y.data(), 2, cols, bits, clip);
      const float q = static_cast<float>((1 << (bits - 1)) - 1), s = clip * 40.0f / q;
      for (size_t i = 0; i < cols; ++i) {
        const float k = y[i] / s;
        EXPECT_NEAR(k, std::nearbyint(k), 1e-4) << i;  // on the grid
        EXPECT_LE(std::fabs(k), q + 1e-4f);
        if (std::fabs(x[i]) <= clip * 40.0f) {
          EXPECT_LE(std::fabs(y[i] - x[i]), s / 2 + 1e-5f) << i;
        }
      }
      for (size_t i = cols; i < 2 * cols; ++i) EXPECT_EQ(y[i], 0.0f);
    }
}

// One static range rounds every value with one step: a row's own max gives per-token rounding.
TEST(ActivationRounding, AStaticRangeIsOneStepForEveryValue) {
  const size_t cols = 64;
  auto x = test::gaussian(2 * cols, 4);
  float amax = 0;
  for (size_t i = 0; i < cols; ++i) amax = std::max(amax, std::fabs(x[i]));
  auto per_token = x, fixed = x;
  kernels::round_acts_per_token(per_token.data(), 1, cols, 4, 0.8f);
  kernels::round_acts_to_range(fixed.data(), cols, 4, 0.8f, amax);
  for (size_t i = 0; i < cols; ++i) EXPECT_EQ(fixed[i], per_token[i]) << i;
  fixed = x;
  kernels::round_acts_to_range(fixed.data(), 2 * cols, 4, 1.0f, 0.5f);  // a range below max|x|
  const float step = 0.5f / 7;
  for (size_t i = 0; i < 2 * cols; ++i) {
    EXPECT_NEAR(fixed[i] / step, std::nearbyint(fixed[i] / step), 1e-4) << i;
    EXPECT_LE(std::fabs(fixed[i]), 0.5f + 1e-6f) << i;  // clamped at the range
  }
}

// The ranges travel in the file; a wrong count or a range that is not > 0 names the key, and
// the engine asked for static ranges of a file without them names the file.
TEST(ActivationRounding, StaticRangesTravelInGgufAndBadOnesAreNamed) {
  test::TempDir dir;
  const Vocab v = read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model"));
  ModelConfig c;
  c.n_vocab = 4096, c.n_embd = 64, c.n_layer = 2, c.n_head = 2, c.n_head_kv = 2;
  c.n_ff = 128, c.head_dim = 32, c.n_ctx = 32;
  Model m = make_synthetic_model(c, v, 7);
  EngineOptions o{1, 16};
  o.rounding.act_bits = 8, o.rounding.static_ranges = true;
  const std::string none = test::expect_error([&] { Engine e(m, o); });
  EXPECT_NE(none.find("the model has none"), std::string::npos) << none;
  m.config.act_ranges = {1, 2, 3, 4, 5, 6, 7, 8};
  write_model_gguf(m, dir.file("m.gguf"), DType::F32);
  EXPECT_EQ(load_model(dir.file("m.gguf")).config.act_ranges, m.config.act_ranges);
  m.config.act_ranges.pop_back();
  write_model_gguf(m, dir.file("count.gguf"), DType::F32);
  const std::string count = test::expect_error([&] { load_model(dir.file("count.gguf")); });
  EXPECT_NE(count.find("lowbit.activation_ranges': 7 ranges for 2 blocks"), std::string::npos)
      << count;
  m.config.act_ranges = {1, 2, 3, 4, 5, -6, 7, 8};
  write_model_gguf(m, dir.file("sign.gguf"), DType::F32);
  const std::string sign = test::expect_error([&] { load_model(dir.file("sign.gguf")); });
  EXPECT_NE(sign.find("range 1 of block 1 is -6"), std::string::npos) << sign;
  o.rounding.act_bits = 0;
  const std::string bits = test::expect_error([&] { Engine e(m, o); });
  EXPECT_NE(bits.find("give act-bits too"), std::string::npos) << bits;
}

// The engine's W4A4 study options: rotating q and k keeps the scores, 8-bit activations cost
// little, 4-bit ones on the outlier model much more; the 4- and 5-bit cache types run.
TEST(Rotation, EngineRotatesKvAndRoundsActivations) {
  const Model m = load_model(shared_path("models/tinyllm-8m-outliers"));
  const auto tokens = some_tokens(m.config.n_vocab, 32);
  auto run = [&](EngineOptions o) {
    o.n_threads = 2, o.n_ctx = 32;
    Engine e(m, o);
    std::vector<float> out;
    e.eval(tokens.data(), tokens.size(), out, true);
    return out;
  };
  const auto base = run({});
  EngineOptions kv;
  kv.rounding.rotate_kv = true;
  EXPECT_LT(test::max_relative_difference(base, run(kv)), 1e-4);
  EngineOptions a8, a4;
  a8.rounding.act_bits = 8, a4.rounding.act_bits = 4;
  const double d8 = test::max_relative_difference(base, run(a8));
  const double d4 = test::max_relative_difference(base, run(a4));
  EXPECT_GT(d8, 0.0);
  EXPECT_GT(d4, 4 * d8) << d8;
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::IQ4_NL, DType::Q5_0, DType::Q5_1}) {
    EngineOptions c;
    c.rounding.cache_type_k = c.rounding.cache_type_v = t;
    const double d = test::max_relative_difference(base, run(c));
    EXPECT_GT(d, 0.0) << dtype_name(t);
    EXPECT_LT(d, 0.5) << dtype_name(t);
  }
  EngineOptions bad;
  bad.rounding.act_bits = 1;
  EXPECT_NE(test::expect_error([&] { run(bad); }).find("activation bits 1"), std::string::npos);
  bad.rounding.act_bits = 4, bad.rounding.act_clip = 0;
  EXPECT_NE(test::expect_error([&] { run(bad); }).find("clipping ratio 0"), std::string::npos);
  bad.rounding.act_clip = 1, bad.rounding.cache_type_k = DType::Q2_K;
  EXPECT_NE(test::expect_error([&] { run(bad); }).find("q4_0, q4_1"), std::string::npos);
}

// A rotation unties the head; the int8 checkpoint written from the rotated model must say so
// in its config.json, or a reader ties the head to the rotated embedding again.
TEST(Rotation, RotatedTiedModelsStayUntiedInHuggingFaceCheckpoints) {
  test::TempDir dir;
  Model m = load_model(shared_path("models/tinyllm-8m"));
  m.tensors.erase(std::find_if(m.tensors.begin(), m.tensors.end(),
                               [](const TensorView& t) { return t.name == "output.weight"; }));
  m.index();
  m.config.tied_embeddings = true;
  const std::string src = dir.file("tied");
  std::filesystem::create_directories(src);
  write_model_safetensors(m, src + "/model.safetensors", DType::F32);
  auto cfg = nlohmann::json::parse(test::read_file(shared_path("models/tinyllm-8m/config.json")));
  cfg["tie_word_embeddings"] = true;
  test::write_file(src + "/config.json", cfg.dump());
  std::filesystem::copy_file(shared_path("models/tinyllm-8m/tokenizer.model"),
                             src + "/tokenizer.model");
  const Model tied = load_model(src);
  ASSERT_TRUE(tied.config.tied_embeddings);
  auto r = test::run_cli({"quantize", src, "-o", dir.file("int8"), "--type", "int8", "--group", "0",
                          "--rotate", "hadamard", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model q = load_model(dir.file("int8"));
  EXPECT_FALSE(q.config.tied_embeddings);
  const auto tokens = some_tokens(m.config.n_vocab, 32);
  EXPECT_LT(test::max_relative_difference(logits(tied, tokens), logits(q, tokens)), 0.05);
}

TEST(Rotation, SizesWithoutAHadamardMatrixAskForRandom) {
  const Vocab v = read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model"));
  ModelConfig c;
  // 64 has a Hadamard matrix, 22 = 2·11 none (11 + 1 = 12 is not 22, 22/2 - 1 = 10 not prime)
  c.n_vocab = 4096, c.n_embd = 64, c.n_layer = 1, c.n_head = 2, c.n_head_kv = 2;
  c.n_ff = 96, c.head_dim = 22, c.n_ctx = 32;
  const Model m = make_synthetic_model(c, v, 7);
  RotationOptions o;
  const std::string e = test::expect_error([&] { rotate_model(m, o); });
  EXPECT_NE(e.find("head_dim = 22"), std::string::npos) << e;
  EXPECT_NE(e.find("random"), std::string::npos) << e;
  o.kind = RotationKind::Random;
  EXPECT_LT(test::max_relative_difference(logits(m, some_tokens(4096, 16)),
                                          logits(rotate_model(m, o), some_tokens(4096, 16))),
            1e-4);
}

}  // namespace
}  // namespace lowbit

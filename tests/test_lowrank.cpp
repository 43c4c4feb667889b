// Low-rank branches (SVDQuant, lowbit/lowrank.h): the truncated SVD, the model with its
// branches computing the same function, the branch reading the unrounded input, the GGUF
// extension's round trip and its corrupted forms, and the branch's effect on the outlier
// model.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "lowbit/engine.h"
#include "lowbit/lowrank.h"
#include "lowbit/quantize.h"
#include "test_support.h"

namespace lowbit {
namespace {

const Model& outliers() {
  static const Model m = load_model(test::shared_path("models/tinyllm-8m-outliers"));
  return m;
}

std::vector<int32_t> some_tokens(uint32_t n_vocab, size_t n) {
  std::vector<int32_t> t(n);
  for (size_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((i * 2654435761u + 17) % n_vocab);
  return t;
}

std::vector<float> logits(const Model& m, EngineOptions o = {}) {
  o.n_threads = 2, o.n_ctx = 32;
  Engine e(m, o);
  const auto tokens = some_tokens(m.config.n_vocab, 24);
  std::vector<float> out;
  e.eval(tokens.data(), tokens.size(), out, true);
  return out;
}

TEST(LowRank, SvdRecoversALowRankMatrix) {
  const size_t rows = 96, cols = 64, rank = 5;
  const auto u = test::gaussian(rows * rank, 1), v = test::gaussian(rank * cols, 2);
  std::vector<float> w(rows * cols, 0.0f);
  double norm = 0;
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) {
      for (size_t q = 0; q < rank; ++q)
        w[i * cols + j] += u[i * rank + q] * v[q * cols + j] * (q + 1);
      norm = std::max(norm, double{std::fabs(w[i * cols + j])});
    }
  const LowRankFactors f = lowrank_svd(w.data(), rows, cols, rank);
  ASSERT_EQ(f.rank, rank);
  ASSERT_EQ(f.a.size(), rank * cols);
  ASSERT_EQ(f.b.size(), rows * rank);
  EXPECT_NEAR(f.energy, 1.0, 1e-9);
  for (size_t i = 0; i < rows; ++i)
    for (size_t j = 0; j < cols; ++j) {
      double ba = 0;
      for (size_t q = 0; q < rank; ++q) ba += double{f.b[i * rank + q]} * f.a[q * cols + j];
      ASSERT_NEAR(ba, w[i * cols + j], 2e-3 * norm) << i << ", " << j;  // f16 factors
    }
  for (size_t p = 0; p < rank; ++p)  // a's rows are orthonormal (up to f16)
    for (size_t q = 0; q < rank; ++q) {
      double dot = 0;
      for (size_t j = 0; j < cols; ++j) dot += double{f.a[p * cols + j]} * f.a[q * cols + j];
      EXPECT_NEAR(dot, p == q ? 1.0 : 0.0, 2e-3);
    }
  const LowRankFactors three = lowrank_svd(w.data(), rows, cols, 3);
  EXPECT_LT(three.energy, 0.99);
  EXPECT_GT(three.energy, 0.5);                                  // the largest directions first
  EXPECT_EQ(lowrank_svd(w.data(), rows, cols, 500).rank, cols);  // clipped
}

// fp32: B·A + (W − B·A) is W, so the model with branches computes the same logits, on the
// reference and the fast path.
TEST(LowRank, BranchPlusResidualIsTheModel) {
  const LowRankResult r = add_lowrank(outliers(), {8, ""});
  EXPECT_EQ(r.model.config.lowrank_rank, 8u);
  EXPECT_EQ(r.energy.size(), 7u * outliers().config.n_layer);
  const TensorView& a = r.model.tensor("blk.2.ffn_down.lowrank_a");
  const TensorView& b = r.model.tensor("blk.2.ffn_down.lowrank_b");
  EXPECT_EQ(a.shape, (std::vector<uint64_t>{8, outliers().config.n_ff}));
  EXPECT_EQ(b.shape, (std::vector<uint64_t>{outliers().config.n_embd, 8}));
  for (const auto& [name, energy] : r.energy) EXPECT_TRUE(energy > 0 && energy < 1) << name;
  const auto base = logits(outliers());
  EXPECT_LT(test::max_relative_difference(base, logits(r.model)), 1e-4);
  EngineOptions fast;
  fast.fast = true;
  EXPECT_LT(test::max_relative_difference(base, logits(r.model, fast)), 1e-4);
  // Without the branch the residual alone is a different model.
  Model residual_only = r.model;
  residual_only.tensors.erase(
      std::remove_if(residual_only.tensors.begin(), residual_only.tensors.end(),
                     [](const TensorView& t) { return is_lowrank_tensor(t.name); }),
      residual_only.tensors.end());
  residual_only.index();
  residual_only.config.lowrank_rank = 0;
  EXPECT_GT(test::max_relative_difference(base, logits(residual_only)), 1e-2);
}

// A full-rank branch leaves a residual of f16 rounding only: with 2-bit activations the model
// still gives nearly the fp32 logits, which it could not if the branch read rounded inputs.
TEST(LowRank, BranchReadsTheUnroundedInput) {
  const LowRankResult r = add_lowrank(outliers(), {4096, ""});
  const auto base = logits(outliers());
  EngineOptions a2;
  a2.rounding.act_bits = 2;
  const double with_branch = test::max_relative_difference(base, logits(r.model, a2));
  const double plain = test::max_relative_difference(base, logits(outliers(), a2));
  EXPECT_LT(with_branch, plain / 10) << with_branch << " vs " << plain;
}

// The GGUF extension: factors, key and residual travel (q/k branches under llama's row
// permutation: lowrank_b's rows move with the weight's, lowrank_a's stay).
TEST(LowRank, TravelsInGgufAndTheWritersThatCannotCarryItRefuse) {
  test::TempDir dir;
  const LowRankResult r = add_lowrank(outliers(), {8, "attn_(q|k|v)"});
  EXPECT_EQ(r.energy.size(), 3u * outliers().config.n_layer);
  write_model_gguf(r.model, dir.file("m.gguf"), DType::F32);
  const Model back = load_model(dir.file("m.gguf"));
  EXPECT_EQ(back.config.lowrank_rank, 8u);
  EXPECT_EQ(back.tensor("blk.0.attn_q.lowrank_a").shape,
            r.model.tensor("blk.0.attn_q.lowrank_a").shape);
  EXPECT_LT(test::max_relative_difference(logits(r.model), logits(back)), 1e-5);
  const std::string hf = test::expect_error(
      [&] { write_model_safetensors(r.model, dir.file("m.safetensors"), DType::F32); });
  EXPECT_NE(hf.find("low-rank branches"), std::string::npos) << hf;
  // Quantizing keeps the factors in 16 bits.
  const auto plan = plan_quantization(r.model, plan_for_type_or_preset("Q4_0"));
  for (const TensorPlan& p : plan)
    if (is_lowrank_tensor(p.name)) {
      EXPECT_EQ(p.type, DType::F16) << p.name;
      EXPECT_EQ(p.note, "low-rank branch") << p.name;
    }
}

TEST(LowRank, CorruptedFactorsAreRefusedNamingTheTensorOrKey) {
  test::TempDir dir;
  const LowRankResult r = add_lowrank(outliers(), {4, "blk\\.1\\.ffn_up"});
  auto expect_refused = [&](const Model& m, const char* file, const std::string& message) {
    write_model_gguf(m, dir.file(file), DType::F32);
    const std::string e = test::expect_error([&] { load_model(dir.file(file)); });
    EXPECT_NE(e.find(message), std::string::npos) << e;
  };
  Model no_key = r.model;
  no_key.config.lowrank_rank = 0;
  expect_refused(no_key, "no_key.gguf",
                 "'blk.1.ffn_up.lowrank_a' is a low-rank factor, but the file has no key "
                 "'lowbit.lowrank.rank'");
  Model no_factors = outliers();
  no_factors.config.lowrank_rank = 4;
  expect_refused(no_factors, "no_factors.gguf",
                 "key 'lowbit.lowrank.rank' is 4 but the file has no low-rank factors");
  Model small_key = r.model;
  small_key.config.lowrank_rank = 3;
  expect_refused(small_key, "small_key.gguf",
                 "tensor 'blk.1.ffn_up.lowrank_a': shape [4, 256] does not fit");
  Model shape = r.model;
  std::vector<float> a = to_f32(shape.tensor("blk.1.ffn_up.lowrank_a"));
  shape.reshape_f32("blk.1.ffn_up.lowrank_a", {2, 512}, a);
  expect_refused(shape, "shape.gguf", "'blk.1.ffn_up.lowrank_a': shape [2, 512]");
  Model alone = r.model;
  alone.tensors.erase(
      std::remove_if(alone.tensors.begin(), alone.tensors.end(),
                     [](const TensorView& t) { return t.name == "blk.1.ffn_up.lowrank_b"; }),
      alone.tensors.end());
  alone.index();
  expect_refused(alone, "alone.gguf",
                 "'blk.1.ffn_up.lowrank_a' without its partner 'blk.1.ffn_up.lowrank_b'");
  EXPECT_NE(test::expect_error([&] {
              add_lowrank(r.model, {4, ""});
            }).find("has low-rank branches already"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              add_lowrank(outliers(), {0, ""});
            }).find("rank of 0"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              add_lowrank(outliers(), {4, "attn_z"});
            }).find("matches no block linear"),
            std::string::npos);
}

// The CLI: --lowrank writes a lowbit GGUF whose branches the engine applies; the refused
// combinations exit 1 naming the flag and write nothing; such a file as a source refuses
// what would leave its branches behind.
TEST(LowRank, QuantizeFlagWritesBranchesAndRefusesWhatCannotKeepThem) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m-outliers");
  const std::string out = dir.file("lr.gguf");
  auto r = test::run_cli({"quantize", model, "-o", out, "--type", "Q4_0", "--method", "rtn",
                          "--lowrank", "8", "--lowrank-only", "ffn_down"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model m = load_model(out);
  EXPECT_EQ(m.config.lowrank_rank, 8u);
  EXPECT_EQ(m.tensor("blk.0.ffn_down.lowrank_a").dtype, DType::F16);
  EXPECT_EQ(m.tensor("blk.0.ffn_down.weight").dtype, DType::Q4_0);
  EXPECT_EQ(m.find("blk.0.ffn_up.lowrank_a"), nullptr);
  const std::vector<std::vector<std::string>> refused = {
      {"--method", "awq", "--calib", test::shared_path("data/calibration/calib-en-1mb.txt")},
      {"--method", "adaround"},
  };
  for (const auto& extra : refused) {
    std::vector<std::string> args = {"quantize", model,  "-o",        dir.file("bad.gguf"),
                                     "--type",   "Q4_0", "--lowrank", "8"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto bad = test::run_cli(args);
    EXPECT_EQ(bad.exit_code, 1) << extra[1];
    EXPECT_NE(bad.err.find("--lowrank: method " + extra[1] + " does not support low-rank branches"),
              std::string::npos)
        << bad.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
  }
  const std::vector<std::pair<std::vector<std::string>, std::string>> bad_alpha = {
      {{"--lowrank-alpha", "0.5"}, "--lowrank-alpha 0.5 without --lowrank"},
      {{"--lowrank", "8", "--lowrank-alpha", "0.5"}, "--lowrank-alpha needs calibration text"},
      {{"--lowrank-only", "ffn"}, "--lowrank-only 'ffn' without --lowrank"},
      {{"--lowrank", "8", "--lowrank-only", "ffn("}, "--lowrank-only 'ffn(':"},
  };
  for (const auto& [extra, message] : bad_alpha) {
    std::vector<std::string> args = {"quantize",           model,    "-o",
                                     dir.file("bad.gguf"), "--type", "Q4_0"};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto bad = test::run_cli(args);
    EXPECT_EQ(bad.exit_code, 1) << message;
    EXPECT_NE(bad.err.find(message), std::string::npos) << bad.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
  }
  const auto rotated = test::run_cli(
      {"quantize", out, "-o", dir.file("rot.gguf"), "--type", "Q4_0", "--rotate", "hadamard"});
  EXPECT_EQ(rotated.exit_code, 1);
  EXPECT_NE(rotated.err.find("a rotation or structured pruning would leave them behind"),
            std::string::npos)
      << rotated.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("rot.gguf")));
}

}  // namespace
}  // namespace lowbit

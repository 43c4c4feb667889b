// SmoothQuant and W8A8: the scales balance activation and weight maxima, folding them leaves
// the fp32 model unchanged, a W8A8 checkpoint runs through the int8 GEMM like its fp32
// simulation, and bad W8A8 metadata or flags are refused with a clear message.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "lowbit/calibration.h"
#include "lowbit/engine.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "lowbit/smoothquant.h"
#include "lowbit/tokenizer.h"
#include "test_support.h"

namespace lowbit {
namespace {

const std::string kCalib = "data/calibration/calib-en-1mb.txt";

std::vector<float> logits_of(const Model& m, bool fast) {
  EngineOptions o;
  o.fast = fast;
  Engine e(m, o);
  auto tokens = Tokenizer::create(m.vocab, m.source)
                    ->encode(
                        "The quiet village stood by the river, and every morning the old miller "
                        "opened his doors to the "
                        "farmers who came with grain from the hills.",
                        true);
  std::vector<float> logits;
  e.eval(tokens.data(), tokens.size(), logits, true);
  return logits;
}

// Share of positions whose most likely next token is the same.
double same_top1(const std::vector<float>& a, const std::vector<float>& b, size_t n_vocab) {
  size_t same = 0, n = a.size() / n_vocab;
  for (size_t t = 0; t < n; ++t) {
    auto top = [&](const std::vector<float>& l) {
      return std::max_element(l.begin() + t * n_vocab, l.begin() + (t + 1) * n_vocab) - l.begin();
    };
    same += top(a) == top(b);
  }
  return double(same) / n;
}

TEST(SmoothQuant, ScalesBalanceActivationAndWeightMaxima) {
  const std::vector<float> act = {8, 2, 0, 1, 30}, w = {0.5f, 2, 1, 0, 0.1f};
  const auto s = smoothing_scales(act, w, 0.5);
  for (size_t j : {0, 1, 4}) EXPECT_NEAR(act[j] / s[j], w[j] * s[j], 1e-5 * act[j]) << j;
  EXPECT_EQ(s[2], 1.0f);  // no activation: nothing to move
  EXPECT_EQ(s[3], 1.0f);  // no weight
  const auto flat = smoothing_scales(act, w, 1.0);  // α = 1: every activation channel becomes 1
  EXPECT_NEAR(act[4] / flat[4], 1.0, 1e-6);
  EXPECT_NE(test::expect_error([&] {
              smoothing_scales(act, {1, 2}, 0.5);
            }).find("5 activation maxima but 2"),
            std::string::npos);
}

CalibrationStats small_stats(const Model& m) {
  CalibrationOptions o;
  o.n_samples = 4;
  o.n_ctx = 128;
  const auto tokens = Tokenizer::create(m.vocab, m.source)
                          ->encode(read_text_file(test::shared_path(kCalib)), false);
  return collect_calibration_stats(m, tokens, o);
}

TEST(SmoothQuant, FoldingIsExactInFp32) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  CalibrationStats stats = small_stats(m);
  const auto base = logits_of(m, false);
  for (double alpha : {0.5, 0.85}) {
    SmoothQuantOptions o;
    o.alpha = alpha;
    const SmoothQuantResult r = smooth_model(m, stats, o);
    SCOPED_TRACE("alpha " + std::to_string(alpha));
    // The model really changed: norms and all four kinds of fold point (norms, v rows, up rows).
    for (const char* name :
         {"blk.2.attn_norm.weight", "blk.2.ffn_norm.weight", "blk.2.attn_v.weight",
          "blk.2.ffn_up.weight", "blk.2.attn_output.weight", "blk.2.ffn_down.weight"})
      EXPECT_NE(to_f32(r.model.tensor(name)), to_f32(m.tensor(name))) << name;
    EXPECT_LT(test::max_relative_difference(base, logits_of(r.model, false)), 1e-4);
    // Inputs got flatter: largest channel maximum over the mean, summed over the groups.
    double before = 0, after = 0;
    for (const auto& [name, sp] : r.spikiness) before += sp.first, after += sp.second;
    EXPECT_EQ(r.spikiness.size(), 4u * m.config.n_layer);
    EXPECT_LT(after, before);
  }
  stats.by_weight["blk.3.ffn_down.weight"].absmax.clear();
  EXPECT_NE(test::expect_error([&] {
              smooth_model(m, stats, {});
            }).find("input of 'blk.3.ffn_down.weight'"),
            std::string::npos);
  SmoothQuantOptions bad;
  bad.alpha = 1.5;
  EXPECT_NE(
      test::expect_error([&] { smooth_model(m, stats, bad); }).find("alpha must be in [0, 1]"),
      std::string::npos);
}

TEST(SmoothQuant, W8A8CheckpointRunsTheInt8GemmLikeItsSimulation) {
  const std::string model = test::shared_path("models/tinyllm-8m");
  test::TempDir dir;
  auto r = test::run_cli({"quantize", model, "-o", dir.file("sq"), "--type", "int8", "--method",
                          "smoothquant", "--calib", test::shared_path(kCalib), "--calib-samples",
                          "4", "--calib-ctx", "128", "--act-scheme", "static", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli(
      {"quantize", model, "-o", dir.file("dyn"), "--type", "int8", "--method", "w8a8", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model base = load_model(model);
  const auto base_logits = logits_of(base, false);
  for (const char* name : {"sq", "dyn"}) {
    SCOPED_TRACE(name);
    const Model m = load_model(dir.file(name));
    ASSERT_EQ(m.int8_weights.size(), 7u * m.config.n_layer);
    for (const auto& [w, q] : m.int8_weights) {
      const TensorView& t = m.tensor(w);
      ASSERT_EQ(q.q.size(), t.n_values());
      EXPECT_EQ(q.input_scale > 0, std::string(name) == "sq") << w;
      const auto f = to_f32(t);  // the f32 view is the same weight: scale[r] · q
      for (size_t i = 0; i < f.size(); i += 101)
        EXPECT_FLOAT_EQ(f[i], q.scale[i / q.cols] * q.q[i]) << w;
    }
    const auto fast = logits_of(m, true), ref = logits_of(m, false);
    // Rounding the activations is discontinuous: a last-bit difference can move one code, so
    // the two paths agree closely, not to the bit. The reference's sums come from OpenBLAS,
    // whose kernels depend on the CPU: 0.0220 with its AVX-512 kernels, under 0.02 with AVX2.
    EXPECT_LT(test::max_relative_difference(ref, fast), 3e-2);
    EXPECT_GE(same_top1(ref, fast, m.config.n_vocab), 0.9);
    EXPECT_GE(same_top1(base_logits, fast, m.config.n_vocab), 0.8);
    EXPECT_GT(test::max_relative_difference(base_logits, ref), 1e-4)
        << "activations were not rounded";
  }
}

// replace_weight on a W8A8 model: the replacement is what the engine multiplies, not the old
// weight's int8 form, on both paths; the model's own view again brings the int8 form back (as
// sensitivity measurement restores each weight after its trial).
TEST(SmoothQuant, ReplacedWeightOfAW8A8ModelTakesEffect) {
  test::TempDir dir;
  auto r = test::run_cli({"quantize", test::shared_path("models/tinyllm-8m"), "-o", dir.file("dyn"),
                          "--type", "int8", "--method", "w8a8", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model m = load_model(dir.file("dyn"));
  const std::string name = "blk.0.ffn_down.weight";
  ASSERT_TRUE(m.int8_weights.count(name));
  const TensorView& old = m.tensor(name);
  const std::vector<float> zeros(old.n_values(), 0.0f);
  TensorView zero = old;
  zero.dtype = DType::F32;
  zero.data = reinterpret_cast<const uint8_t*>(zeros.data());
  zero.nbytes = zeros.size() * sizeof(float);
  const std::vector<int32_t> tokens = {1, 100, 200, 300, 400, 500};
  for (bool fast : {false, true}) {
    SCOPED_TRACE(fast ? "fast" : "reference");
    EngineOptions o;
    o.fast = fast;
    std::vector<float> before, same, after;
    Engine e(m, o);
    e.eval(tokens.data(), tokens.size(), before, true);
    e.reset();
    e.replace_weight(name, &old);  // the model's own view again: its int8 form, the same logits
    e.eval(tokens.data(), tokens.size(), same, true);
    EXPECT_EQ(before, same);
    e.reset();
    e.replace_weight(name, &zero);
    e.eval(tokens.data(), tokens.size(), after, true);
    EXPECT_GT(test::max_relative_difference(before, after), 1e-3)
        << "the replacement had no effect";
  }
}

// Replaces the first `from` at or after `after` in the file's bytes by `to` (same length).
void patch_file(const std::string& path, const std::string& after, const std::string& from,
                const std::string& to) {
  std::string bytes = test::read_file(path);
  const size_t at = bytes.find(from, bytes.find(after));
  ASSERT_NE(at, std::string::npos) << from;
  ASSERT_EQ(from.size(), to.size());
  bytes.replace(at, from.size(), to);
  test::write_file(path, bytes);
}

TEST(SmoothQuant, BadW8A8CheckpointsAndFlagsAreRefused) {
  const std::string model = test::shared_path("models/tinyllm-8m"),
                    calib = test::shared_path(kCalib);
  test::TempDir dir;
  auto r = test::run_cli(
      {"quantize", model, "-o", dir.file("dyn"), "--type", "int8", "--method", "w8a8", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  patch_file(dir.file("dyn/model.safetensors"), "activations", "per-token", "per-tokex");
  std::string msg = test::expect_error([&] { load_model(dir.file("dyn")); });
  EXPECT_NE(msg.find(dir.file("dyn")), std::string::npos) << msg;
  EXPECT_NE(msg.find("per-token or static"), std::string::npos) << msg;

  r = test::run_cli({"quantize", model, "-o", dir.file("st"), "--type", "int8", "--method", "w8a8",
                     "--act-scheme", "static", "--calib", calib, "--calib-samples", "2",
                     "--calib-ctx", "64", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  patch_file(dir.file("st/model.safetensors"), "input_scales", "model.layers.0.mlp.down_proj",
             "model.layers.0.mlp.down_prxj");
  msg = test::expect_error([&] { load_model(dir.file("st")); });
  EXPECT_NE(msg.find("no positive input scale for 'model.layers.0.mlp.down_proj'"),
            std::string::npos)
      << msg;

  struct Case { std::vector<std::string> flags; std::string message; };
  for (const Case& c : std::vector<Case>{
           {{"--type", "int4", "--method", "smoothquant", "--calib", calib}, "use type int8"},
           {{"--type", "int8", "--method", "smoothquant"},
            "method smoothquant needs calibration text"},
           {{"--type", "int8", "--method", "w8a8", "--act-scheme", "static"},
            "W8A8 with static activation scales needs calibration text"},
           {{"--type", "int8", "--method", "w8a8", "--group", "128"},
            "group 128 does not apply"}}) {
    std::vector<std::string> args = {"quantize", model, "-o", dir.file("bad")};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    r = test::run_cli(args);
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad"))) << c.message;
  }
}

}  // namespace
}  // namespace lowbit

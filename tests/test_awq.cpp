// AWQ: the folded scales leave the fp32 model's function unchanged, the search never does
// worse than plain rounding on its own objective, and `quantize --method awq+gptq` writes a
// file whose rescaled norms travel with it.
#include <gtest/gtest.h>

#include <cmath>
#include <memory>

#include "lowbit/awq.h"
#include "lowbit/engine.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

TEST(Awq, FoldedScalesLeaveTheFp32OutputUnchanged) {
  const Model base = load_model(test::shared_path("models/tinyllm-8m"));
  Model scaled = load_model(test::shared_path("models/tinyllm-8m"));
  const uint32_t D = base.config.n_embd, F = base.config.n_ff;
  for (uint32_t l : {0u, 5u}) {
    const std::string p = "blk." + std::to_string(l) + ".";
    auto positive_scales = [](size_t n, uint32_t seed) {
      std::vector<float> s = test::gaussian(n, seed, 0.7f);
      for (float& v : s) v = std::exp(v);  // wide range, all positive
      return s;
    };
    const auto s_attn = positive_scales(D, 1 + l), s_ffn = positive_scales(D, 2 + l), s_down = positive_scales(F, 3 + l);
    auto g = to_f32(base.tensor(p + "attn_norm.weight"));
    awq_unscale_norm(g, s_attn);
    scaled.set_f32(p + "attn_norm.weight", g);
    for (const char* n : {"attn_q.weight", "attn_k.weight", "attn_v.weight"}) {
      const TensorView& t = base.tensor(p + n);
      auto w = to_f32(t);
      awq_scale_columns(w, t.shape[0], t.row_len(), s_attn);
      scaled.set_f32(p + n, w);
    }
    g = to_f32(base.tensor(p + "ffn_norm.weight"));
    awq_unscale_norm(g, s_ffn);
    scaled.set_f32(p + "ffn_norm.weight", g);
    auto gate = to_f32(base.tensor(p + "ffn_gate.weight")), up = to_f32(base.tensor(p + "ffn_up.weight"));
    auto down = to_f32(base.tensor(p + "ffn_down.weight"));
    awq_scale_columns(gate, F, D, s_ffn);
    awq_scale_columns(up, F, D, s_ffn);
    awq_unscale_rows(up, F, D, s_down);
    awq_scale_columns(down, D, F, s_down);
    scaled.set_f32(p + "ffn_gate.weight", gate);
    scaled.set_f32(p + "ffn_up.weight", up);
    scaled.set_f32(p + "ffn_down.weight", down);
  }
  scaled.index();
  const std::vector<int32_t> tokens = {1, 450, 3974, 338, 263, 2217, 2989, 322, 278, 1095};
  Engine a(base), b(scaled);
  std::vector<float> la, lb;
  a.eval(tokens.data(), tokens.size(), la, true);
  b.eval(tokens.data(), tokens.size(), lb, true);
  EXPECT_LT(test::max_relative_difference(la, lb), 1e-4);
}

TEST(Awq, SearchNeverDoesWorseThanPlainRounding) {
  // A layer whose inputs have a few loud channels: scaling them up must pay off.
  const uint64_t rows = 64, cols = 256, n = 512;
  const auto w = test::gaussian(rows * cols, 5);
  auto x = test::gaussian(n * cols, 6);
  for (uint64_t t = 0; t < n; ++t)
    for (uint64_t j = 0; j < cols; j += 31) x[t * cols + j] *= 20.0f;
  std::vector<double> h(cols * cols, 0.0), mean_abs(cols, 0.0);
  for (uint64_t t = 0; t < n; ++t)
    for (uint64_t i = 0; i < cols; ++i) {
      mean_abs[i] += std::fabs(x[t * cols + i]) / n;
      for (uint64_t j = 0; j < cols; ++j) h[i * cols + j] += double(x[t * cols + i]) * x[t * cols + j] / n;
    }
  for (DType t : {DType::Q4_K, DType::Q3_K, DType::Q4_0}) {
    const AwqScales s = awq_search({{&w, rows, cols, t}}, h, mean_abs, 10);
    EXPECT_LE(s.error_scaled, s.error_plain) << dtype_name(t);
    EXPECT_GT(s.alpha, 0.0) << dtype_name(t);
    EXPECT_LT(s.error_scaled, 0.9 * s.error_plain) << dtype_name(t);
    ASSERT_EQ(s.s.size(), cols);
  }
  const std::string msg = test::expect_error([&] { awq_search({{&w, rows, cols, DType::Q4_K}}, h, {1.0}, 10); });
  EXPECT_NE(msg.find("statistics of 256 columns"), std::string::npos) << msg;
}

TEST(Cli, QuantizeWithAwqCarriesTheRescaledNorms) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  auto r = test::run_cli({"quantize", model, "-o", dir.file("a.gguf"), "--type", "Q4_K_M", "--method", "awq+gptq", "--calib",
                          test::shared_path("data/calibration/calib-en-1mb.txt"), "--calib-samples", "8", "--calib-ctx",
                          "128", "--awq-grid", "4", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model q = load_model(dir.file("a.gguf")), base = load_model(model);
  int changed = 0;
  for (uint32_t l = 0; l < base.config.n_layer; ++l)
    for (const char* n : {".attn_norm.weight", ".ffn_norm.weight"}) {
      const std::string name = "blk." + std::to_string(l) + n;
      changed += to_f32(q.tensor(name)) != to_f32(base.tensor(name));
    }
  EXPECT_GT(changed, 0);  // at least one group chose alpha > 0
  const std::string method = GgufFile::open(dir.file("a.gguf"))->get_string("lowbit.quantize.method");
  EXPECT_EQ(method.rfind("awq+gptq sequential calib=8x128", 0), 0u) << method;
  r = test::run_cli({"quantize", model, "-o", dir.file("b.gguf"), "--method", "awq"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--method awq needs --calib TEXT"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lowbit

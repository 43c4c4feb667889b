// AWQ: the folded scales leave the fp32 model's function unchanged, the search never does
// worse than plain rounding on its own objective (per linear and per block), the clip
// search and the sub-block scale search lower a layer's output error, and
// `quantize --method awq+gptq` writes a file whose rescaled norms travel with it.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <memory>

#include "algo/awq_block.h"
#include "lowbit/awq.h"
#include "lowbit/engine.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"
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
    const auto s_attn = positive_scales(D, 1 + l), s_ffn = positive_scales(D, 2 + l),
               s_down = positive_scales(F, 3 + l);
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
    auto gate = to_f32(base.tensor(p + "ffn_gate.weight")),
         up = to_f32(base.tensor(p + "ffn_up.weight"));
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
      for (uint64_t j = 0; j < cols; ++j)
        h[i * cols + j] += double(x[t * cols + i]) * x[t * cols + j] / n;
    }
  for (DType t : {DType::Q4_K, DType::Q3_K, DType::Q4_0}) {
    const AwqScales s = awq_search({{&w, rows, cols, t}}, h, mean_abs, 10);
    EXPECT_LE(s.error_scaled, s.error_plain) << dtype_name(t);
    EXPECT_GT(s.alpha, 0.0) << dtype_name(t);
    EXPECT_LT(s.error_scaled, 0.9 * s.error_plain) << dtype_name(t);
    ASSERT_EQ(s.s.size(), cols);
  }
  const std::string msg = test::expect_error([&] {
    awq_search({{&w, rows, cols, DType::Q4_K}}, h, {1.0}, 10);
  });
  EXPECT_NE(msg.find("statistics of 256 columns"), std::string::npos) << msg;
}

// tr(E H Eᵀ), E = W − dequant(Q): the layer's mean squared output error on the inputs behind H.
double layer_error(DType t, const std::vector<float>& w, const std::vector<uint8_t>& q,
                   uint64_t rows, uint64_t cols, const std::vector<double>& h) {
  std::vector<float> d(rows * cols);
  dequantize_values(t, q.data(), d.size(), d.data());
  double e = 0;
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t i = 0; i < cols; ++i) {
      const double ei = w[r * cols + i] - d[r * cols + i];
      double acc = 0;
      for (uint64_t j = 0; j < cols; ++j)
        acc += h[i * cols + j] * (w[r * cols + j] - d[r * cols + j]);
      e += ei * acc;
    }
  return e;
}

// H = XᵀX/n of correlated inputs (each channel mixes its neighbour) with a few loud channels.
std::vector<double> correlated_hessian(uint64_t cols, uint64_t n, uint64_t seed) {
  const auto z = test::gaussian(n * cols, seed);
  std::vector<double> h(cols * cols, 0.0);
  std::vector<float> x(cols);
  for (uint64_t t = 0; t < n; ++t) {
    for (uint64_t j = 0; j < cols; ++j)
      x[j] = z[t * cols + j] + 0.8f * z[t * cols + (j + 1) % cols];
    for (uint64_t j = 0; j < cols; j += 37) x[j] *= 10.0f;
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t j = 0; j < cols; ++j) h[i * cols + j] += double(x[i]) * x[j] / n;
  }
  return h;
}

TEST(Awq, ClipSearchLowersTheLayerOutputErrorBelowRounding) {
  const uint64_t rows = 32, cols = 512;
  const auto w = test::gaussian(rows * cols, 7);
  const std::vector<double> h = correlated_hessian(cols, 1024, 8);
  for (DType t : {DType::Q4_K, DType::Q3_K, DType::Q2_K, DType::Q4_0}) {
    const uint64_t bytes = rows * cols / traits(t).block_size * traits(t).type_size;
    std::vector<uint8_t> rtn(bytes), clip(bytes);
    quantize_rows(t, w.data(), rows, cols, nullptr, rtn.data());
    awq_clip_quantize_rows(t, w.data(), rows, cols, h, AwqClipOptions{}, 2, clip.data());
    const double e_rtn = layer_error(t, w, rtn, rows, cols, h),
                 e_clip = layer_error(t, w, clip, rows, cols, h);
    EXPECT_LT(e_clip, 0.97 * e_rtn) << dtype_name(t) << " rtn " << e_rtn << " clip " << e_clip;
  }
  std::vector<uint8_t> out(rows * cols / 256 * traits(DType::Q4_K).type_size);
  const std::string msg = test::expect_error([&] {
    awq_clip_quantize_rows(DType::Q4_K, w.data(), rows, cols, {1.0, 2.0}, AwqClipOptions{}, 1,
                           out.data());
  });
  EXPECT_NE(msg.find("H has 2 values"), std::string::npos) << msg;
}

TEST(Awq, SubBlockSearchLowersEveryRowsOutputErrorAndKeepsTheSuperScales) {
  const uint64_t rows = 24, cols = 512;
  const auto w = test::gaussian(rows * cols, 9);
  const std::vector<double> h = correlated_hessian(cols, 1024, 10);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const auto& tr = traits(t);
    const uint64_t row_bytes = cols / tr.block_size * tr.type_size;
    std::vector<uint8_t> rtn(rows * row_bytes);
    quantize_rows(t, w.data(), rows, cols, nullptr, rtn.data());
    std::vector<uint8_t> sub = rtn;
    ASSERT_TRUE(awq_refine_sub_scales(t, w.data(), rows, cols, h, 4, 2, sub.data())) << tr.name;
    double total_rtn = 0, total_sub = 0;
    for (uint64_t r = 0; r < rows;
         ++r) {  // coordinate descent from plain rounding: no row gets worse
      const std::vector<float> wr(w.begin() + r * cols, w.begin() + (r + 1) * cols);
      const std::vector<uint8_t> qr(rtn.begin() + r * row_bytes, rtn.begin() + (r + 1) * row_bytes),
          qs(sub.begin() + r * row_bytes, sub.begin() + (r + 1) * row_bytes);
      const double er = layer_error(t, wr, qr, 1, cols, h), es = layer_error(t, wr, qs, 1, cols, h);
      EXPECT_LE(es, er * (1 + 1e-5)) << tr.name << " row " << r;
      total_rtn += er, total_sub += es;
    }
    EXPECT_LT(total_sub, 0.85 * total_rtn)
        << tr.name << " rtn " << total_rtn << " searched " << total_sub;
    for (uint64_t b = 0; b < rows * cols / tr.block_size;
         ++b) {  // the f16 super-scales are not moved
      quant::SubBlockParams before, after;
      ASSERT_TRUE(quant::read_sub_params(t, rtn.data() + b * tr.type_size, &before));
      quant::read_sub_params(t, sub.data() + b * tr.type_size, &after);
      EXPECT_EQ(before.d, after.d) << tr.name << " block " << b;
      EXPECT_EQ(before.dmin, after.dmin) << tr.name << " block " << b;
    }
    std::vector<uint8_t> none = rtn;  // zero passes: the rounding is what came in
    awq_refine_sub_scales(t, w.data(), rows, cols, h, 0, 1, none.data());
    EXPECT_EQ(none, rtn) << tr.name;
  }
  std::vector<uint8_t> q40(rows * cols / 32 *
                           traits(DType::Q4_0).type_size);  // no sub-block scales: untouched
  quantize_rows(DType::Q4_0, w.data(), rows, cols, nullptr, q40.data());
  const std::vector<uint8_t> q40_in = q40;
  EXPECT_FALSE(awq_refine_sub_scales(DType::Q4_0, w.data(), rows, cols, h, 4, 1, q40.data()));
  EXPECT_EQ(q40, q40_in);
  std::vector<uint8_t> out(rows * cols / 256 * traits(DType::Q4_K).type_size);
  const std::string msg = test::expect_error([&] {
    awq_refine_sub_scales(DType::Q4_K, w.data(), rows, cols, {1.0, 2.0}, 4, 1, out.data());
  });
  EXPECT_NE(msg.find("H has 2 values"), std::string::npos) << msg;
}

TEST(Awq, BlockSearchLeavesItsWinnerInTheEngine) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const uint32_t D = m.config.n_embd;
  const size_t T = 64;
  Engine engine(m);
  std::vector<std::vector<float>> inputs{test::gaussian(T * D, 11), test::gaussian(T * D, 12)},
      targets = inputs;
  for (auto& y : targets) {  // the unquantized block's outputs
    engine.reset();
    engine.forward_layer(1, y.data(), T);
  }
  const InputGroup g = block_input_groups(m.config, 1)[0];  // q, k, v <- attn_norm
  ASSERT_EQ(g.producer, "blk.1.attn_norm.weight");
  std::map<std::string, std::vector<float>> w;
  std::map<std::string, DType> types;
  for (const std::string& n : g.weights) w[n] = to_f32(m.tensor(n)), types[n] = DType::Q3_K;
  std::vector<double> mean_abs(D, 0.0);  // of the normed input, roughly: |x|·γ
  const std::vector<float> gamma = to_f32(m.tensor(g.producer));
  for (const auto& x : inputs)
    for (size_t k = 0; k < x.size(); ++k)
      mean_abs[k % D] += std::fabs(x[k] * gamma[k % D]) / (T * inputs.size());

  AwqBlockSearch search(engine, m, 1, inputs, targets, T, 2);
  const AwqScales s = search.search(g, w, types, mean_abs, 8);
  EXPECT_GT(s.error_plain, 0.0);
  EXPECT_LE(s.error_scaled, s.error_plain);
  double now = 0;  // the block error with what the engine holds now
  for (size_t i = 0; i < inputs.size(); ++i) {
    std::vector<float> y = inputs[i];
    engine.reset();
    engine.forward_layer(1, y.data(), T);
    for (size_t k = 0; k < y.size(); ++k)
      now += (double(y[k]) - targets[i][k]) * (double(y[k]) - targets[i][k]);
  }
  EXPECT_NEAR(now, s.error_scaled, 1e-9 * s.error_scaled);
}

TEST(Cli, QuantizeWithAwqCarriesTheRescaledNorms) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  auto r = test::run_cli(
      {"quantize", model, "-o", dir.file("a.gguf"), "--type", "Q4_K_M", "--method", "awq+gptq",
       "--calib", test::shared_path("data/calibration/calib-en-1mb.txt"), "--calib-samples", "8",
       "--calib-ctx", "128", "--awq-grid", "4", "--awq-windows", "2", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const Model q = load_model(dir.file("a.gguf")), base = load_model(model);
  int changed = 0;
  for (uint32_t l = 0; l < base.config.n_layer; ++l)
    for (const char* n : {".attn_norm.weight", ".ffn_norm.weight"}) {
      const std::string name = "blk." + std::to_string(l) + n;
      changed += to_f32(q.tensor(name)) != to_f32(base.tensor(name));
    }
  EXPECT_GT(changed, 0);  // at least one group chose alpha > 0
  const std::string method =
      GgufFile::open(dir.file("a.gguf"))->get_string("lowbit.quantize.method");
  EXPECT_EQ(method.rfind("awq+gptq sequential calib=8x128", 0), 0u) << method;
  EXPECT_NE(method.find("awq_grid=4 awq_objective=block awq_windows=2"), std::string::npos)
      << method;
  // clang-format off
  r = test::run_cli({"quantize", model, "-o", dir.file("d.gguf"), "--type", "Q4_K_M",
                     "--method", "awq", "--awq-clip", "--awq-objective", "layer",
                     "--awq-sub-passes", "2",
                     "--calib", test::shared_path("data/calibration/calib-en-1mb.txt"),
                     "--calib-samples", "4", "--calib-ctx", "128", "-q"});
  // clang-format on
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string clip_method =
      GgufFile::open(dir.file("d.gguf"))->get_string("lowbit.quantize.method");
  EXPECT_NE(clip_method.find("awq_objective=layer awq_clip=1 awq_sub_passes=2"), std::string::npos)
      << clip_method;
  r = test::run_cli({"quantize", model, "-o", dir.file("b.gguf"), "--method", "awq"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("method awq needs calibration text"), std::string::npos) << r.err;
  r = test::run_cli({"quantize", model, "-o", dir.file("c.gguf"), "--method", "gptq", "--awq-clip",
                     "--calib", test::shared_path("data/calibration/calib-en-1mb.txt")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(
      r.err.find(
          "AWQ's clipping search chooses a rounding to nearest: it needs method awq, not gptq"),
      std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("c.gguf")));
}

}  // namespace
}  // namespace lowbit

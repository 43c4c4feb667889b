// GPTQ on a random layer with correlated inputs: it must beat round-to-nearest on the
// output error ||(W - Q) X^T||, which is what it optimises, in every configuration.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "algo/gptq_sweep.h"
#include "lowbit/affine.h"
#include "lowbit/calibration.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/gptq.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "lowbit/sequential.h"
#include "lowbit/tokenizer.h"
#include "quant/block_codecs.h"
#include "test_support.h"

namespace lowbit {
namespace {

struct Layer {
  uint64_t rows = 48, cols = 128, n = 1024;
  std::vector<float> w, x;  // w [rows, cols], x [n, cols]
  std::vector<double> h;    // X^T X / n
};

Layer make_layer(uint64_t rows = 48, uint64_t cols = 128, uint64_t n = 1024) {
  Layer L;
  L.rows = rows;
  L.cols = cols;
  L.n = n;
  L.w = test::gaussian(L.rows * L.cols, 11);
  // Correlated inputs with uneven channel scales, as activations are: x = z A, with a few loud
  // channels.
  const auto z = test::gaussian(L.n * L.cols, 12), a = test::gaussian(L.cols * L.cols, 13, 0.3f);
  L.x.assign(L.n * L.cols, 0.0f);
  for (uint64_t t = 0; t < L.n; ++t)
    for (uint64_t k = 0; k < L.cols; ++k) {
      const float zk = z[t * L.cols + k];
      for (uint64_t j = 0; j < L.cols; ++j) L.x[t * L.cols + j] += zk * a[k * L.cols + j];
    }
  for (uint64_t t = 0; t < L.n; ++t)
    for (uint64_t j = 0; j < L.cols; j += 17) L.x[t * L.cols + j] *= 6.0f;
  L.h.assign(L.cols * L.cols, 0.0);
  for (uint64_t t = 0; t < L.n; ++t)
    for (uint64_t i = 0; i < L.cols; ++i)
      for (uint64_t j = 0; j < L.cols; ++j)
        L.h[i * L.cols + j] += double(L.x[t * L.cols + i]) * L.x[t * L.cols + j] / L.n;
  return L;
}

double output_error(const Layer& L, const std::vector<float>& q) {
  double e = 0;
  for (uint64_t t = 0; t < L.n; ++t)
    for (uint64_t r = 0; r < L.rows; ++r) {
      double d = 0;
      for (uint64_t j = 0; j < L.cols; ++j)
        d += double(L.w[r * L.cols + j] - q[r * L.cols + j]) * L.x[t * L.cols + j];
      e += d * d;
    }
  return e;
}

TEST(Gptq, BeatsRoundToNearestOnTheLayerOutput) {
  const Layer L = make_layer();
  for (int bits : {3, 4}) {
    for (int64_t group : {int64_t{32}, int64_t{0}}) {
      for (bool act_order : {false, true}) {
        AffineSpec s;
        s.bits = bits;
        s.group = group;
        std::vector<float> rtn(L.w.size()), gq;
        affine_dequantize(affine_quantize(L.w.data(), L.rows, L.cols, s), L.rows, L.cols, s,
                          rtn.data());
        GptqOptions o;
        o.act_order = act_order;
        gptq_quantize_affine(L.w.data(), L.rows, L.cols, L.h, s, o, &gq);
        const double e_rtn = output_error(L, rtn), e_gptq = output_error(L, gq);
        EXPECT_LT(e_gptq, 0.85 * e_rtn) << s.describe() << (act_order ? " act-order" : "");
        std::printf("%-22s act_order=%d  ||(W-Q)X|| GPTQ/RTN = %.3f\n", s.describe().c_str(),
                    act_order, std::sqrt(e_gptq / e_rtn));
      }
    }
  }
}

// The GGUF block types: parameters per block chosen first, then GPTQ rounds onto their grid.
// The reference is lowbit's own (error-optimal) round-to-nearest with the same importance.
TEST(Gptq, BlockTypesBeatRoundToNearestOnTheLayerOutput) {
  const Layer L = make_layer(32, 512, 2048);
  std::vector<float> diag(L.cols);
  for (uint64_t j = 0; j < L.cols; ++j) diag[j] = static_cast<float>(L.h[j * L.cols + j]);
  for (DType t : test::block_types()) {
    for (bool act_order : {false, true}) {
      const uint64_t bytes = L.rows * L.cols / traits(t).block_size * traits(t).type_size;
      std::vector<uint8_t> a(bytes), b(bytes);
      quantize_rows(t, L.w.data(), L.rows, L.cols, diag.data(), a.data());
      GptqOptions o;
      o.act_order = act_order;
      o.batch = 64;  // smaller than a K block: batches must still hold whole blocks
      gptq_quantize_rows(t, L.w.data(), L.rows, L.cols, L.h, nullptr, o, b.data());
      std::vector<float> rtn(L.w.size()), gq(L.w.size());
      dequantize_values(t, a.data(), rtn.size(), rtn.data());
      dequantize_values(t, b.data(), gq.size(), gq.data());
      const double ratio = std::sqrt(output_error(L, gq) / output_error(L, rtn));
      // Codebook types (no grid per value) under act-order fix the parameters, and those
      // with sign parity their signs, from the original W, and a group's coordinates come
      // up far apart: they gain less (measured 0.85 IQ3_S, 0.96 IQ3_XXS, 0.86 IQ2_S, 0.97
      // IQ2_XS, 0.96 IQ2_XXS; 0.77 to 0.87 in column order, the GGUF default).
      const bool codebook = quant::block_codec(t)->choose == nullptr;
      EXPECT_LT(ratio, act_order && codebook ? 0.98 : 0.9)
          << dtype_name(t) << (act_order ? " act-order" : "");
      std::printf("%-7s act_order=%d  ||(W-Q)X|| GPTQ/RTN = %.3f\n", dtype_name(t), act_order,
                  ratio);
    }
  }
}

// IQ3_S rounds groups of 4 to grid entries, which cannot hold 0: pruning is refused by name.
TEST(Gptq, CodebookTypesRefuseToPrune) {
  const Layer L = make_layer(4, 256, 256);
  std::vector<uint8_t> q(L.rows * L.cols / 256 * traits(DType::IQ3_S).type_size);
  GptqOptions o;
  o.prune.ratio = 0.5;
  const std::string msg = test::expect_error([&] {
    gptq_quantize_rows(DType::IQ3_S, L.w.data(), L.rows, L.cols, L.h, nullptr, o, q.data());
  });
  EXPECT_NE(msg.find("IQ3_S has no 0"), std::string::npos) << msg;
}

// GPTQ's block scales are least-squares fits, which shrink a row's output; for the K types
// the result is rescaled so that each row's output error is uncorrelated with its output:
// (w - q) H w^T = 0.
// The types with the row rescale (K and codebook types) leave no shrink of the layer's
// output after the sweep either.
TEST(Gptq, RescaledTypeRowsAreNotShrunk) {
  const Layer L = make_layer(16, 512, 1024);
  for (DType t : test::block_types()) {
    if (!quant::block_codec(t)->debias) continue;
    std::vector<uint8_t> q(L.rows * L.cols / traits(t).block_size * traits(t).type_size);
    gptq_quantize_rows(t, L.w.data(), L.rows, L.cols, L.h, nullptr, GptqOptions{}, q.data());
    std::vector<float> y(L.w.size());
    dequantize_values(t, q.data(), y.size(), y.data());
    for (uint64_t r = 0; r < L.rows; ++r) {
      double xx = 0, xy = 0;
      for (uint64_t i = 0; i < L.cols; ++i)
        for (uint64_t j = 0; j < L.cols; ++j) {
          const double hw = L.h[i * L.cols + j] * L.w[r * L.cols + j];
          xx += hw * L.w[r * L.cols + i], xy += hw * y[r * L.cols + i];
        }
      EXPECT_NEAR(1 - xy / xx, 0.0, 5e-4) << dtype_name(t) << " row " << r;  // f16: 2^-11
    }
  }
}

// The factor the sweep uses: Uᵀ U = (H + λ)⁻¹ with U upper triangular.
TEST(Gptq, InverseHessianFactorIsTheUpperCholeskyOfTheInverse) {
  const Layer L = make_layer(4, 40, 200);
  const uint64_t n = L.cols;
  const double damp = 0.01;
  const std::vector<double> u = gptq::inverse_hessian_factor(L.h, n, damp);
  double mean = 0;
  for (uint64_t j = 0; j < n; ++j) mean += L.h[j * n + j] / n;
  double worst = 0;
  for (uint64_t i = 0; i < n; ++i)
    for (uint64_t j = 0; j < n; ++j) {
      if (i > j) {
        EXPECT_EQ(u[i * n + j], 0.0);
      }
      double s = 0;  // ((UᵀU)(H + λ))[i][j]
      for (uint64_t k = 0; k < n; ++k) {
        double utu = 0;
        for (uint64_t r = 0; r <= std::min(i, k); ++r) utu += u[r * n + i] * u[r * n + k];
        s += utu * (L.h[k * n + j] + (k == j ? damp * mean : 0.0));
      }
      worst = std::max(worst, std::fabs(s - (i == j ? 1.0 : 0.0)));
    }
  EXPECT_LT(worst, 1e-8);
}

TEST(Gptq, SingularHessianIsDampedAndDeadInputsAreZeroed) {
  const uint64_t rows = 4, cols = 8;
  const auto w = test::gaussian(rows * cols, 3);
  std::vector<double> h(cols * cols, 1.0);  // rank one
  for (uint64_t j = 0; j < cols; ++j)
    h[j * cols + 5] = h[5 * cols + j] = 0;  // input 5 never active
  AffineSpec s;
  s.group = 0;
  std::vector<float> q;
  gptq_quantize_affine(w.data(), rows, cols, h, s, {}, &q);
  for (uint64_t r = 0; r < rows; ++r) EXPECT_EQ(q[r * cols + 5], 0.0f);
  for (float v : q) EXPECT_TRUE(std::isfinite(v));
  EXPECT_NE(test::expect_error([&] {
              gptq_quantize_affine(w.data(), rows, cols, std::vector<double>(3), s, {});
            }).find("Hessian has 3 values"),
            std::string::npos);
}

TEST(Cli, QuantizeIntWithGptqBeatsRtnOnTheLayerError) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string calib = test::shared_path("data/calibration/calib-en-1mb.txt");
  auto rtn = test::run_cli({"quantize", model, "-o", dir.file("rtn"), "--type", "int4", "--group",
                            "64", "--json", "-q"});
  auto gptq = test::run_cli({"quantize", model, "-o", dir.file("gptq"), "--type", "int4", "--group",
                             "64", "--method", "gptq", "--calib", calib, "--calib-samples", "4",
                             "--calib-ctx", "128", "--json", "-q"});
  ASSERT_EQ(rtn.exit_code, 0) << rtn.err;
  ASSERT_EQ(gptq.exit_code, 0) << gptq.err;
  // GPTQ trades weight error for output error: its plain weight error is larger.
  const auto a = nlohmann::json::parse(rtn.out)["tensors"],
             b = nlohmann::json::parse(gptq.out)["tensors"];
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i]["name"] == "blk.1.ffn_down.weight") {
      EXPECT_GT(b[i]["rel_rms_error"].get<double>(), a[i]["rel_rms_error"].get<double>());
    }
  const Model m = load_model(dir.file("gptq"));
  EXPECT_EQ(m.tensor("blk.1.ffn_down.weight").shape, (std::vector<uint64_t>{256, 768}));
  auto bad =
      test::run_cli({"quantize", model, "-o", dir.file("x"), "--type", "int4", "--method", "gptq"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("method gptq needs calibration text"), std::string::npos) << bad.err;
  bad = test::run_cli(
      {"quantize", model, "-o", dir.file("x.gguf"), "--type", "Q4_K_M", "--method", "gptq"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("method gptq needs calibration text"), std::string::npos) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

// GPTQ onto GGUF blocks through the model writer: every block-type tensor with calibration
// inputs gets an output error (GPTQ's objective) below plain rounding's on the same Hessian.
TEST(GptqModel, GgufPresetHasALowerOutputErrorThanRounding) {
  test::TempDir dir;
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens =
      Tokenizer::create(m.vocab, m.source)
          ->encode(read_text_file(test::shared_path("data/calibration/calib-en-1mb.txt")), false);
  CalibrationOptions co;
  co.n_samples = 8;
  co.n_ctx = 128;
  co.hessian = true;
  const CalibrationStats stats = collect_calibration_stats(m, tokens, co);
  std::map<std::string, std::vector<double>> h;
  for (const auto& [name, st] : stats.by_weight) h[name] = st.hessian();
  QuantizeOptions q;
  q.plan.preset = "Q3_K_M";
  q.hessian = [&](const std::string& name) -> const std::vector<double>* {
    auto it = h.find(name);
    return it == h.end() ? nullptr : &it->second;
  };
  q.gptq.act_order = false;
  q.gptq.damp = 0.1;
  const QuantizeReport rtn = quantize_model_gguf(m, dir.file("r.gguf"), q);
  q.use_gptq = true;
  const QuantizeReport gptq = quantize_model_gguf(m, dir.file("g.gguf"), q);
  ASSERT_EQ(rtn.tensors.size(), gptq.tensors.size());
  EXPECT_EQ(rtn.total_bytes, gptq.total_bytes);
  int compared = 0;
  for (size_t i = 0; i < gptq.tensors.size(); ++i) {
    const TensorReport &g = gptq.tensors[i], &r = rtn.tensors[i];
    if (!h.count(g.name)) continue;
    EXPECT_GT(r.rel_output_error, 0.0) << g.name;
    EXPECT_LT(g.rel_output_error, 0.95 * r.rel_output_error) << g.name;
    EXPECT_GT(g.rel_rms_error, r.rel_rms_error)
        << g.name;  // it trades weight error for output error
    ++compared;
  }
  EXPECT_EQ(compared, 8 * 7 + 1);  // every linear of every layer, and the output head
  EXPECT_EQ(GgufFile::open(dir.file("g.gguf"))->get_string("lowbit.quantize.method"), "gptq");
  EXPECT_EQ(GgufFile::open(dir.file("r.gguf"))->get_string("lowbit.quantize.method"), "rtn");
}

// The calibration text in tinyllm's tokens, and the Q4_K_M plan as the sequential driver takes it.
std::vector<int32_t> calibration_tokens(const Model& m) {
  return Tokenizer::create(m.vocab, m.source)
      ->encode(read_text_file(test::shared_path("data/calibration/calib-en-1mb.txt")), false);
}
std::map<std::string, DType> q4_k_m_types(const Model& m) {
  QuantizePlanOptions po;
  po.preset = "Q4_K_M";
  std::map<std::string, DType> types;
  for (const TensorPlan& p : plan_quantization(m, po)) types[p.name] = p.type;
  return types;
}
// GPTQ without act-order, damp 0.1, on 4 calibration windows of 64 tokens.
SequentialOptions four_windows_of_64() {
  SequentialOptions o;
  o.calib.n_samples = 4;
  o.calib.n_ctx = 64;
  o.gptq.act_order = false;
  o.gptq.damp = 0.1;
  return o;
}

// The block-by-block driver: every planned weight is quantized, the embedding by rounding,
// the linears with a lower output error than rounding under the Hessian they were given,
// and the activations kept are windows x ctx x n_embd floats.
TEST(GptqModel, SequentialDriverQuantizesEveryBlockBelowRoundingError) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens = calibration_tokens(m);
  const auto types = q4_k_m_types(m);
  SequentialOptions o = four_windows_of_64();
  const SequentialResult res = quantize_sequential(m, tokens, types, o);
  EXPECT_EQ(res.activation_bytes, 4u * 64 * 256 * 4);
  EXPECT_EQ(res.layer_seconds.size(), 8u);
  EXPECT_EQ(res.tensors.size(), 8u * 7 + 2);  // the linears, the head and the embedding
  const TensorView& e = m.tensor("token_embd.weight");
  std::vector<uint8_t> rtn(res.tensors.at(e.name).bytes.size());
  quantize_rows(types.at(e.name), to_f32(e).data(), e.shape[0], e.row_len(), nullptr, rtn.data());
  EXPECT_EQ(res.tensors.at(e.name).bytes, rtn);
  for (const auto& [name, t] : res.tensors) {
    if (name == e.name) continue;
    EXPECT_GT(t.rel_output_error_rtn, 0.0) << name;
    EXPECT_LT(t.rel_output_error, 0.95 * t.rel_output_error_rtn) << name;
  }

  // Streaming: every tensor is handed over once, right after its block, with the same bytes,
  // and none is kept to the end.
  std::vector<std::string> order;
  std::map<std::string, std::vector<uint8_t>> handed;
  o.on_done = [&](const std::string& name, const PrecomputedTensor& t) {
    EXPECT_FALSE(handed.count(name)) << name;
    order.push_back(name);
    handed[name] = t.bytes;
  };
  const SequentialResult streamed = quantize_sequential(m, tokens, types, o);
  EXPECT_TRUE(streamed.tensors.empty());
  ASSERT_EQ(handed.size(), res.tensors.size());
  for (const auto& [name, t] : res.tensors) EXPECT_EQ(handed.at(name), t.bytes) << name;
  EXPECT_EQ(order.front(), "token_embd.weight");
  EXPECT_EQ(order.back(), "output.weight");
  EXPECT_EQ(order[1].rfind("blk.0.", 0), 0u) << order[1];
}

// AWQ records, per group, the α it chose and how far apart its input channels' mean|x| are.
TEST(GptqModel, SequentialAwqRecordsAlphaAndInputSpreadPerGroup) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens = calibration_tokens(m);
  SequentialOptions o;
  o.calib.n_samples = 2;
  o.calib.n_ctx = 64;
  o.awq = true;
  o.awq_objective = AwqObjective::Layer;
  o.awq_grid = 4;
  const SequentialResult res = quantize_sequential(m, tokens, q4_k_m_types(m), o);
  ASSERT_EQ(res.awq_alpha.size(), 8u * 3);  // q/k/v, gate/up and down in each block
  ASSERT_EQ(res.awq_input_spread.size(), res.awq_alpha.size());
  for (const auto& [name, a] : res.awq_alpha) {
    EXPECT_TRUE(a >= 0 && a <= 1) << name;
    const double spread = res.awq_input_spread.at(name);
    EXPECT_TRUE(std::isfinite(spread) && spread >= 1) << name << ": " << spread;
  }
}

// With fp targets the driver keeps the reference activations too and still quantizes every
// planned weight (the targets move W, so no bound against rounding W itself is expected).
TEST(GptqModel, SequentialDriverWithFpTargetsKeepsBothActivationSets) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens = calibration_tokens(m);
  const auto types = q4_k_m_types(m);
  SequentialOptions o;
  o.calib.n_samples = 2;
  o.calib.n_ctx = 64;
  o.fp_targets = true;
  const SequentialResult res = quantize_sequential(m, tokens, types, o);
  EXPECT_EQ(res.activation_bytes, 2u * 2 * 64 * 256 * 4);
  EXPECT_EQ(res.tensors.size(), 8u * 7 + 2);
  for (const auto& [name, t] : res.tensors) EXPECT_GT(t.rel_rms_error, 0.0) << name;
}

TEST(Cli, QuantizeGgufWithGptqRecordsTheMethod) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string calib = test::shared_path("data/calibration/calib-en-1mb.txt");
  auto r =
      test::run_cli({"quantize", model, "-o", dir.file("g.gguf"), "--type", "Q4_K_M", "--method",
                     "gptq", "--calib", calib, "--calib-samples", "4", "--calib-ctx", "64", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(GgufFile::open(dir.file("g.gguf"))->get_string("lowbit.quantize.method"),
            "gptq sequential calib=4x64 damp=0.1 act_order=0");
  // Without --method, calibration text means GPTQ, and quantize says so.
  r = test::run_cli({"quantize", model, "-o", dir.file("d.gguf"), "--type", "Q4_K_M", "--calib",
                     calib, "--calib-samples", "4", "--calib-ctx", "64"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("method: gptq (the default"), std::string::npos) << r.err;
  EXPECT_EQ(test::read_file(dir.file("d.gguf")), test::read_file(dir.file("g.gguf")));
  r = test::run_cli({"quantize", model, "-o", dir.file("x.gguf"), "--type", "Q4_K_M", "--method",
                     "gptq", "--calib", calib, "--act-order", "--no-act-order"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--act-order excludes --no-act-order"), std::string::npos) << r.err;
  // The reference forward passes are named in the label (and so in the checkpoint's
  // fingerprint); a kernel name that does not exist is refused.
  r = test::run_cli({"quantize", model, "-o", dir.file("r.gguf"), "--type", "Q4_K_M", "--method",
                     "gptq", "--calib", calib, "--calib-samples", "4", "--calib-ctx", "64", "-q",
                     "--calib-kernels", "reference"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(GgufFile::open(dir.file("r.gguf"))->get_string("lowbit.quantize.method"),
            "gptq sequential calib=4x64 damp=0.1 act_order=0 kernels=reference");
  r = test::run_cli({"quantize", model, "-o", dir.file("y.gguf"), "--method", "gptq", "--calib",
                     calib, "--calib-kernels", "int8"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib-kernels"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("y.gguf")));
}

// The quantized path on the fast kernels (the default) against the fp32 reference: block 0's
// q/k/v see the same inputs (the normalized embeddings) and come out the same; the blocks
// after a quantized one see 8-bit-activation outputs, so some bytes move, and every tensor
// stays within 5% of the reference run's output error and below rounding's.
TEST(GptqModel, SequentialDriverOnTheFastKernelsMatchesTheReferencePath) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const auto tokens = calibration_tokens(m);
  const auto types = q4_k_m_types(m);
  SequentialOptions o = four_windows_of_64();
  ASSERT_TRUE(o.fast_kernels);
  const SequentialResult fast = quantize_sequential(m, tokens, types, o);
  o.fast_kernels = false;
  const SequentialResult ref = quantize_sequential(m, tokens, types, o);
  ASSERT_EQ(fast.tensors.size(), ref.tensors.size());
  for (const char* name : {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"})
    EXPECT_EQ(fast.tensors.at(name).bytes, ref.tensors.at(name).bytes) << name;
  size_t moved = 0;
  for (const auto& [name, r] : ref.tensors) {
    const PrecomputedTensor& f = fast.tensors.at(name);
    moved += f.bytes != r.bytes;
    if (name == "token_embd.weight") continue;
    EXPECT_NEAR(f.rel_output_error, r.rel_output_error, 0.05 * r.rel_output_error) << name;
    EXPECT_LT(f.rel_output_error, 0.95 * f.rel_output_error_rtn) << name;
  }
  EXPECT_GT(moved, 0u);  // the option reaches the engine
}

}  // namespace
}  // namespace lowbit

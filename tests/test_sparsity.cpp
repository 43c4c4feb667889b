// Pruning (lowbit/sparsity.h): the masks' patterns, SparseGPT's sweep against the one-shot
// rules on a layer's output error, zeros kept through rounding, and the job's rules; then
// structured pruning (lowbit/structured_prune.h).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "algo/weight_edits.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "lowbit/gptq.h"
#include "lowbit/job.h"
#include "lowbit/job_options.h"
#include "lowbit/quant.h"
#include "lowbit/sparsity.h"
#include "lowbit/structured_prune.h"
#include "lowbit/topology.h"
#include "lowbit/model_grad.h"
#include "lowbit/tokenizer.h"
#include "lowbit/calibration.h"
#include "lowbit/file_io.h"
#include "test_support.h"

namespace lowbit {
namespace {

// Every group of m consecutive values of a row has at most n non-zero ones.
bool follows_nm(const std::vector<float>& w, int n, int m) {
  for (size_t g = 0; g < w.size(); g += m) {
    int kept = 0;
    for (int k = 0; k < m; ++k) kept += w[g + k] != 0;
    if (kept > n) return false;
  }
  return true;
}

std::vector<float> masked(std::vector<float> w, const std::vector<uint8_t>& mask) {
  for (size_t i = 0; i < w.size(); ++i)
    if (mask[i]) w[i] = 0;
  return w;
}

// A job on tinyllm-8m writing `output` as `type`; the calibrated methods get a small
// calibration (4 windows of 64 tokens).
JobSettings tinyllm_job(const std::string& output, const std::string& type,
                        const std::string& method) {
  JobSettings s;
  s.job.model = test::shared_path("models/tinyllm-8m");
  s.job.output = output;
  s.type = type;
  s.method = method;
  if (method != "rtn") {
    s.job.calib.text = test::shared_path("data/calibration/calib-en-1mb.txt");
    s.job.calib.samples = 4;
    s.job.calib.ctx = 64;
  }
  return s;
}

// A layer's inputs with correlated channels of very different sizes, as real activations
// are: X = Z·A with a few channels scaled up. Returns H = XᵀX / n [cols, cols].
std::vector<double> correlated_hessian(uint64_t cols, uint64_t n, uint32_t seed) {
  const std::vector<float> z = test::gaussian(n * cols, seed),
                           a = test::gaussian(cols * cols, seed + 1);
  std::vector<double> x(n * cols, 0.0);
  for (uint64_t t = 0; t < n; ++t)
    for (uint64_t k = 0; k < cols; ++k)
      for (uint64_t j = 0; j < cols; ++j)
        x[t * cols + j] += z[t * cols + k] * (a[k * cols + j] * 0.3 + (k == j ? 1.0 : 0.0));
  for (uint64_t t = 0; t < n; ++t)
    for (uint64_t j = 0; j < cols; j += 9) x[t * cols + j] *= 6;  // outlier channels
  std::vector<double> h(cols * cols, 0.0);
  for (uint64_t t = 0; t < n; ++t)
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t j = 0; j < cols; ++j) h[i * cols + j] += x[t * cols + i] * x[t * cols + j] / n;
  return h;
}

// tr(Δ H Δᵀ) / tr(W H Wᵀ): the layer's relative output error on the inputs behind H.
double output_error(const std::vector<float>& w, const std::vector<float>& q,
                    const std::vector<double>& h, uint64_t rows, uint64_t cols) {
  double err = 0, ref = 0;
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t j = 0; j < cols; ++j) {
        const double di = w[r * cols + i] - q[r * cols + i], dj = w[r * cols + j] - q[r * cols + j];
        err += di * h[i * cols + j] * dj;
        ref += double{w[r * cols + i]} * h[i * cols + j] * w[r * cols + j];
      }
  return err / ref;
}

std::vector<float> diagonal(const std::vector<double>& h, uint64_t cols) {
  std::vector<float> d(cols);
  for (uint64_t j = 0; j < cols; ++j) d[j] = static_cast<float>(h[j * cols + j]);
  return d;
}

// GPTQ onto the F32 grid with `o`: SparseGPT without quantization.
std::vector<float> sweep_f32(const std::vector<float>& w, uint64_t rows, uint64_t cols,
                             const std::vector<double>& h, const GptqOptions& o) {
  std::vector<float> out(rows * cols);
  gptq_quantize_rows(DType::F32, w.data(), rows, cols, h, nullptr, o,
                     reinterpret_cast<uint8_t*>(out.data()));
  return out;
}

TEST(Sparsity, PatternsParseAndBadOnesAreNamed) {
  const SparsityPattern p = parse_nm("2:4");
  EXPECT_EQ(p.n, 2);
  EXPECT_EQ(p.m, 4);
  EXPECT_DOUBLE_EQ(p.share(), 0.5);
  EXPECT_EQ(sparsity_label(PruneMethod::Wanda, p), "wanda 2:4");
  EXPECT_EQ(sparsity_label(PruneMethod::SparseGpt, unstructured(0.5)), "sparsegpt 50%");
  for (const char* bad : {"2", "4:2", "0:4", "2:4x", "a:b", "2:128", ":4"})
    EXPECT_NE(test::expect_error([&] { parse_nm(bad); }).find(bad), std::string::npos) << bad;
  EXPECT_NE(test::expect_error([] { validate(unstructured(1.0)); }).find("outside [0, 1)"),
            std::string::npos);
  EXPECT_NE(test::expect_error([] {
              SparsityPattern p = parse_nm("2:4");
              p.ratio = 0.5;
              validate(p);
            }).find("both given"),
            std::string::npos);
  EXPECT_EQ(prune_method_from_name("wanda"), PruneMethod::Wanda);
  EXPECT_FALSE(prune_method_from_name("obs"));
}

TEST(Sparsity, MasksHaveTheExactPatternAndWandaWeighsTheInputs) {
  const uint64_t rows = 16, cols = 64;
  const std::vector<float> w = test::gaussian(rows * cols, 3);
  std::vector<float> norms(cols, 1.0f);
  norms[5] = 1e6f;  // a channel whose inputs are huge: wanda keeps its weights
  for (PruneMethod pm : {PruneMethod::Magnitude, PruneMethod::Wanda}) {
    SCOPED_TRACE(prune_method_name(pm));
    const auto nm = prune_mask(pm, w.data(), rows, cols, norms.data(), parse_nm("2:4"));
    EXPECT_TRUE(follows_nm(masked(w, nm), 2, 4));
    EXPECT_EQ(std::count(nm.begin(), nm.end(), 1), int64_t(rows * cols / 2));
    const auto half = prune_mask(pm, w.data(), rows, cols, norms.data(), unstructured(0.5));
    EXPECT_EQ(std::count(half.begin(), half.end(), 1), int64_t(rows * cols / 2));
    uint64_t pruned_col5 = 0;
    for (uint64_t r = 0; r < rows; ++r) {
      pruned_col5 += half[r * cols + 5];
      if (pm == PruneMethod::Wanda) {  // per row: each row loses exactly its half
        EXPECT_EQ(std::count(half.begin() + r * cols, half.begin() + (r + 1) * cols, 1), 32);
      }
    }
    if (pm == PruneMethod::Wanda) {
      EXPECT_EQ(pruned_col5, 0u);
    }
  }
  // Magnitude compares the whole matrix: the smallest weights go, whatever their row.
  std::vector<float> rowscale = w;
  for (uint64_t c = 0; c < cols; ++c) rowscale[c] *= 1e-3f;  // row 0 is tiny
  const auto mag =
      prune_mask(PruneMethod::Magnitude, rowscale.data(), rows, cols, nullptr, unstructured(0.5));
  EXPECT_EQ(std::count(mag.begin(), mag.begin() + cols, 1), int64_t(cols));
  EXPECT_NE(test::expect_error([&] {
              prune_mask(PruneMethod::Wanda, w.data(), rows, cols, nullptr, unstructured(0.5));
            }).find("norms"),
            std::string::npos);
}

TEST(Sparsity, SparseGptBeatsWandaAndMagnitudeOnTheLayerOutput) {
  const uint64_t rows = 32, cols = 72;
  const std::vector<double> h = correlated_hessian(cols, 512, 11);
  const std::vector<float> w = test::gaussian(rows * cols, 12), d = diagonal(h, cols);
  for (const SparsityPattern& p : {unstructured(0.5), parse_nm("2:4")}) {
    SCOPED_TRACE(pattern_label(p));
    const double mag = output_error(
        w, masked(w, prune_mask(PruneMethod::Magnitude, w.data(), rows, cols, nullptr, p)), h, rows,
        cols);
    const double wanda = output_error(
        w, masked(w, prune_mask(PruneMethod::Wanda, w.data(), rows, cols, d.data(), p)), h, rows,
        cols);
    GptqOptions o;
    o.act_order = false;
    o.prune = p;
    const std::vector<float> sgpt = sweep_f32(w, rows, cols, h, o);
    const double sparse = output_error(w, sgpt, h, rows, cols);
    EXPECT_NEAR(zero_share(sgpt.data(), sgpt.size()), p.share(), 0.01);
    if (p.structured()) {
      EXPECT_TRUE(follows_nm(sgpt, p.n, p.m));
    }
    EXPECT_LT(wanda, mag);
    EXPECT_LT(sparse, 0.8 * wanda) << "magnitude " << mag << " wanda " << wanda;
    // Wanda's mask kept by the sweep, whose updates lower the error below Wanda's own.
    const auto wanda_mask = prune_mask(PruneMethod::Wanda, w.data(), rows, cols, d.data(), p);
    GptqOptions keep;
    keep.act_order = true;  // the mask follows the columns through the permutation
    keep.mask = wanda_mask.data();
    const std::vector<float> updated = sweep_f32(w, rows, cols, h, keep);
    for (size_t i = 0; i < updated.size(); ++i) ASSERT_EQ(updated[i] == 0, wanda_mask[i] == 1) << i;
    EXPECT_LT(output_error(w, updated, h, rows, cols), 0.9 * wanda);
  }
}

// Every type whose grid can hold 0 keeps the mask's zeros, rounded to nearest (with and
// without importance) or by GPTQ, and SparseGPT's zeros survive its quantization: the types
// with a min or an offset get a grid that holds 0 (quant/affine_grids.h), and their K types'
// row rescale keeps it.
TEST(Sparsity, ZerosSurviveRoundingOnGridsWithAZero) {
  const uint64_t rows = 8, cols = 256;
  const std::vector<double> h = correlated_hessian(cols, 300, 21);
  const std::vector<float> w = test::gaussian(rows * cols, 22);
  const auto mask =
      prune_mask(PruneMethod::Magnitude, w.data(), rows, cols, nullptr, unstructured(0.5));
  const std::vector<float> wm = masked(w, mask);
  std::vector<float> importance(cols);
  for (uint64_t j = 0; j < cols; ++j) importance[j] = static_cast<float>(h[j * cols + j]);
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q5_0, DType::Q3_K, DType::Q6_K, DType::F16,
                  DType::BF16, DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::Q4_K, DType::Q5_K}) {
    SCOPED_TRACE(dtype_name(t));
    const auto& tr = traits(t);
    std::vector<uint8_t> bytes(rows * cols / tr.block_size * tr.type_size);
    std::vector<float> y(rows * cols);
    const float* no_importance = nullptr;
    for (const float* imp : {no_importance, static_cast<const float*>(importance.data())}) {
      quantize_rows(t, wm.data(), rows, cols, imp, 1, bytes.data());
      dequantize_values(t, bytes.data(), y.size(), y.data());
      for (size_t i = 0; i < y.size(); ++i)
        if (mask[i]) {
          ASSERT_EQ(y[i], 0.0f) << "rtn, value " << i << (imp ? " with importance" : "");
        }
    }
    GptqOptions o;
    o.mask = mask.data();
    gptq_quantize_rows(t, w.data(), rows, cols, h, nullptr, o, bytes.data());
    dequantize_values(t, bytes.data(), y.size(), y.data());
    for (size_t i = 0; i < y.size(); ++i)
      if (mask[i]) {
        ASSERT_EQ(y[i], 0.0f) << "gptq, value " << i;
      }
    GptqOptions s;
    s.prune = parse_nm("2:4");
    gptq_quantize_rows(t, w.data(), rows, cols, h, nullptr, s, bytes.data());
    dequantize_values(t, bytes.data(), y.size(), y.data());
    EXPECT_TRUE(follows_nm(y, 2, 4));
    s.prune = unstructured(0.5);
    gptq_quantize_rows(t, w.data(), rows, cols, h, nullptr, s, bytes.data());
    dequantize_values(t, bytes.data(), y.size(), y.data());
    EXPECT_GE(zero_share(y.data(), y.size()), 0.5);
  }
}

TEST(Sparsity, JobRulesNameTheBadCombination) {
  test::TempDir dir;
  auto job = [&](const std::string& method, const std::string& extra, const std::string& value) {
    JobSettings s = tinyllm_job(dir.file("o.gguf"), "Q4_K_M", method);
    set_job_option(s, extra, value);
    return make_job(s);
  };
  auto error_of = [&](const QuantizeJob& j) { return test::expect_error([&] { validate(j); }); };
  EXPECT_NE(error_of(job("rtn", "prune", "wanda")).find("without a sparsity"), std::string::npos);
  QuantizeJob j = job("rtn", "sparsity", "0.5");
  EXPECT_EQ(resolved_prune_method(j), PruneMethod::Magnitude);
  validate(j);
  j.prune = PruneMethod::Wanda;
  EXPECT_NE(error_of(j).find("imatrix or gptq"), std::string::npos);
  j = job("imatrix", "nm", "2:4");
  EXPECT_EQ(resolved_prune_method(j), PruneMethod::Wanda);
  j.prune = PruneMethod::SparseGpt;
  EXPECT_NE(error_of(j).find("needs method gptq"), std::string::npos);
  j = job("gptq", "sparsity", "0.5");
  EXPECT_EQ(resolved_prune_method(j), PruneMethod::SparseGpt);
  validate(j);
  EXPECT_NE(error_of(job("awq", "sparsity", "0.5")).find("method awq does not prune"),
            std::string::npos);
  j = job("rtn", "sparsity", "0.5");
  j.sparsity.n = 2, j.sparsity.m = 4;
  EXPECT_NE(error_of(j).find("both given"), std::string::npos);
  j = job("rtn", "sparsity", "0.5");
  j.target = W8A8Target{};
  j.output = dir.file("w8a8");
  EXPECT_NE(error_of(j).find("not W8A8 or FP8 checkpoints"), std::string::npos);
  EXPECT_NE(test::expect_error([&] { job("rtn", "nm", "4:2"); }).find("4:2"), std::string::npos);
}

// The int2..int8 layout keeps the zeros too (its zero point is an integer): magnitude 2:4
// with rounding to nearest, SparseGPT 50% inside GPTQ's sweep; and OWL's shares there.
TEST(Sparsity, TheAffineLayoutKeepsThePrunedZeros) {
  test::TempDir dir;
  for (const char* method : {"rtn", "gptq"}) {
    SCOPED_TRACE(method);
    JobSettings s = tinyllm_job(dir.file(method), "int4", method);
    const bool gptq = std::string(method) == "gptq";
    if (gptq) {
      set_job_option(s, "sparsity", "0.5");
      set_job_option(s, "owl", "0.05");
    } else {
      set_job_option(s, "nm", "2:4");
    }
    const QuantizeReport r = run_quantize_job(make_job(s));
    EXPECT_EQ(r.sparsity, gptq ? "sparsegpt 50% owl(λ 0.05, M 5)" : "magnitude 2:4");
    const Model m = load_model(s.job.output);
    double mean = 0;
    size_t linears = 0;
    for (const TensorReport& t : r.tensors) {
      if (!is_block_linear(t.name)) continue;
      const TensorView& v = m.tensor(t.name);
      const std::vector<float> y = to_f32(v);
      EXPECT_NEAR(t.zero_share, zero_share(y.data(), y.size()), 1e-12) << t.name;
      if (!gptq) {
        EXPECT_TRUE(follows_nm(y, 2, 4)) << t.name;
      }
      mean += t.zero_share, ++linears;
    }
    EXPECT_EQ(linears, 7u * m.config.n_layer);
    EXPECT_NEAR(mean / linears, 0.5, 0.01);  // a few rounded weights add zeros
  }
}

// OWL: a block whose linears read a few very large input channels has the most outlier
// scores and keeps the most weights; the blocks' shares average to the target.
TEST(Sparsity, OwlKeepsMoreOfTheBlockWithOutliersAndTheAverageShare) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  SparsityPattern p = unstructured(0.5);
  p.owl_lambda = 0.05;
  std::map<std::string, std::vector<float>> norms;
  for (const TensorView& t : m.tensors) {
    if (!is_block_linear(t.name)) continue;
    std::vector<float> n2(t.row_len(), 1.0f);
    if (block_of(t.name) == 3)
      for (int j = 0; j < 4; ++j) n2[j] = 1e4f;  // four outlier channels
    norms[t.name] = n2;
  }
  auto lookup = [&](const std::string& name) -> const std::vector<float>* {
    auto it = norms.find(name);
    return it == norms.end() ? nullptr : &it->second;
  };
  const std::vector<double> share = owl_block_ratios(m, p, lookup);
  ASSERT_EQ(share.size(), m.config.n_layer);
  double mean = 0;
  for (double s : share) {
    mean += s / share.size();
    EXPECT_GE(s, p.ratio - 2 * p.owl_lambda - 1e-12);
    EXPECT_LE(s, p.ratio + 2 * p.owl_lambda + 1e-12);
  }
  EXPECT_NEAR(mean, p.ratio, 1e-12);
  EXPECT_EQ(std::min_element(share.begin(), share.end()) - share.begin(), 3);
  EXPECT_LT(share[3], p.ratio - p.owl_lambda);
  p.block_ratios = share;
  EXPECT_EQ(pattern_for(p, "blk.3.ffn_up.weight").ratio, share[3]);
  SparsityPattern high = p;  // a block's share near the top is a plain share, valid
  high.ratio = 0.7, high.owl_lambda = 0.1, high.block_ratios.assign(m.config.n_layer, 0.85);
  EXPECT_NO_THROW(validate(pattern_for(high, "blk.0.attn_q.weight")));
  EXPECT_EQ(pattern_label(p), "50% owl(λ 0.05, M 5)");
  norms.erase("blk.5.attn_v.weight");
  EXPECT_NE(test::expect_error([&] { owl_block_ratios(m, p, lookup); }).find("blk.5.attn_v.weight"),
            std::string::npos);
  p.owl_lambda = 0.3;
  EXPECT_NE(test::expect_error([&] { validate(p); }).find("outside [0, 1)"), std::string::npos);
}

// The job with OWL: each block's linears lose their block's share, the file says so.
TEST(Sparsity, OwlJobPrunesEachBlockByItsShare) {
  test::TempDir dir;
  JobSettings s = tinyllm_job(dir.file("owl.gguf"), "F16", "imatrix");
  set_job_option(s, "sparsity", "0.5");
  set_job_option(s, "owl", "0.1");
  const QuantizeReport r = run_quantize_job(make_job(s));
  EXPECT_EQ(r.sparsity, "wanda 50% owl(λ 0.1, M 5)");
  std::map<int, double> share;
  for (const TensorReport& t : r.tensors)
    if (is_block_linear(t.name)) share[block_of(t.name)] = t.zero_share;  // same in a block
  double mean = 0, lo = 1, hi = 0;
  for (const auto& [l, z] : share)
    mean += z / share.size(), lo = std::min(lo, z), hi = std::max(hi, z);
  EXPECT_NEAR(mean, 0.5, 0.005);
  EXPECT_GT(hi - lo, 0.05) << "the blocks' shares should differ";
  s.job.calib.text.clear();
  s.method = "rtn";
  EXPECT_NE(test::expect_error([&] { validate(make_job(s)); }).find("OWL"), std::string::npos);
}

// The whole job: every block linear of the file holds the pattern, nothing else is pruned,
// and the file says how it was pruned.
TEST(Sparsity, PrunedFilesKeepThePatternInEveryBlockLinear) {
  test::TempDir dir;
  for (const char* method : {"rtn", "gptq"}) {
    SCOPED_TRACE(method);
    // Q4_K_M: Q4_K (a min: the zero-holding grids) and Q6_K linears.
    JobSettings s = tinyllm_job(dir.file(std::string(method) + ".gguf"), "Q4_K_M", method);
    set_job_option(s, "nm", "2:4");
    const QuantizeReport r = run_quantize_job(make_job(s));
    EXPECT_EQ(r.sparsity, std::string(method) == "gptq" ? "sparsegpt 2:4" : "magnitude 2:4");
    const Model m = load_model(s.job.output);
    EXPECT_EQ(GgufFile::open(s.job.output)->get_string("lowbit.quantize.sparsity"), r.sparsity);
    size_t linears = 0;
    for (const TensorReport& t : r.tensors) {
      const TensorView& v = m.tensor(t.name);
      std::vector<float> y(v.n_values());
      dequantize_values(v.dtype, v.data, y.size(), y.data());
      if (t.name.rfind("blk.", 0) == 0 && t.shape.size() == 2) {
        ++linears;
        EXPECT_TRUE(follows_nm(y, 2, 4)) << t.name;
        EXPECT_NEAR(t.zero_share, zero_share(y.data(), y.size()), 1e-12) << t.name;
        EXPECT_GE(t.zero_share, 0.5) << t.name;
      } else {  // not pruned: only the zeros of rounding (2% in Q6_K's output.weight)
        EXPECT_LT(zero_share(y.data(), y.size()), 0.05) << t.name;
      }
    }
    EXPECT_EQ(linears, 7u * m.config.n_layer);
  }
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

std::vector<float> last_logits(const Model& m) {
  std::vector<int32_t> tokens;
  for (int i = 0; i < 24; ++i) tokens.push_back(3 + (i * 131) % 4000);
  Engine e(m, {2, static_cast<uint32_t>(tokens.size())});
  std::vector<float> out;
  e.eval(tokens.data(), tokens.size(), out, true);
  return out;
}

// Channels and groups that add nothing to the residual stream (their ffn_down columns or
// attn_output columns are zero) score lowest, so removing them leaves the function unchanged.
TEST(StructuredPrune, RemovingWhatAddsNothingKeepsTheLogits) {
  Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const ModelConfig c = m.config;
  const uint32_t per_group = c.n_head / c.n_head_kv;
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    std::vector<float> down = decoded_f32(m, p + "ffn_down.weight");
    for (uint64_t r = 0; r < c.n_embd; ++r)
      for (uint64_t k = 0; k < c.n_ff; k += 4) down[r * c.n_ff + k] = 0;  // one channel in 4
    m.set_f32(p + "ffn_down.weight", down);
    std::vector<float> o = decoded_f32(m, p + "attn_output.weight");
    const uint64_t g = l % c.n_head_kv, q_dim = c.q_dim();  // a different group per block
    for (uint64_t r = 0; r < c.n_embd; ++r)
      for (uint64_t col = g * per_group * c.head_dim; col < (g + 1) * per_group * c.head_dim; ++col)
        o[r * q_dim + col] = 0;
    m.set_f32(p + "attn_output.weight", o);
  }
  const Model pruned = prune_structured(m, {0.25, 1}, nullptr);
  EXPECT_EQ(pruned.config.n_ff, c.n_ff * 3 / 4);
  EXPECT_EQ(pruned.config.n_head_kv, c.n_head_kv - 1);
  EXPECT_EQ(pruned.config.n_head, c.n_head - per_group);
  EXPECT_EQ(pruned.tensor("blk.3.attn_q.weight").shape,
            (std::vector<uint64_t>{pruned.config.q_dim(), c.n_embd}));
  EXPECT_EQ(pruned.tensor("blk.3.ffn_down.weight").shape,
            (std::vector<uint64_t>{c.n_embd, pruned.config.n_ff}));
  EXPECT_LT(test::max_relative_difference(last_logits(m), last_logits(pruned)), 1e-4);
  // Removing channels that matter changes them.
  const Model cut = prune_structured(m, {0.5, 0}, nullptr);
  EXPECT_GT(test::max_relative_difference(last_logits(m), last_logits(cut)), 1e-3);
  EXPECT_EQ(structured_label(c, {0.25, 1}), "ffn 768->576 kv_heads 4->3");
}

TEST(StructuredPrune, BadOptionsNameTheModelOrTheFile) {
  test::TempDir dir;
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  EXPECT_NE(test::expect_error([&] {
              prune_structured(m, {0, 4}, nullptr);
            }).find("leaves none"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              prune_structured(m, {1.0, 0}, nullptr);
            }).find("[0, 1)"),
            std::string::npos);
  QuantizeJob j;
  j.model = test::shared_path("models/tinyllm-8m");
  j.output = dir.file("o.gguf");
  j.distill.steps = 10;  // distillation without structured pruning or text
  EXPECT_NE(test::expect_error([&] { validate(j); }).find("structurally pruned"),
            std::string::npos);
  j.distill.steps = 0;
  j.structured.ffn_share = 0.25;
  j.calib.stats = dir.file("stats.gguf");
  EXPECT_NE(test::expect_error([&] { validate(j); }).find("unpruned model"), std::string::npos);
  j.calib.stats.clear();
  j.target = AffineTarget{};
  j.output = dir.path();
  EXPECT_NE(test::expect_error([&] { validate(j); }).find("must be a GGUF type"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {

// Structured pruning recovered by distillation: the label says so, the distilled model is
// closer to the unpruned one on the calibration text than the pruned one.
TEST(PruneCli, DistillationBringsThePrunedModelBackTowardsTheUnpruned) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string text = test::shared_path("data/calibration/calib-en-1mb.txt");
  std::vector<std::string> args = {"prune",         model, "--prune-ffn", "0.25", "--calib",
                                   text,            "--calib-samples", "8", "--calib-ctx",
                                   "128",           "--type", "F16", "-q", "--json"};
  auto run = [&](const std::string& out, int steps) {
    std::vector<std::string> a = args;
    for (const std::string& x : {std::string("-o"), out, std::string("--distill-steps"),
                                 std::to_string(steps), std::string("--distill-lr"),
                                 std::string("3e-5")})
      a.push_back(x);
    const auto r = test::run_cli(a);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return nlohmann::json::parse(r.out);
  };
  const std::string pruned = dir.file("pruned.gguf"), distilled = dir.file("distilled.gguf");
  run(pruned, 0);
  EXPECT_NE(run(distilled, 12).at("structured").get<std::string>().find("distilled 12 steps"),
            std::string::npos);
  // KL divergence to the unpruned model on calibration windows the training used
  const Model base = load_model(model), a = load_model(pruned), b = load_model(distilled);
  const auto tokens =
      Tokenizer::create(base.vocab, base.source)->encode(read_text_file(text), false);
  const auto windows = sample_windows(tokens, 8, 128, 1, base.vocab.bos);
  auto kld = [&](const Model& m) {
    double sum = 0;
    for (const auto& w : windows) {
      Engine teacher(base, {2, 128}), student(m, {2, 128});
      std::vector<float> zt, zs, d(w.size() * base.config.n_vocab);
      teacher.eval(w.data(), w.size(), zt, true);
      student.eval(w.data(), w.size(), zs, true);
      sum += train::kd_loss(zs.data(), zt.data(), w.size(), base.config.n_vocab, 1.0, d.data());
    }
    return sum / windows.size();
  };
  const double before = kld(a), after = kld(b);
  EXPECT_LT(after, 0.9 * before) << before << " -> " << after;
}

TEST(PruneCli, WritesAnF16FileAndRefusesWhatItCannotDo) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m"), out = dir.file("p.gguf");
  auto r = test::run_cli(
      {"prune", model, "-o", out, "--method", "magnitude", "--sparsity", "0.5", "-q", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out).at("sparsity"), "magnitude 50%");
  const Model m = load_model(out);
  EXPECT_EQ(m.tensor("blk.0.ffn_up.weight").dtype, DType::F16);
  const std::vector<float> up = decoded_f32(m, "blk.0.ffn_up.weight");
  EXPECT_NEAR(zero_share(up.data(), up.size()), 0.5, 0.05);  // magnitude: per matrix
  struct Bad {
    std::vector<std::string> args;
    const char* message;
  };
  for (const Bad& b :
       {Bad{{}, "nothing to prune"},
        Bad{{"--method", "wanda", "--nm", "2:4"}, "needs calibration text"},
        Bad{{"--nm", "3:2"}, "3:2"},
        Bad{{"--method", "magnitude", "--sparsity", "0.5", "--nm", "2:4"}, "both given"}}) {
    std::vector<std::string> args = {"prune", model, "-o", dir.file("bad.gguf")};
    args.insert(args.end(), b.args.begin(), b.args.end());
    const auto e = test::run_cli(args);
    EXPECT_EQ(e.exit_code, 1) << b.message;
    EXPECT_NE(e.err.find(b.message), std::string::npos) << e.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("bad.gguf")));
  }
}

}  // namespace
}  // namespace lowbit

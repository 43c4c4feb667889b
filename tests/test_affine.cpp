// Generic affine (int2..int8) quantization: bit packing, granularities, range choices and
// the safetensors checkpoint that `lowbit perplexity` runs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>

#include "lowbit/affine.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/safetensors.h"
#include "lowbit/tensor.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using test::shared_path;
using test::TempDir;

using test::gaussian;

double rel_error(const std::vector<float>& x, uint64_t rows, uint64_t cols, const AffineSpec& s) {
  const AffineTensor t = affine_quantize(x.data(), rows, cols, s);
  std::vector<float> y(x.size());
  affine_dequantize(t, rows, cols, s, y.data());
  double e = 0, n = 0;
  for (size_t i = 0; i < x.size(); ++i) e += (x[i] - y[i]) * (x[i] - y[i]), n += x[i] * x[i];
  return std::sqrt(e / n);
}

TEST(Affine, PackUnpackRoundTripsEveryWidthWithOddLengths) {
  std::mt19937 rng(1);
  for (int bits = 1; bits <= 8; ++bits) {
    for (uint64_t n : {1u, 7u, 37u, 128u}) {
      std::vector<uint8_t> codes(n), back(n);
      for (auto& c : codes) c = static_cast<uint8_t>(rng() & ((1u << bits) - 1));
      std::vector<uint8_t> packed(packed_row_bytes(n, bits));
      pack_bits(codes.data(), n, bits, packed.data());
      unpack_bits(packed.data(), n, bits, back.data());
      EXPECT_EQ(codes, back) << bits << " bits, n=" << n;
    }
  }
  const uint8_t codes[3] = {1, 2, 3};  // 3 bits LSB first: 001 010 011 -> 0b11010001, 0b0
  uint8_t packed[2];
  pack_bits(codes, 3, 3, packed);
  EXPECT_EQ(packed[0], 0b11010001);
  EXPECT_EQ(packed[1], 0);
}

TEST(Affine, ErrorHalvesPerExtraBitAndStaysInAWindow) {
  const auto x = gaussian(64 * 256, 2);
  double prev = 1;
  for (int bits = 2; bits <= 8; ++bits) {
    AffineSpec s;
    s.bits = bits;
    s.group = 64;
    const double e = rel_error(x, 64, 256, s);
    // Uniform quantizer on N(0,1) groups of 64 (range ~ ±2.4σ): step ≈ 4.8/(2^bits-2).
    const double step = 4.8 / ((1 << bits) - 2);
    EXPECT_GT(e, 0.15 * step) << bits;
    EXPECT_LT(e, 0.6 * step) << bits;
    if (bits > 2) {
      EXPECT_LT(e, prev * 0.65) << bits;
    }
    prev = e;
  }
}

TEST(Affine, GranularitiesAndRangeChoices) {
  auto x = gaussian(32 * 256, 3);
  for (uint64_t c = 0; c < 256; ++c) x[5 * 256 + c] *= 20;  // one loud row hurts per-tensor scales
  AffineSpec s;
  s.group = -1;
  const double per_tensor = rel_error(x, 32, 256, s);
  s.group = 0;
  const double per_channel = rel_error(x, 32, 256, s);
  s.group = 32;
  const double per_group = rel_error(x, 32, 256, s);
  EXPECT_LT(per_channel, per_tensor);
  EXPECT_LT(per_group, per_channel);
  s.range = RangeMethod::Mse;
  EXPECT_LE(rel_error(x, 32, 256, s), per_group);
  // All-positive rows: asymmetric codes use the whole range.
  std::vector<float> pos(x.size());
  for (size_t i = 0; i < x.size(); ++i) pos[i] = std::fabs(x[i]) + 1.0f;
  AffineSpec sym, asym;
  asym.symmetric = false;
  EXPECT_LT(rel_error(pos, 32, 256, asym), 0.7 * rel_error(pos, 32, 256, sym));
}

TEST(Affine, PercentileClipsOutliersToTheTopCode) {
  std::vector<float> x(128);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 16) / 16.0f - 0.5f;
  x[3] = 100.0f;
  AffineSpec s;
  s.bits = 4;
  s.group = 128;
  s.range = RangeMethod::Percentile;
  s.percentile = 95;
  const AffineTensor t = affine_quantize(x.data(), 1, 128, s);
  std::vector<float> y(128);
  affine_dequantize(t, 1, 128, s, y.data());
  EXPECT_LT(y[3], 1.0f);                   // clipped
  EXPECT_NEAR(y[5], x[5], 0.5f / 7 + 1e-3);  // the rest keeps a fine step
}

TEST(Affine, ZerosAndConstantsSurvive) {
  const std::vector<float> zero(256, 0.0f), c(256, 0.3f);
  for (bool symmetric : {true, false}) {
    AffineSpec s;
    s.symmetric = symmetric;
    std::vector<float> y(256);
    affine_dequantize(affine_quantize(zero.data(), 2, 128, s), 2, 128, s, y.data());
    for (float v : y) ASSERT_EQ(v, 0.0f);
    affine_dequantize(affine_quantize(c.data(), 2, 128, s), 2, 128, s, y.data());
    for (float v : y) ASSERT_NEAR(v, 0.3f, 0.3f * 0.01f);
  }
}

TEST(Affine, BadSpecsAreArgumentErrors) {
  AffineSpec s;
  s.bits = 9;
  EXPECT_NE(test::expect_error([&] { validate(s); }).find("bits must be 2..8, got 9"),
            std::string::npos);
  s.bits = 4;
  s.group = -3;
  EXPECT_NE(test::expect_error([&] { validate(s); }).find("group size"), std::string::npos);
}

// Ternary and binary weights on the int2 grid: the codes they may use, TWN's and XNOR-Net's
// scales, and the exact ternary optimum (range mse) against every ternary vector of a group.
TEST(Affine, TernaryAndBinaryKeepTheirLevelsAndScales) {
  const uint64_t rows = 4, cols = 64;
  const auto x = gaussian(rows * cols, 3, 0.02f);
  auto dequantized = [&](const AffineSpec& s) {
    std::vector<float> y(x.size());
    affine_dequantize(affine_quantize(x.data(), rows, cols, s), rows, cols, s, y.data());
    return y;
  };
  AffineSpec s;
  s.bits = 2;
  s.group = 16;
  for (AffineLevels levels : {AffineLevels::Ternary, AffineLevels::Binary}) {
    s.levels = levels;
    const std::vector<float> y = dequantized(s);
    for (uint64_t g = 0; g < x.size() / 16; ++g) {
      double mean = 0, above = 0;
      int count = 0;
      for (int i = 0; i < 16; ++i) mean += std::fabs(x[16 * g + i]) / 16;
      for (int i = 0; i < 16; ++i)
        if (std::fabs(x[16 * g + i]) > 0.7 * mean) above += std::fabs(x[16 * g + i]), ++count;
      const double alpha = levels == AffineLevels::Binary ? mean : above / count;
      for (int i = 0; i < 16; ++i) {
        const float v = y[16 * g + i];
        if (levels == AffineLevels::Binary || v != 0) {
          EXPECT_NEAR(std::fabs(v), alpha, alpha * 1e-3) << "group " << g;
          EXPECT_EQ(v < 0, x[16 * g + i] < 0) << "group " << g;
        }
      }
    }
  }
  // The exact ternary optimum of each group of 8: no vector of {-1, 0, 1}^8 at its best
  // scale has a smaller error.
  s.levels = AffineLevels::Ternary, s.range = RangeMethod::Mse, s.group = 8;
  const std::vector<float> y = dequantized(s);
  for (uint64_t g = 0; g < 8; ++g) {
    const float* xg = &x[8 * g];
    double ours = 0, best = 1e30;
    for (int i = 0; i < 8; ++i) ours += (xg[i] - y[8 * g + i]) * (xg[i] - y[8 * g + i]);
    for (int code = 0; code < 6561; ++code) {
      double xc = 0, cc = 0, xx = 0;
      for (int i = 0, c = code; i < 8; ++i, c /= 3)
        xc += xg[i] * (c % 3 - 1), cc += (c % 3 - 1) * (c % 3 - 1), xx += xg[i] * xg[i];
      best = std::min(best, cc > 0 ? xx - xc * xc / cc : xx);
    }
    EXPECT_LE(ours, best * 1.001 + 1e-12) << "group " << g;  // f16 scales
  }
  AffineSpec bad = s;
  bad.bits = 4;
  EXPECT_NE(test::expect_error([&] {
              validate(bad);
            }).find("ternary weights are stored as int2 symmetric"),
            std::string::npos);
  bad.bits = 2, bad.symmetric = false, bad.levels = AffineLevels::Binary;
  EXPECT_NE(test::expect_error([&] { validate(bad); }).find("binary"), std::string::npos);
}

TEST(Cli, QuantizeTernaryWritesInt2CheckpointsOfThreeLevels) {
  TempDir dir;
  const std::string calib = shared_path("data/calibration/calib-en-1mb.txt");
  struct Case {
    std::vector<std::string> extra;
    int levels;
  };
  const Case cases[] = {{{"--type", "ternary"}, 3},
                        {{"--type", "ternary", "--method", "gptq", "--calib", calib,
                          "--calib-samples", "4", "--calib-ctx", "64", "--format", "gptq"},
                         3},
                        {{"--type", "binary", "--format", "compressed-tensors"}, 2}};
  int k = 0;
  for (const Case& c : cases) {
    const std::string out = dir.file("t" + std::to_string(k++));
    std::vector<std::string> args = {
        "quantize", shared_path("models/tinyllm-8m"), "-o", out, "--group", "64", "-q"};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    auto r = test::run_cli(args);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const Model m = load_model(out);
    const TensorView& t = m.tensor("blk.2.ffn_down.weight");
    std::vector<float> w(t.n_values());
    dequantize_rows(t, 0, t.n_rows(), w.data());
    for (size_t g = 0; g < w.size(); g += 64) {  // groups of 64 along each row
      std::vector<float> v(w.begin() + g, w.begin() + g + 64);
      for (float& a : v) a = std::fabs(a);
      std::sort(v.begin(), v.end());
      v.erase(std::unique(v.begin(), v.end()), v.end());
      ASSERT_LE(v.size(), c.levels == 3 ? 2u : 1u) << c.extra[1] << " group " << g / 64;
      if (c.levels == 2) {
        ASSERT_GT(v[0], 0.0f);
      }
    }
  }
  auto r = test::run_cli({"quantize", shared_path("models/tinyllm-8m"), "-o", dir.file("x"),
                          "--type", "ternary", "--asym"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("ternary weights are stored as int2 symmetric"), std::string::npos) << r.err;
  EXPECT_FALSE(fs::exists(dir.file("x")));
}

TEST(Cli, QuantizeIntWritesACheckpointThatPerplexityRuns) {
  TempDir dir;
  auto r = test::run_cli({"quantize", shared_path("models/tinyllm-8m"), "-o", dir.file("int4"),
                          "--type", "int4", "--group", "64", "--asym", "--range", "mse", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const auto& t : j["tensors"])
    if (t["name"] == "blk.3.ffn_up.weight") {
      EXPECT_EQ(t["type"], "int4");
      EXPECT_GT(t["rel_rms_error"].get<double>(), 0.03);
      EXPECT_LT(t["rel_rms_error"].get<double>(), 0.12);
    }
  EXPECT_TRUE(fs::exists(dir.file("int4/config.json")));
  EXPECT_TRUE(fs::exists(dir.file("int4/tokenizer.model")));
  const Model m = load_model(dir.file("int4"));
  EXPECT_EQ(m.tensor("blk.3.ffn_up.weight").shape, (std::vector<uint64_t>{768, 256}));
  auto p = test::run_cli({"perplexity", dir.file("int4"), "-f",
                          shared_path("data/wikitext-2/wikitext-2-test.txt"), "--chunks", "1",
                          "--json", "-q"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  EXPECT_LT(nlohmann::json::parse(p.out)["ppl"].get<double>(), 400);

  // A checkpoint that lost a scales tensor names it.
  fs::create_directory(dir.file("broken"));
  for (const char* f : {"config.json", "tokenizer.model"})
    fs::copy_file(dir.file(std::string("int4/") + f), dir.file(std::string("broken/") + f));
  auto ck = SafetensorsCheckpoint::open_dir(dir.file("int4"));
  std::vector<OutputTensor> keep;
  for (const TensorView& t : ck->tensors()) {
    if (t.name == "model.layers.2.mlp.up_proj.scales") continue;
    keep.push_back(
        {t, t.nbytes, [t](std::vector<uint8_t>& b) { b.assign(t.data, t.data + t.nbytes); }});
  }
  write_safetensors(dir.file("broken/model.safetensors"), keep, ck->metadata());
  const std::string msg = test::expect_error([&] { load_model(dir.file("broken")); });
  EXPECT_NE(msg.find("tensor 'model.layers.2.mlp.up_proj.scales' is missing"), std::string::npos)
      << msg;
}

TEST(Cli, QuantizeIntNeedsAHuggingFaceSourceAndAnEmptyTarget) {
  TempDir dir;
  auto r = test::run_cli({"quantize", shared_path("models/stories260K/stories260K.bin"), "-o",
                          dir.file("o"), "--type", "int4"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the source must be one too"), std::string::npos) << r.err;
  r = test::run_cli(
      {"quantize", shared_path("models/tinyllm-8m"), "-o", dir.file("o"), "--type", "int9"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("bits must be 2..8"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace lowbit

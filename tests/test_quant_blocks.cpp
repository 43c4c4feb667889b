// Block types: round trips over the traits table, byte layouts judged by llama.cpp's own
// decoder, and quantization error compared with llama.cpp's quantizer on the same rows.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "judge_support.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"
#include "quant/debias.h"
#include "test_support.h"

namespace lowbit {
namespace {

uint64_t row_bytes(DType t, uint64_t row_len) {
  return row_len / traits(t).block_size * traits(t).type_size;
}

std::vector<float> round_trip(DType t, const std::vector<float>& x, uint64_t row_len,
                              const float* imp = nullptr) {
  const uint64_t rows = x.size() / row_len;
  std::vector<uint8_t> q(rows * row_bytes(t, row_len));
  quantize_rows(t, x.data(), rows, row_len, imp, q.data());
  std::vector<float> y(x.size());
  dequantize_values(t, q.data(), x.size(), y.data());
  return y;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y, const float* imp = nullptr,
               uint64_t row_len = 1) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double w = imp ? imp[i % row_len] : 1.0;
    num += w * (x[i] - y[i]) * (x[i] - y[i]);
    den += w * x[i] * x[i];
  }
  return std::sqrt(num / den);
}

using test::gaussian;

// Relative RMS error window for Gaussian rows: a floor (the type really quantizes) and a
// ceiling (it quantizes well). Bits per weight in comments.
struct Window { double lo, hi; };
Window error_window(DType t) {
  switch (t) {
    case DType::Q8_0: return {0.002, 0.006};    // 8.5
    case DType::Q6_K: return {0.01, 0.03};      // 6.56
    case DType::Q5_0: return {0.02, 0.06};      // 5.5
    case DType::Q5_1: return {0.02, 0.06};      // 6.0
    case DType::Q5_K: return {0.02, 0.06};      // 5.5
    case DType::Q4_0: return {0.05, 0.12};      // 4.5
    case DType::Q4_1: return {0.05, 0.12};      // 5.0
    case DType::Q4_K: return {0.05, 0.12};      // 4.5
    case DType::IQ4_NL: return {0.05, 0.12};    // 4.5
    case DType::IQ4_XS: return {0.05, 0.12};    // 4.25
    case DType::Q3_K: return {0.1, 0.25};       // 3.44
    case DType::IQ3_S:
      return {0.1, 0.25};                       // 3.44
    case DType::IQ3_XXS:
      return {0.12, 0.3};                       // 3.06
    case DType::IQ2_S:
      return {0.18, 0.3};                       // 2.56
    case DType::Q2_K: return {0.2, 0.45};       // 2.63
    case DType::IQ2_XS:
      return {0.2, 0.35};  // 2.31
    case DType::IQ2_XXS:
      return {0.25, 0.4};  // 2.06
    case DType::TQ2_0:
      return {0.35, 0.5};  // 2.06, ternary: ~0.44 at the optimum
    case DType::TQ1_0:
      return {0.35, 0.5};  // 1.69, the same grid
    case DType::IQ1_M:
      return {0.35, 0.55};  // 1.75
    case DType::IQ1_S:
      return {0.4, 0.6};  // 1.56
    default: return {0, 0};
  }
}

TEST(QuantBlocks, EveryBlockTypeRoundTripsGaussianRowsInsideItsErrorWindow) {
  const uint64_t row_len = 512;
  const auto x = gaussian(row_len * 16, 1, 0.02f);
  for (DType t : test::block_types()) {
    const double e = rel_rms(x, round_trip(t, x, row_len));
    const Window w = error_window(t);
    EXPECT_GT(e, w.lo) << dtype_name(t);
    EXPECT_LT(e, w.hi) << dtype_name(t);
  }
}

TEST(QuantBlocks, AllZeroRowsDecodeToExactZeros) {
  const std::vector<float> x(512, 0.0f);
  for (DType t : test::block_types())
    for (float y : round_trip(t, x, 256)) ASSERT_EQ(y, 0.0f) << dtype_name(t);
}

TEST(QuantBlocks, ConstantRowsDecodeClose) {
  for (float c : {0.75f, -0.003f}) {
    const std::vector<float> x(512, c);
    for (DType t : test::block_types()) {
      const auto y = round_trip(t, x, 256);
      for (float v : y)
        ASSERT_NEAR(v, c, std::fabs(c) * 0.02) << dtype_name(t) << " constant " << c;
    }
  }
}

TEST(QuantBlocks, OutlierHeavyRowsStayFiniteAndKeepTheOutliers) {
  const uint64_t row_len = 256;
  auto x = gaussian(row_len * 8, 2, 0.01f);
  for (size_t i = 0; i < x.size(); i += 37) x[i] *= 60.0f;  // ~3% outliers, 60 sigma
  for (DType t : test::block_types()) {
    const auto y = round_trip(t, x, row_len);
    for (float v : y) ASSERT_TRUE(std::isfinite(v)) << dtype_name(t);
    // The outliers dominate the energy and stretch the block scales: 2.5 times the Gaussian
    // ceiling.
    EXPECT_LT(rel_rms(x, y), 2.5 * error_window(t).hi) << dtype_name(t);
  }
}

TEST(QuantBlocks, ImportanceLowersTheWeightedError) {
  const uint64_t row_len = 256;
  const auto x = gaussian(row_len * 32, 3);
  std::vector<float> imp(row_len);
  std::mt19937 rng(4);
  std::lognormal_distribution<float> ln(0.0f, 1.5f);
  for (auto& v : imp) v = ln(rng);
  for (DType t : test::block_types()) {
    const double plain = rel_rms(x, round_trip(t, x, row_len), imp.data(), row_len);
    const double weighted = rel_rms(x, round_trip(t, x, row_len, imp.data()), imp.data(), row_len);
    EXPECT_LT(weighted, plain) << dtype_name(t);
  }
}

// 1 - <x, y>_w / <x, x>_w for one row: how much the quantized row y is shrunk towards zero.
double row_shrink(const float* x, const float* y, uint64_t n, const float* w = nullptr) {
  double xx = 0, xy = 0;
  for (uint64_t i = 0; i < n; ++i) {
    const double wi = w ? w[i] : 1.0;
    xx += wi * x[i] * x[i], xy += wi * x[i] * y[i];
  }
  return 1 - xy / xx;
}

// Rounding to nearest leaves the K types' rows unshrunk, with or without importance; the
// other types keep each block's own least-squares parameters.
TEST(QuantBlocks, KTypeRowsAreNotShrunkOtherTypesKeepLeastSquaresScales) {
  const uint64_t row_len = 1024, rows = 16;
  auto x = gaussian(row_len * rows, 8, 0.02f);
  for (size_t i = 0; i < x.size(); i += 61) x[i] *= 5.0f;
  std::vector<float> imp(row_len);
  std::mt19937 rng(9);
  std::lognormal_distribution<float> ln(0.0f, 1.0f);
  for (auto& v : imp) v = ln(rng);
  for (const float* w :
       {static_cast<const float*>(nullptr), static_cast<const float*>(imp.data())}) {
    for (DType t : test::block_types()) {
      const quant::BlockCodec* codec = quant::block_codec(t);
      const uint64_t blen = traits(t).block_size, bsize = traits(t).type_size;
      std::vector<uint8_t> q(rows * row_bytes(t, row_len)), plain(q.size());
      quantize_rows(t, x.data(), rows, row_len, w, q.data());
      for (uint64_t b = 0; b < x.size() / blen; ++b)
        codec->quantize(&x[b * blen], w ? w + b * blen % row_len : nullptr, &plain[b * bsize]);
      if (!codec->debias) {
        EXPECT_EQ(q, plain) << dtype_name(t);
        continue;
      }
      // Within f16's resolution (2^-11): Q2_K and Q3_K rows start 2-7% shrunk.
      std::vector<float> y(x.size());
      dequantize_values(t, q.data(), y.size(), y.data());
      for (uint64_t r = 0; r < rows; ++r)
        EXPECT_NEAR(row_shrink(&x[r * row_len], &y[r * row_len], row_len, w), 0.0, 5e-4)
            << dtype_name(t) << " row " << r;
    }
  }
}

// In a layer's input metric H the rescaled rows' output error is uncorrelated with the
// output: (w - q) H w^T = 0 per row, where plain rounding leaves it far from 0.
TEST(QuantBlocks, OutputMetricRescaleLeavesNoShrinkOfTheOutputs) {
  const uint64_t rows = 8, cols = 512;
  const auto w = gaussian(rows * cols, 12, 0.02f), a = gaussian(cols * cols, 13, 1.0f / 16);
  std::vector<float> h(cols * cols, 0.0f);  // H = A A^T / cols: symmetric, correlated inputs
  for (uint64_t i = 0; i < cols; ++i)
    for (uint64_t j = 0; j < cols; ++j)
      for (uint64_t k = 0; k < cols; k += 4) h[i * cols + j] += a[i * cols + k] * a[j * cols + k];
  auto shrink = [&](const std::vector<uint8_t>& q, uint64_t r) {
    std::vector<float> y(cols);
    dequantize_values(DType::Q3_K, q.data() + r * row_bytes(DType::Q3_K, cols), cols, y.data());
    double xx = 0, xy = 0;
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t j = 0; j < cols; ++j) {
        const double hw = h[i * cols + j] * w[r * cols + j];
        xx += hw * w[r * cols + i], xy += hw * y[i];
      }
    return 1 - xy / xx;
  };
  std::vector<uint8_t> q(rows * row_bytes(DType::Q3_K, cols));
  quant::quantize_rows(DType::Q3_K, w.data(), rows, cols, nullptr, false, q.data());
  double before = 0;
  for (uint64_t r = 0; r < rows; ++r) before += std::fabs(shrink(q, r)) / rows;
  EXPECT_GT(before, 2e-3);
  quant::debias_rows_output(DType::Q3_K, w.data(), rows, cols, h.data(), 2, q.data());
  for (uint64_t r = 0; r < rows; ++r) EXPECT_NEAR(shrink(q, r), 0.0, 5e-4) << "row " << r;
}

// A row whose decoded values would need more than the clamp is scaled by the clamp only.
TEST(QuantBlocks, DebiasFactorIsClamped) {
  const uint64_t row_len = 512;
  const auto x = gaussian(row_len, 10, 0.05f);
  std::vector<float> twice(x), before(row_len), after(row_len);
  for (float& v : twice) v *= 2;  // the row the bytes are checked against is twice as large
  const quant::BlockCodec* codec = quant::block_codec(DType::Q4_K);
  std::vector<uint8_t> q(row_bytes(DType::Q4_K, row_len));
  quantize_rows(DType::Q4_K, x.data(), 1, row_len, nullptr, q.data());
  dequantize_values(DType::Q4_K, q.data(), row_len, before.data());
  quant::debias_row(*codec, twice.data(), twice.data(), row_len, q.data());
  dequantize_values(DType::Q4_K, q.data(), row_len, after.data());
  float amax = 0;
  for (float v : before) amax = std::max(amax, std::fabs(v));
  for (uint64_t i = 0; i < row_len; ++i)
    EXPECT_NEAR(after[i], quant::kMaxDebias[1] * before[i], 2e-3 * amax) << i;
}

TEST(QuantBlocks, RowLengthNotAMultipleOfTheBlockIsAnArgumentError) {
  std::vector<float> x(100, 1.0f);
  std::vector<uint8_t> out(1024);
  const std::string msg = test::expect_error(
      [&] { quantize_rows(DType::Q4_K, x.data(), 1, 100, nullptr, out.data()); });
  EXPECT_NE(msg.find("block size 256"), std::string::npos) << msg;
}

// llama.cpp decodes the bytes lowbit wrote to exactly the values lowbit decodes.
TEST(QuantBlocksLlamaCpp, LlamaCppDecodesLowbitBlocksIdentically) {
  test::TempDir dir;
  const uint64_t row_len = 512, rows = 8;
  const auto x = gaussian(row_len * rows, 5, 0.05f);
  for (DType t : test::block_types()) {
    std::vector<uint8_t> q(rows * row_bytes(t, row_len));
    quantize_rows(t, x.data(), rows, row_len, nullptr, q.data());
    std::vector<float> ours(x.size());
    dequantize_values(t, q.data(), x.size(), ours.data());
    test::write_file(dir.file("q.bin"), std::string(reinterpret_cast<char*>(q.data()), q.size()));
    test::run_llamacpp_native({"dequantize", std::to_string(traits(t).ggml_id),
                               std::to_string(x.size()), dir.file("q.bin"), dir.file("y.f32")});
    const std::string theirs = test::read_file(dir.file("y.f32"));
    ASSERT_EQ(theirs.size(), x.size() * 4) << dtype_name(t);
    std::vector<float> y(x.size());
    std::memcpy(y.data(), theirs.data(), theirs.size());
    for (size_t i = 0; i < y.size(); ++i)
      ASSERT_NEAR(ours[i], y[i], 1e-6f * std::fabs(y[i]) + 1e-12f)
          << dtype_name(t) << " value " << i;
  }
}

// rel_rms after each row of y is multiplied by its best factor: the error no rescaling
// removes, whatever scale convention a quantizer follows (llama.cpp's fixed factors on the
// codebook types' d, lowbit's rescale against shrink).
double rel_rms_fitted(const std::vector<float>& x, const std::vector<float>& y, const float* imp,
                      uint64_t row_len) {
  std::vector<float> scaled(y.size());
  for (size_t r = 0; r < x.size() / row_len; ++r) {
    double xy = 0, yy = 0;
    for (size_t i = r * row_len; i < (r + 1) * row_len; ++i) {
      const double w = imp ? imp[i % row_len] : 1.0;
      xy += w * x[i] * y[i], yy += w * y[i] * y[i];
    }
    for (size_t i = r * row_len; i < (r + 1) * row_len; ++i)
      scaled[i] = static_cast<float>(yy > 0 ? xy / yy * y[i] : 0.0);
  }
  return rel_rms(x, scaled, imp, row_len);
}

// On the same rows (with and without an importance vector) lowbit's quantizer has no
// larger weighted error than llama.cpp's for any type. The types whose scales lowbit
// rescales against shrink (the K and codebook types) are compared with each row at its best
// scale, the others as they decode. The types whose llama.cpp quantizer needs an importance
// vector get all-ones in the plain case.
TEST(QuantBlocksLlamaCpp, ErrorIsNoWorseThanLlamaCppQuantizer) {
  test::TempDir dir;
  const uint64_t row_len = 1024, rows = 24;
  auto x = gaussian(row_len * rows, 6, 0.02f);
  for (size_t i = 0; i < x.size(); i += 97) x[i] *= 8.0f;  // some heavy tails, as in real weights
  std::vector<float> imp(row_len);
  std::mt19937 rng(7);
  std::lognormal_distribution<float> ln(0.0f, 1.0f);
  for (auto& v : imp) v = ln(rng);
  test::write_file(dir.file("x.f32"),
                   std::string(reinterpret_cast<const char*>(x.data()), x.size() * 4));
  test::write_file(dir.file("imp.f32"),
                   std::string(reinterpret_cast<const char*>(imp.data()), imp.size() * 4));
  const std::vector<float> ones(row_len, 1.0f);
  test::write_file(dir.file("ones.f32"),
                   std::string(reinterpret_cast<const char*>(ones.data()), ones.size() * 4));
  for (bool with_imp : {false, true}) {
    for (DType t : test::block_types()) {
      std::vector<std::string> args = {"quantize-rows",      std::to_string(traits(t).ggml_id),
                                       std::to_string(rows), std::to_string(row_len),
                                       dir.file("x.f32"),    dir.file("q.bin")};
      if (with_imp) args.push_back(dir.file("imp.f32"));
      else if (test::llamacpp_needs_importance(t))
        args.push_back(dir.file("ones.f32"));
      test::run_llamacpp_native(args);
      const std::string q = test::read_file(dir.file("q.bin"));
      std::vector<float> theirs(x.size());
      dequantize_values(t, reinterpret_cast<const uint8_t*>(q.data()), x.size(), theirs.data());
      const float* w = with_imp ? imp.data() : nullptr;
      const std::vector<float> ours = round_trip(t, x, row_len, w);
      const quant::BlockCodec& codec = *quant::block_codec(t);
      const bool fitted = codec.debias || codec.quantize_block;
      const double e_them =
          fitted ? rel_rms_fitted(x, theirs, w, row_len) : rel_rms(x, theirs, w, row_len);
      const double e_us =
          fitted ? rel_rms_fitted(x, ours, w, row_len) : rel_rms(x, ours, w, row_len);
      EXPECT_LE(e_us, e_them * 1.0001) << dtype_name(t) << (with_imp ? " with importance" : "");
      std::printf("%-7s %s lowbit %.5f llama.cpp %.5f (%.1f%%%s), unfitted %.5f / %.5f\n",
                  dtype_name(t), with_imp ? "imp  " : "plain", e_us, e_them,
                  100.0 * (e_us / e_them - 1), fitted ? ", fitted" : "",
                  rel_rms(x, ours, w, row_len), rel_rms(x, theirs, w, row_len));
    }
  }
}

}  // namespace
}  // namespace lowbit

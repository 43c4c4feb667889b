// W4A4 / W4A8 on the integer kernels: activations rounded per token (or to a static range)
// reach the kernels as their integer codes with the row's step as every block's scale, so
// the packed GEMM and the row kernels multiply int4 (intN) codes by the weights' codes and
// give the product with the rounded values, summed exactly. Checked against the rounding in
// f32 (round_acts_*), against exact sums on every instruction set, and in the engine against
// the fp32 reference that simulates the same rounding.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/kernels.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "lowbit/tokenizer.h"
#include "test_support.h"

namespace lowbit {
namespace {

// [rows, cols] activations with an outlier channel and a row of zeros (row 1).
std::vector<float> outlier_acts(size_t rows, size_t cols, uint32_t seed) {
  auto x = test::gaussian(rows * cols, seed);
  for (size_t r = 0; r < rows; ++r) x[r * cols + 5] = 30.0f + static_cast<float>(r);
  if (rows > 1) std::fill_n(x.begin() + cols, cols, 0.0f);
  return x;
}

// On every instruction set, and the scalar reference.
TEST(W4A4, CodesTimesTheStepAreTheRoundedValues) {
  const size_t rows = 3, cols = 512;
  const auto x = outlier_acts(rows, cols, 1);
  const float range = 12.5f;
  std::vector<int64_t> isas = kernels::available_isas();
  isas.push_back(-1);  // forced scalar
  for (int64_t isa : isas) {
    kernels::force_scalar(isa == -1);
    kernels::restrict_isa(isa == -1 ? 0 : isa);
    SCOPED_TRACE(isa == -1 ? "scalar" : "isa " + kernels::isa_name(isa));
    for (uint32_t block : {32u, 256u})
      for (int bits : {2, 4, 8})
        for (float clip : {1.0f, 0.7f})
          for (bool fixed : {false, true}) {
            SCOPED_TRACE(::testing::Message() << "block " << block << ", " << bits << " bits, clip "
                                              << clip << (fixed ? ", static range" : ""));
            auto rounded = x;
            if (fixed)
              kernels::round_acts_to_range(rounded.data(), rounded.size(), bits, clip, range);
            else
              kernels::round_acts_per_token(rounded.data(), rows, cols, bits, clip);
            kernels::QuantizedActs a;
            kernels::quantize_acts_rounded(x.data(), rows, cols, block, bits, clip,
                                           fixed ? &range : nullptr, a);
            ASSERT_EQ(a.q.size(), x.size());
            const int qmax = (1 << (bits - 1)) - 1;
            for (size_t i = 0; i < x.size(); ++i) {
              ASSERT_EQ(a.d[i / block] * a.q[i], rounded[i]) << i;
              ASSERT_LE(std::abs(a.q[i]), qmax) << i;
              ASSERT_EQ(a.u8[i], a.q[i] + 128) << i;
            }
            for (size_t g = 0; g < x.size() / 16; ++g) {
              int32_t s = 0;
              for (size_t i = 16 * g; i < 16 * g + 16; ++i) s += a.q[i];
              ASSERT_EQ(a.sum16[g], s) << g;
              ASSERT_EQ(a.sum16_i16[g], s) << g;
            }
            // One step per row: every block of a row carries it.
            for (size_t r = 0; r < rows; ++r)
              for (size_t b = 0; b < cols / block; ++b)
                EXPECT_EQ(a.d[r * cols / block + b], a.d[r * cols / block]);
            if (!fixed) {
              EXPECT_EQ(a.d[cols / block], 0.0f) << "row of zeros";
              EXPECT_EQ(a.q[a.q.size() - cols + 5], qmax) << "the outlier sets the step";
            }
          }
  }
  kernels::force_scalar(false);
  kernels::restrict_isa(0);
  kernels::QuantizedActs a;
  const float zero = 0;
  const std::string e = test::expect_error(
      [&] { kernels::quantize_acts_rounded(x.data(), rows, cols, 32, 4, 1, &zero, a); });
  EXPECT_NE(e.find("static range 0"), std::string::npos) << e;
  const std::string b = test::expect_error(
      [&] { kernels::quantize_acts_rounded(x.data(), rows, cols, 32, 9, 1, nullptr, a); });
  EXPECT_NE(b.find("9 bits"), std::string::npos) << b;
}

// The packed GEMM and the row kernels on rounded codes against the exact product of the
// dequantized weights and the rounded activations, for every block type (the W4A4 GEMM is
// Q4_0's), on every instruction set; the vector kernel equals the panel reference bit for bit.
TEST(W4A4, IntegerProductsAreTheProductOfTheRoundedValuesOnEveryInstructionSet) {
  for (int64_t isa : kernels::available_isas()) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE("isa " + kernels::isa_name(isa));
    for (DType t : test::block_types(true)) {
      if (!kernels::has_packed_kernel(t)) continue;
      SCOPED_TRACE(dtype_name(t));
      const size_t rows = 37, cols = 2 * 256, n_tok = 9, ld = rows + 2;
      const size_t row_bytes = cols / traits(t).block_size * traits(t).type_size;
      const auto wx = test::gaussian(rows * cols, 3);
      std::vector<uint8_t> w(rows * row_bytes);
      quantize_rows(t, wx.data(), rows, cols, nullptr, w.data());
      std::vector<float> values(rows * cols);
      dequantize_values(t, w.data(), rows * cols, values.data());
      const kernels::PackedRows p = kernels::pack_rows(t, w.data(), row_bytes, rows, cols);
      for (int bits : {4, 8}) {
        SCOPED_TRACE(std::to_string(bits) + "-bit activations");
        auto x = outlier_acts(n_tok, cols, 4);
        kernels::QuantizedActs a;
        kernels::quantize_acts_rounded(x.data(), n_tok, cols, kernels::act_block(t), bits, 0.9f,
                                       nullptr, a);
        kernels::round_acts_per_token(x.data(), n_tok, cols, bits, 0.9f);
        std::vector<float> packed(n_tok * ld, -1.0f), panel_ref(n_tok * ld, -1.0f);
        std::vector<float> dots(n_tok * ld, -1.0f);
        kernels::packed_gemm(p, 0, p.n_panels(), a, packed.data(), ld);
        kernels::packed_gemm_reference(p, 0, p.n_panels(), a, panel_ref.data(), ld);
        ASSERT_EQ(packed, panel_ref);
        std::vector<kernels::ActRow> act_rows(n_tok);
        for (size_t i = 0; i < n_tok; ++i) act_rows[i] = kernels::act_row(a, i);
        kernels::dot_rows_multi(t, w.data(), row_bytes, rows, cols, act_rows.data(), n_tok,
                                dots.data(), ld);
        for (size_t i = 0; i < n_tok; ++i)
          for (size_t r = 0; r < rows; ++r) {
            double exact = 0, scale = 0;
            for (size_t k = 0; k < cols; ++k) {
              exact += static_cast<double>(values[r * cols + k]) * x[i * cols + k];
              scale += std::fabs(static_cast<double>(values[r * cols + k]) * x[i * cols + k]);
            }
            ASSERT_NEAR(packed[i * ld + r], exact, 2e-6 * scale + 1e-7) << i << ", " << r;
            ASSERT_NEAR(dots[i * ld + r], exact, 2e-6 * scale + 1e-7) << i << ", " << r;
          }
        EXPECT_EQ(packed[rows], -1.0f) << "wrote past the rows";
      }
    }
  }
  kernels::restrict_isa(0);
}

const Model& tinyllm_q4_0() {
  static const Model m = quantize_model_in_memory(
      load_model(test::shared_path("models/tinyllm-8m")), plan_for_type_or_preset("Q4_0"), 2);
  return m;
}

// The fast engine at W4A4 (packed panels, and row kernels) against the fp32 reference that
// rounds the same activations, through the first block: the same products up to the order
// of float sums, so the block's output agrees far more closely than the fast path's usual
// 8-bit activations let it. (Over the whole network a float-order difference that moves one
// value across a 4-bit rounding boundary changes it by a whole step, and such steps cascade:
// the logits then differ as much as any two orders of summation make them.)
TEST(W4A4, FastEngineGivesTheReferenceBlockOutput) {
  const Model& m = tinyllm_q4_0();
  const auto text = read_text_file(test::shared_path("data/wikitext-2/wikitext-2-test.txt"));
  const auto tokens = Tokenizer::create(m.vocab)->encode(text.substr(0, 4000));
  const size_t n = 40, d = m.config.n_embd;
  auto block_output = [&](bool fast, uint32_t packed_batch, int act_bits) {
    EngineOptions o;
    o.fast = fast, o.blas_batch = 0, o.packed_batch = packed_batch, o.n_ctx = 64;
    o.rounding.act_bits = act_bits;
    Engine e(m, o);
    std::vector<float> x(n * d);
    e.embed(tokens.data(), n, x.data());
    e.forward_layer(0, x.data(), n);
    return x;
  };
  // The usual fast path's distance from the reference: its 8-bit activation blocks.
  const double d_a16 =
      test::max_relative_difference(block_output(true, 0, 0), block_output(false, 0, 0));
  const auto ref = block_output(false, 0, 4);
  const double d_rows = test::max_relative_difference(block_output(true, 0, 4), ref);
  std::printf("max relative difference from the reference: W4A16 rows %.3g, W4A4 rows %.3g\n",
              d_a16, d_rows);
  EXPECT_LT(d_rows, d_a16 / 100);
  if (kernels::packed_gemm_is_fast()) {
    const double d_packed = test::max_relative_difference(block_output(true, 8, 4), ref);
    std::printf("W4A4 packed panels %.3g\n", d_packed);
    EXPECT_LT(d_packed, d_a16 / 100);
  }
  EXPECT_GT(test::max_relative_difference(ref, block_output(false, 0, 0)), 10 * d_a16)
      << "4-bit rounding did nothing?";
}

}  // namespace
}  // namespace lowbit

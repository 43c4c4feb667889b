// Packed 16-row panels for batched products: the scalar reference on the panels against the
// row-by-row reference (dot_rows_reference), and the vector kernel against the panel
// reference bit for bit on every instruction set this CPU has.
#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/kernels.h"
#include "lowbit/quant.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::gaussian;

// Every block type lowbit writes has a packed kernel.
std::vector<DType> packed_types() {
  const std::vector<DType> out = test::block_types(true);
  for (DType t : out) EXPECT_TRUE(kernels::has_packed_kernel(t)) << dtype_name(t);
  return out;
}

// rows x cols weights stored as t: Gaussian with outliers and row scales over three decades.
std::vector<uint8_t> make_rows(DType t, size_t rows, size_t cols, uint32_t seed) {
  auto x = gaussian(rows * cols, seed);
  for (size_t i = 0; i < x.size(); ++i)
    x[i] *= std::pow(10.0f, static_cast<float>(i / cols % 4) - 2);
  for (size_t i = 0; i < x.size(); i += 89) x[i] *= 7;
  std::vector<uint8_t> bytes(rows * (cols / traits(t).block_size) * traits(t).type_size);
  quantize_rows(t, x.data(), rows, cols, nullptr, bytes.data());
  return bytes;
}

kernels::QuantizedActs make_acts(DType t, size_t n_tok, size_t cols, uint32_t seed) {
  auto x = gaussian(n_tok * cols, seed);
  for (size_t i = 0; i < x.size(); i += 61) x[i] = i % 2 ? 11.0f : -11.0f;  // codes ±127
  kernels::QuantizedActs a;
  kernels::quantize_acts(x.data(), n_tok, cols, kernels::act_block(t), a);
  return a;
}

TEST(PackedGemm, PanelReferenceEqualsTheRowReference) {
  for (DType t : packed_types()) {
    SCOPED_TRACE(dtype_name(t));
    const size_t rows = 37, cols = 3 * traits(t).block_size, n_tok = 3, ld = rows + 3;
    const size_t row_bytes = cols / traits(t).block_size * traits(t).type_size;
    const auto w = make_rows(t, rows, cols, 5);
    const auto a = make_acts(t, n_tok, cols, 6);
    const kernels::PackedRows p = kernels::pack_rows(t, w.data(), row_bytes, rows, cols);
    ASSERT_EQ(p.n_panels(), 3u);
    std::vector<float> y(n_tok * ld, -5.0f), ref(rows), values(rows * cols);
    dequantize_values(t, w.data(), rows * cols, values.data());
    kernels::packed_gemm_reference(p, 0, p.n_panels(), a, y.data(), ld);
    for (size_t i = 0; i < n_tok; ++i) {
      kernels::dot_rows_reference(t, w.data(), row_bytes, rows, cols, kernels::act_row(a, i),
                                  ref.data());
      for (size_t r = 0; r < rows; ++r) {
        double scale = 0;  // Σ |w·a|: the size of the terms the sum cancels
        for (size_t k = 0; k < cols; ++k)
          scale +=
              std::fabs(values[r * cols + k] * a.d[(i * cols + k) / a.block] * a.q[i * cols + k]);
        EXPECT_NEAR(y[i * ld + r], ref[r], 2e-6 * scale + 1e-6) << "token " << i << " row " << r;
      }
      for (size_t r = rows; r < ld; ++r) EXPECT_EQ(y[i * ld + r], -5.0f) << "wrote past the rows";
    }
  }
}

// Token counts around the 8/4/2/1-token tiles, a partial last panel, a panel range that
// leaves the first panel alone.
TEST(PackedGemm, KernelEqualsThePanelReferenceOnEveryInstructionSet) {
  int fast_runs = 0;
  for (int64_t isa : kernels::available_isas()) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE("isa " + kernels::isa_name(isa));
    fast_runs += kernels::packed_gemm_is_fast();
    for (DType t : packed_types()) {
      SCOPED_TRACE(dtype_name(t));
      const size_t rows = 41, cols = 2 * traits(t).block_size, ld = rows + 1;
      const size_t row_bytes = cols / traits(t).block_size * traits(t).type_size;
      const auto w = make_rows(t, rows, cols, 7);
      const kernels::PackedRows p = kernels::pack_rows(t, w.data(), row_bytes, rows, cols);
      // Panels [1, 3) are one pair; [0, 3) a pair and a single panel (the partial one).
      for (size_t p0 : {1u, 0u})
        for (size_t n_tok : {1, 2, 3, 4, 7, 8, 15}) {
          const auto a = make_acts(t, n_tok, cols, 8 + static_cast<uint32_t>(n_tok));
          std::vector<float> y(n_tok * ld, -3.0f), ref(n_tok * ld, -3.0f);
          kernels::packed_gemm(p, p0, p.n_panels(), a, y.data(), ld);
          kernels::packed_gemm_reference(p, p0, p.n_panels(), a, ref.data(), ld);
          ASSERT_EQ(y, ref) << n_tok << " tokens from panel " << p0;
          EXPECT_NE(y[16], -3.0f);
          if (p0) {
            EXPECT_EQ(y[0], -3.0f) << "wrote into panel 0, outside the range";
          }
          EXPECT_EQ(y[rows], -3.0f) << "wrote past the rows";
        }
    }
  }
  kernels::restrict_isa(0);
  if (!kernels::packed_gemm_is_fast())
    GTEST_SKIP() << "no AVX-512 VNNI here: only the reference ran";
  EXPECT_GT(fast_runs, 0);
}

TEST(PackedGemm, RejectsFloatTypesAndMismatchedActivations) {
  std::vector<uint8_t> f(64 * 4);
  EXPECT_NE(
      test::expect_error([&] { kernels::pack_rows(DType::F32, f.data(), 256, 1, 64); }).find("F32"),
      std::string::npos);
  const auto w = make_rows(DType::Q4_K, 16, 256, 1);
  const auto p = kernels::pack_rows(DType::Q4_K, w.data(), 144, 16, 256);
  const auto a = make_acts(DType::Q8_0, 1, 256, 2);  // blocks of 32, not 256
  std::vector<float> y(16);
  EXPECT_NE(test::expect_error([&] {
              kernels::packed_gemm(p, 0, 1, a, y.data(), 16);
            }).find("blocks of 32"),
            std::string::npos);
}

}  // namespace
}  // namespace lowbit

// Dot-product kernels: the scalar reference against the dequantized weights, and every SIMD
// kernel against the scalar reference on each instruction set this CPU has, with odd row
// counts, odd block counts and (float types) lengths that leave a tail.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "lowbit/float_convert.h"
#include "lowbit/kernels.h"
#include "lowbit/quant.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::gaussian;

std::vector<DType> kernel_types() {
  std::vector<DType> out;
  for (int i = 0; i < static_cast<int>(DType::Count); ++i)
    if (kernels::has_kernel(static_cast<DType>(i))) out.push_back(static_cast<DType>(i));
  return out;
}

// Rows of Gaussian weights with a few outliers (so blocks use their whole code range),
// stored as t.
struct Weights {
  DType type;
  size_t rows, row_len, row_bytes;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // dequantized, [rows, row_len]
};
Weights make_weights(DType t, size_t rows, size_t row_len, uint32_t seed) {
  Weights w{t, rows, row_len, row_len / traits(t).block_size * traits(t).type_size, {}, {}};
  auto x = gaussian(rows * row_len, seed);
  for (size_t i = 0; i < x.size(); i += 97) x[i] *= 6;
  w.bytes.resize(rows * w.row_bytes);
  quantize_rows(t, x.data(), rows, row_len, nullptr, w.bytes.data());
  w.values.resize(x.size());
  dequantize_values(t, w.bytes.data(), x.size(), w.values.data());
  return w;
}

struct Acts {
  std::vector<float> x;
  kernels::QuantizedActs q;
  kernels::ActRow row;
};
Acts make_acts(DType t, size_t row_len, uint32_t seed) {
  Acts a;
  a.x = gaussian(row_len, seed);
  a.x[row_len / 3] = 9;  // an activation outlier
  const uint32_t block = kernels::act_block(t);
  if (block) {
    kernels::quantize_acts(a.x.data(), 1, row_len, block, a.q);
    a.row = kernels::act_row(a.q, 0);
  } else {
    a.row.x = a.x.data();
  }
  return a;
}

// The activation values the kernel sees: d·q for integer types, x for float types.
std::vector<double> seen_acts(const Acts& a, size_t row_len) {
  std::vector<double> v(row_len);
  for (size_t i = 0; i < row_len; ++i)
    v[i] = a.row.q ? double{a.row.d[i / a.q.block]} * a.row.q[i] : a.x[i];
  return v;
}

// Row lengths: an odd number of blocks (15 = 8 + 4 + 2 + 1 reaches every step of the
// one-token Q8_0 kernel); float types also get lengths with a SIMD tail.
std::vector<size_t> row_lengths(DType t) {
  const size_t b = traits(t).block_size;
  if (b == 1) return {1, 7, 37, 100, 1029};
  return {b, 3 * b, 9 * b, 15 * b, 37 * b};  // 37: two 16-block steps and a tail
}

TEST(Kernels, ReferenceEqualsTheDequantizedDotProduct) {
  for (DType t : kernel_types())
    for (size_t n : row_lengths(t)) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " row " + std::to_string(n));
      const Weights w = make_weights(t, 5, n, 1);
      const Acts a = make_acts(t, n, 2);
      const auto act = seen_acts(a, n);
      std::vector<float> y(w.rows);
      kernels::dot_rows_reference(t, w.bytes.data(), w.row_bytes, w.rows, n, a.row, y.data());
      for (size_t r = 0; r < w.rows; ++r) {
        double want = 0, scale = 0;
        for (size_t i = 0; i < n; ++i) {
          want += w.values[r * n + i] * act[i];
          scale += std::fabs(w.values[r * n + i] * act[i]);
        }
        EXPECT_NEAR(y[r], want, 1e-5 * scale + 1e-6) << "row " << r;
      }
    }
}

// Every SIMD path against the reference, on each instruction set the CPU has.
TEST(Kernels, SimdEqualsTheReferenceOnEveryInstructionSet) {
  const auto isas = kernels::available_isas();
  ASSERT_FALSE(isas.empty());
  for (int64_t isa : isas) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE("isa " + kernels::isa_name(isa) + " (running " + kernels::active_isa() + ")");
    EXPECT_EQ(kernels::active_isa(), kernels::isa_name(isa));
    for (DType t : kernel_types())
      for (size_t n : row_lengths(t)) {
        SCOPED_TRACE(std::string(dtype_name(t)) + " row " + std::to_string(n));
        const Weights w = make_weights(t, 7, n, 3 + static_cast<uint32_t>(n));
        const Acts a = make_acts(t, n, 4);
        std::vector<float> fast(w.rows), ref(w.rows);
        kernels::dot_rows(t, w.bytes.data(), w.row_bytes, w.rows, n, a.row, fast.data());
        kernels::dot_rows_reference(t, w.bytes.data(), w.row_bytes, w.rows, n, a.row, ref.data());
        const auto act = seen_acts(a, n);
        for (size_t r = 0; r < w.rows; ++r) {
          double scale = 0;
          for (size_t i = 0; i < n; ++i) scale += std::fabs(w.values[r * n + i] * act[i]);
          EXPECT_NEAR(fast[r], ref[r], 2e-6 * scale + 1e-6) << "row " << r;
        }
      }
  }
  kernels::restrict_isa(0);
}

// The forced scalar path is the reference, bit for bit; a SIMD path is not (it sums in
// another order), which shows the switch really switches.
TEST(Kernels, ForcedScalarIsTheReference) {
  const DType t = DType::Q4_K;
  const Weights w = make_weights(t, 9, 2048, 5);
  const Acts a = make_acts(t, 2048, 6);
  std::vector<float> forced(w.rows), ref(w.rows), simd(w.rows);
  kernels::force_scalar(true);
  EXPECT_EQ(kernels::active_isa(), "scalar (forced)");
  kernels::dot_rows(t, w.bytes.data(), w.row_bytes, w.rows, 2048, a.row, forced.data());
  kernels::force_scalar(false);
  kernels::dot_rows_reference(t, w.bytes.data(), w.row_bytes, w.rows, 2048, a.row, ref.data());
  kernels::dot_rows(t, w.bytes.data(), w.row_bytes, w.rows, 2048, a.row, simd.data());
  EXPECT_EQ(forced, ref);
  EXPECT_NE(simd, ref)
      << "the SIMD kernel summed exactly like the reference: is it dispatched at all?";
}

TEST(Kernels, ActivationQuantizationRoundsToNearestAndKeepsSums) {
  const size_t n = 512;
  auto x = gaussian(2 * n, 7);
  x[300] = -40;
  for (uint32_t block : {32u, 256u}) {
    kernels::QuantizedActs q;
    kernels::quantize_acts(x.data(), 2, n, block, q);
    ASSERT_EQ(q.q.size(), 2 * n);
    ASSERT_EQ(q.d.size(), 2 * n / block);
    for (size_t i = 0; i < 2 * n; ++i) {
      const float d = q.d[i / block];
      EXPECT_LE(std::abs(q.q[i]), 127);
      EXPECT_LE(std::fabs(x[i] - d * q.q[i]), 0.5f * d * 1.0001f) << i;
    }
    EXPECT_EQ(q.q[300], -127);  // the block's absmax maps to the end of the range
    for (size_t g = 0; g < 2 * n / 16; ++g) {
      int s = 0;
      for (int i = 0; i < 16; ++i) s += q.q[16 * g + i];
      EXPECT_EQ(q.sum16[g], s);
    }
  }
  kernels::QuantizedActs q;
  EXPECT_NE(test::expect_error([&] {
              kernels::quantize_acts(x.data(), 1, 100, 32, q);
            }).find("not a multiple of 32"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] { kernels::act_block(DType::Q8_K); }).find("Q8_K"),
            std::string::npos);
}

// The vector version rounds and sums exactly as the scalar reference, on every instruction
// set: values at rounding ties, zero blocks, blocks so small that 1 / d overflows, ±amax.
void expect_same_acts(const kernels::QuantizedActs& a, const kernels::QuantizedActs& b) {
  EXPECT_EQ(a.q, b.q);
  EXPECT_EQ(a.d, b.d);
  EXPECT_EQ(a.sum16, b.sum16);
  EXPECT_EQ(a.sum16_i16, b.sum16_i16);
  EXPECT_EQ(a.u8, b.u8);
}

TEST(Kernels, ActivationQuantizationIsTheReferenceOnEveryInstructionSet) {
  const size_t n = 768;
  auto x = gaussian(3 * n, 9);
  for (size_t i = 0; i < 64; ++i) x[i] = 0;                // a zero block: d = 0
  for (size_t i = 64; i < 96; ++i) x[i] = (i % 8) - 3.5f;  // x·id at .5 ties
  for (size_t i = 256; i < 288; ++i) x[i] = i % 2 ? 1e-38f : -2e-39f;  // d ≈ 1e-40
  x[500] = 1e4f, x[1000] = -3e-3f;
  auto quantize = [&](uint32_t block) {
    kernels::QuantizedActs q;
    kernels::quantize_acts(x.data(), 3, n, block, q);
    return q;
  };
  for (uint32_t block : {32u, 256u}) {
    kernels::force_scalar(true);
    const auto ref = quantize(block);
    kernels::force_scalar(false);
    for (int64_t isa : kernels::available_isas()) {
      kernels::restrict_isa(isa);
      SCOPED_TRACE("isa " + kernels::isa_name(isa) + ", block " + std::to_string(block));
      const auto q = quantize(block);
      expect_same_acts(q, ref);
    }
    kernels::restrict_isa(0);
  }
}

// Rows quantized in pieces (as the engine spreads them over threads) equal quantize_acts of
// the whole batch on every instruction set; a range past the sized rows is refused.
TEST(Kernels, ActivationRowRangesEqualTheWholeBatch) {
  const size_t n_rows = 5, row_len = 512;
  const auto x = gaussian(n_rows * row_len, 4);
  for (uint32_t block : {32u, 256u})
    for (int64_t isa : kernels::available_isas()) {
      kernels::restrict_isa(isa);
      SCOPED_TRACE("isa " + kernels::isa_name(isa) + ", block " + std::to_string(block));
      kernels::QuantizedActs whole, parts;
      kernels::quantize_acts(x.data(), n_rows, row_len, block, whole);
      kernels::resize_acts(parts, n_rows, row_len, block);
      for (size_t r0 : {3u, 0u, 1u}) kernels::quantize_act_rows(x.data(), r0, r0 + 2, parts);
      expect_same_acts(parts, whole);
      EXPECT_NE(test::expect_error([&] {
                  kernels::quantize_act_rows(x.data(), 4, 6, parts);
                }).find("rows [4, 6) of 5"),
                std::string::npos);
    }
  kernels::restrict_isa(0);
}

// SwiGLU's step on every instruction set: within a few ulp of the std::exp reference over
// the whole float range (the exponential's cap and overflow included), NaN kept, 0 at −inf,
// and each value's result the same at any position and array length (body or padded tail).
TEST(Kernels, SiluMulIsTheReferenceOnEveryInstructionSet) {
  auto gate = gaussian(1000, 5), up = gaussian(1000, 6);
  for (size_t i = 0; i < gate.size(); ++i) gate[i] *= 6;  // silu's curved part and both tails
  const float kInf = std::numeric_limits<float>::infinity();
  const float extremes[] = {-kInf, kInf, -1e30f, -150.0f, -104.0f, -88.5f, -60.0f, -30.0f, -20.0f,
                            -0.0f, 0.0f, 1e-30f, 20.0f,   88.5f,   150.0f, 1e30f,  3e38f};
  for (size_t i = 0; i < std::size(extremes); ++i) gate[10 + i] = extremes[i];
  gate[40] = std::nanf("");
  auto ref = gate;
  kernels::silu_mul_reference(ref.data(), up.data(), ref.size());
  EXPECT_TRUE(std::isnan(ref[40]));
  for (int64_t isa : kernels::available_isas()) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE(kernels::isa_name(isa));
    auto y = gate;
    kernels::silu_mul(y.data(), up.data(), y.size());
    for (size_t i = 0; i < y.size(); ++i) {
      if (gate[i] == -kInf) {  // the limit, where the reference's −inf / inf is NaN
        EXPECT_EQ(y[i], 0.0f) << i;
        continue;
      }
      if (!std::isfinite(ref[i])) {  // NaN stays NaN, ±inf the same infinity
        EXPECT_TRUE(std::isnan(ref[i]) ? std::isnan(y[i]) : y[i] == ref[i]) << i;
        continue;
      }
      EXPECT_NEAR(y[i], ref[i], 4e-7f * std::abs(ref[i]) + 1e-30f) << i << " " << gate[i];
    }
    for (size_t len : {1u, 7u, 17u, 33u}) {  // shifted starts and lengths: padded tails
      for (size_t start : {0u, 3u, 21u}) {
        auto z = gate;
        kernels::silu_mul(z.data() + start, up.data() + start, len);
        for (size_t i = start; i < start + len; ++i)
          if (i != 40) {
            ASSERT_EQ(z[i], y[i]) << start << " " << len << " " << i;
          }
        EXPECT_EQ(z[start + len], gate[start + len]);  // nothing written past the end
      }
    }
  }
  kernels::restrict_isa(0);
}

// Attention's softmax on every instruction set: within 2e-6 of the double-sum reference for
// lengths with and without a tail, scores spread wide enough that most underflow, and −inf.
TEST(Kernels, SoftmaxIsTheReferenceOnEveryInstructionSet) {
  for (size_t n : {1u, 5u, 16u, 17u, 100u, 1000u, 8193u})
    for (float spread : {1.0f, 40.0f}) {
      auto x = gaussian(n, 7 + n);
      for (float& v : x) v *= spread;
      if (n > 4) x[3] = -std::numeric_limits<float>::infinity();
      auto ref = x;
      kernels::softmax_reference(ref.data(), n);
      for (int64_t isa : kernels::available_isas()) {
        kernels::restrict_isa(isa);
        SCOPED_TRACE(kernels::isa_name(isa) + " n " + std::to_string(n) + " spread " +
                     std::to_string(spread));
        auto y = x;
        kernels::softmax(y.data(), n);
        double total = 0;
        for (size_t i = 0; i < n; ++i) {
          EXPECT_NEAR(y[i], ref[i], 2e-6f * ref[i] + 1e-30f) << i;
          total += y[i];
        }
        EXPECT_NEAR(total, 1.0, 1e-5);
        if (n > 4) {
          EXPECT_EQ(y[3], 0.0f);
        }
      }
      kernels::restrict_isa(0);
    }
}

// The W8A8 GEMM: every instruction set gives the reference's exact int32 sums, for tile
// edges (rows and tokens not multiples of the micro-tile) and row tails (cols not a
// multiple of the vector width), including the extreme codes ±127.
TEST(Kernels, Int8GemmEqualsTheReferenceExactly) {
  std::mt19937 rng(11);
  std::uniform_int_distribution<int> code(-127, 127);
  const auto isas = kernels::available_isas();
  for (int64_t isa : isas) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE("isa " + kernels::isa_name(isa));
    for (size_t cols : {1, 15, 64, 100, 2048})
      for (size_t n_tok : {1, 3, 4, 9})
        for (size_t rows : {1, 2, 5, 33}) {
          SCOPED_TRACE(std::to_string(rows) + "x" + std::to_string(cols) + " times " +
                       std::to_string(n_tok) + " tokens");
          std::vector<int8_t> w(rows * cols), x(n_tok * cols);
          for (auto& v : w) v = static_cast<int8_t>(code(rng));
          for (auto& v : x) v = static_cast<int8_t>(code(rng));
          w[0] = x[0] = 127;
          w.back() = -127, x.back() = -127;
          const size_t ld = rows + 3;  // output rows wider than the tile
          std::vector<int32_t> fast(n_tok * ld, -1), ref(n_tok * ld, -1);
          kernels::gemm_i8(w.data(), rows, cols, x.data(), n_tok, fast.data(), ld);
          kernels::gemm_i8_reference(w.data(), rows, cols, x.data(), n_tok, ref.data(), ld);
          EXPECT_EQ(fast, ref);
          int32_t want = 0;  // the reference itself: token 0 · row 0
          for (size_t i = 0; i < cols; ++i) want += int32_t{w[i]} * x[i];
          EXPECT_EQ(ref[0], want);
          EXPECT_EQ(ref[rows], -1) << "wrote past the rows of the output";
        }
  }
  kernels::restrict_isa(0);
}

TEST(Kernels, Int8ActivationsPerTokenAndStatic) {
  const size_t cols = 100;
  auto x = gaussian(3 * cols, 9);
  x[cols + 7] = -30;  // token 1's largest value
  std::vector<int8_t> q(3 * cols);
  std::vector<float> s(3);
  kernels::quantize_acts_i8(x.data(), 3, cols, 0, q.data(), s.data());
  EXPECT_FLOAT_EQ(s[1], 30.0f / 127);
  EXPECT_EQ(q[cols + 7], -127);
  for (size_t t = 0; t < 3; ++t)
    for (size_t i = 0; i < cols; ++i)
      EXPECT_LE(std::fabs(x[t * cols + i] - s[t] * q[t * cols + i]), 0.5f * s[t] * 1.0001f);
  // Static: one scale for every token; values beyond 127 steps clamp.
  kernels::quantize_acts_i8(x.data(), 3, cols, 0.1f, q.data(), s.data());
  EXPECT_EQ(s, std::vector<float>(3, 0.1f));
  EXPECT_EQ(q[cols + 7], -127);
  for (size_t i = 0; i < 3 * cols; ++i)
    if (std::fabs(x[i]) < 12.7f) { EXPECT_LE(std::fabs(x[i] - 0.1f * q[i]), 0.05f * 1.0001f) << i; }
}

// Several tokens at once (prompt processing): every type and instruction set, token counts
// around the four-token kernels, outputs at their ld_y place and nowhere else.
TEST(Kernels, MultiTokenRowsEqualTheReferencePerToken) {
  for (int64_t isa : kernels::available_isas()) {
    kernels::restrict_isa(isa);
    SCOPED_TRACE("isa " + kernels::isa_name(isa));
    for (DType t : kernel_types()) {
      SCOPED_TRACE(dtype_name(t));
      const size_t n = row_lengths(t)[1], rows = 5, ld = rows + 2;
      const Weights w = make_weights(t, rows, n, 21);
      for (size_t n_acts : {1, 3, 4, 6, 9}) {
        std::vector<Acts> acts;
        std::vector<kernels::ActRow> rows_of_acts;
        for (size_t i = 0; i < n_acts; ++i)
          acts.push_back(make_acts(t, n, 30 + static_cast<uint32_t>(i)));
        for (const Acts& a : acts) rows_of_acts.push_back(a.row);
        std::vector<float> y(n_acts * ld, -7.0f), ref(rows);
        kernels::dot_rows_multi(t, w.bytes.data(), w.row_bytes, rows, n, rows_of_acts.data(),
                                n_acts, y.data(), ld);
        for (size_t i = 0; i < n_acts; ++i) {
          kernels::dot_rows_reference(t, w.bytes.data(), w.row_bytes, rows, n, acts[i].row,
                                      ref.data());
          const auto act = seen_acts(acts[i], n);
          for (size_t r = 0; r < rows; ++r) {
            double scale = 0;
            for (size_t k = 0; k < n; ++k) scale += std::fabs(w.values[r * n + k] * act[k]);
            EXPECT_NEAR(y[i * ld + r], ref[r], 2e-6 * scale + 1e-6)
                << n_acts << " tokens, token " << i << " row " << r;
          }
          EXPECT_EQ(y[i * ld + rows], -7.0f) << "wrote between the output rows";
        }
      }
    }
  }
  kernels::restrict_isa(0);
}

}  // namespace
}  // namespace lowbit

// The grids that hold 0 for the types with an offset or a min (quant/affine_grids.h): the
// zero decodes to exactly 0 at every magnitude, and holding it costs little accuracy.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "lowbit/dtype.h"
#include "quant/affine_grids.h"
#include "quant/block_codecs.h"
#include "test_support.h"

namespace lowbit::quant {
namespace {

constexpr DType kMinTypes[] = {DType::Q4_1, DType::Q5_1, DType::Q2_K, DType::Q4_K, DType::Q5_K};

// Weighted squared error of rounding x to nearest on a codec's grid, and the decoded values.
double round_trip(const BlockCodec& c, ChooseGridFn choose, const float* x, float* y) {
  const auto& tr = traits(c.type);
  std::vector<uint8_t> block(tr.type_size);
  BlockGrid g;
  choose(x, nullptr, block.data(), &g);
  std::vector<int> codes(tr.block_size);
  for (uint64_t e = 0; e < tr.block_size; ++e) codes[e] = g.nearest(int(e), x[e]);
  c.set_codes(codes.data(), block.data());
  c.dequantize(block.data(), y);
  double err = 0;
  for (uint64_t e = 0; e < tr.block_size; ++e) err += double(x[e] - y[e]) * (x[e] - y[e]);
  return err;
}

// Values at any magnitude, f16-subnormal scales included: every zero decodes to exactly 0,
// through choose (which sees the zeros) and through choose_zero (asked for it).
TEST(AffineGrids, ZerosDecodeToExactlyZeroAtEveryMagnitude) {
  for (DType t : kMinTypes) {
    SCOPED_TRACE(dtype_name(t));
    const BlockCodec* c = block_codec(t);
    ASSERT_NE(c->choose_zero, nullptr);
    const uint64_t n = traits(t).block_size;
    uint32_t seed = 1;
    for (float scale : {1e-7f, 3e-6f, 1e-4f, 0.02f, 1.0f, 300.0f}) {
      for (int every : {2, 3, 7, int(n)}) {
        std::vector<float> x = test::gaussian(n, seed++, scale), y(n);
        for (uint64_t e = 0; e < n; e += every) x[e] = 0;
        for (ChooseGridFn choose : {c->choose, c->choose_zero}) {
          round_trip(*c, choose, x.data(), y.data());
          for (uint64_t e = 0; e < n; ++e) {
            ASSERT_TRUE(std::isfinite(y[e])) << "scale " << scale << " value " << e;
            if (e % every == 0) {
              ASSERT_EQ(y[e], 0.0f) << "scale " << scale << " value " << e;
            }
          }
        }
      }
    }
  }
}

// GPTQ rounds a pruned weight as 0 on a grid chosen before the sweep zeroes it: choose_zero
// puts 0 on the grid of every group even when the block holds none yet.
TEST(AffineGrids, ChooseZeroPutsZeroOnEveryGroupsGrid) {
  for (DType t : kMinTypes) {
    SCOPED_TRACE(dtype_name(t));
    const BlockCodec* c = block_codec(t);
    const uint64_t n = traits(t).block_size;
    for (uint32_t seed = 0; seed < 20; ++seed) {
      const std::vector<float> x = test::gaussian(n, 100 + seed, 0.05f);
      std::vector<uint8_t> block(traits(t).type_size);
      BlockGrid g;
      c->choose_zero(x.data(), nullptr, block.data(), &g);
      for (uint64_t e = 0; e < n; ++e)
        ASSERT_EQ(g.value(int(e), g.nearest(int(e), 0.0f)), 0.0f) << e;
    }
  }
}

// What holding 0 costs. On dense Gaussian blocks the squared error rises by 18-35% (Q5_1
// 1.18, Q4_1 and Q4_K 1.23, Q5_K 1.25, Q2_K 1.35): about what an integer zero code costs
// even with float scales (1.16-1.23). On half-pruned blocks the zero-holding grid is as good
// as the free one, which rounds the pruned weights to a value near 0 (0.91-0.99; Q2_K 1.07).
TEST(AffineGrids, HoldingZeroCostsAFifthOnDenseBlocksAndNothingOnPrunedOnes) {
  for (DType t : kMinTypes) {
    const BlockCodec* c = block_codec(t);
    const uint64_t n = traits(t).block_size, blocks = 4096 / n * 8;
    double dense_free = 0, dense_zero = 0, pruned_free = 0, pruned_zero = 0;
    std::vector<float> y(n);
    for (uint64_t b = 0; b < blocks; ++b) {
      std::vector<float> x = test::gaussian(n, 1000 + uint32_t(b), 0.05f);
      dense_free += round_trip(*c, c->choose, x.data(), y.data());
      dense_zero += round_trip(*c, c->choose_zero, x.data(), y.data());
      // Half the values (the smaller ones, as magnitude pruning) near 0: the free grid's cost.
      std::vector<float> near(x), pruned(x);
      for (uint64_t e = 0; e < n; ++e)
        if (std::fabs(x[e]) < 0.05f * 0.674f) near[e] = 1e-30f, pruned[e] = 0;
      pruned_free += round_trip(*c, c->choose, near.data(), y.data());
      pruned_zero += round_trip(*c, c->choose, pruned.data(), y.data());
    }
    std::printf("%-5s dense: zero/free %.4f   half pruned: zero/free %.4f\n", dtype_name(t),
                dense_zero / dense_free, pruned_zero / pruned_free);
    EXPECT_LT(dense_zero / dense_free, 1.4) << dtype_name(t);
    EXPECT_LT(pruned_zero / pruned_free, 1.1) << dtype_name(t);
  }
}

}  // namespace
}  // namespace lowbit::quant

// The i-quant codebooks expanded from iq_grid_bitmaps.inc: sizes, order and the lattice
// rules each grid follows (a wrong bitmap or expansion breaks them), and the neighbour
// lists the quantizers search. That llama.cpp decodes lowbit's IQ3_S blocks to the same
// values is QuantBlocksLlamaCpp.LlamaCppDecodesLowbitBlocksIdentically.
#include <gtest/gtest.h>

#include <algorithm>
#include <climits>

#include "quant/iq_grids.h"

namespace lowbit::quant {
namespace {

struct Expected {
  IqGridId id;
  int n, width, radix;
  bool even_sum;  // IQ2_*, IQ3_XXS: the levels of every entry add up to an even number
};
constexpr Expected kGrids[] = {
    {IqGridId::Iq3s, 512, 4, 8, false},  {IqGridId::Iq3xxs, 256, 4, 8, true},
    {IqGridId::Iq2xxs, 256, 8, 3, true}, {IqGridId::Iq2xs, 512, 8, 3, true},
    {IqGridId::Iq2s, 1024, 8, 3, true},  {IqGridId::Iq1s, 2048, 8, 3, false}};

int code_of(const IqGrid& g, const uint8_t* l) {
  int code = 0;
  for (int j = g.width - 1; j >= 0; --j) code = code * g.radix + l[j];
  return code;
}

TEST(IqGrids, EveryGridHasItsSizeOrderAndLatticeRule) {
  for (const Expected& x : kGrids) {
    const IqGrid& g = iq_grid(x.id);
    SCOPED_TRACE(static_cast<int>(x.id));
    ASSERT_EQ(g.n, x.n);
    ASSERT_EQ(g.width, x.width);
    ASSERT_EQ(g.radix, x.radix);
    int previous = -1;
    for (int i = 0; i < g.n; ++i) {
      const int code = code_of(g, g.entry(i));
      EXPECT_GT(code, previous) << "entry " << i;
      EXPECT_EQ(g.index[code], i);
      previous = code;
      int sum = 0;
      for (int j = 0; j < g.width; ++j) sum += g.entry(i)[j];
      if (x.even_sum) {
        EXPECT_EQ(sum % 2, 0) << "entry " << i;
      }
    }
  }
}

// Every level vector off the grid lists the entries nearest to it.
TEST(IqGrids, NeighbourListsHoldTheNearestEntries) {
  for (const Expected& x : kGrids) {
    const IqGrid& g = iq_grid(x.id);
    SCOPED_TRACE(static_cast<int>(x.id));
    for (int code = 0; code < static_cast<int>(g.index.size()); code += 7) {
      if (g.index[code] >= 0) continue;
      int lv[8];
      for (int j = 0, c = code; j < g.width; ++j, c /= g.radix) lv[j] = c % g.radix;
      auto dist = [&](int i) {
        int d = 0;
        for (int j = 0; j < g.width; ++j) d += (g.entry(i)[j] - lv[j]) * (g.entry(i)[j] - lv[j]);
        return d;
      };
      int nearest = INT_MAX, listed = INT_MAX;
      for (int i = 0; i < g.n; ++i) nearest = std::min(nearest, dist(i));
      ASSERT_LT(g.near_start[code], g.near_start[code + 1]) << code;
      for (int k = g.near_start[code]; k < g.near_start[code + 1]; ++k)
        listed = std::min(listed, dist(g.near[k]));
      EXPECT_EQ(listed, nearest) << code;
    }
  }
}

}  // namespace
}  // namespace lowbit::quant

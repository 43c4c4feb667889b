#include "quant/iq_grids.h"

#include <algorithm>
#include <iterator>
#include <mutex>
#include <optional>
#include <stdexcept>

namespace lowbit::quant {
namespace {

#include "quant/iq_grid_bitmaps.inc"

IqGrid expand(const uint8_t* members, int radix, int width) {
  IqGrid g;
  g.radix = radix, g.width = width;
  int space = 1;
  for (int j = 0; j < width; ++j) space *= radix;
  g.index.assign(space, -1);
  for (int code = 0; code < space; ++code) {
    if (!((members[code / 8] >> (code % 8)) & 1)) continue;
    g.index[code] = static_cast<int16_t>(g.n++);
    for (int j = 0, c = code; j < width; ++j, c /= radix)
      g.levels.push_back(static_cast<uint8_t>(c % radix));
  }
  g.near_start.assign(space + 1, 0);
  std::vector<int> dist(g.n);
  for (int code = 0; code < space; ++code) {
    g.near_start[code] = static_cast<int32_t>(g.near.size());
    if (g.index[code] >= 0) continue;
    int lv[8];
    for (int j = 0, c = code; j < width; ++j, c /= radix) lv[j] = c % radix;
    for (int i = 0; i < g.n; ++i) {
      dist[i] = 0;
      for (int j = 0; j < width; ++j) dist[i] += (g.entry(i)[j] - lv[j]) * (g.entry(i)[j] - lv[j]);
    }
    std::vector<int> distinct(dist.begin(), dist.end());
    std::sort(distinct.begin(), distinct.end());
    distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
    const int limit = distinct[std::min<size_t>(radix == 3 ? 1 : 2, distinct.size() - 1)];
    for (int i = 0; i < g.n; ++i)
      if (dist[i] <= limit) g.near.push_back(static_cast<int16_t>(i));
  }
  g.near_start[space] = static_cast<int32_t>(g.near.size());
  g.words = (g.n + 63) / 64;
  g.with_level.assign(static_cast<size_t>(width * radix * g.words), 0);
  for (int i = 0; i < g.n; ++i)
    for (int j = 0; j < width; ++j)
      g.with_level[static_cast<size_t>(j * radix + g.entry(i)[j]) * g.words + i / 64] |=
          uint64_t{1} << (i % 64);
  return g;
}

}  // namespace

const IqGrid& iq_grid(IqGridId id) {
  struct Spec {
    const uint8_t* members;
    int radix, width;
  };
  static constexpr Spec kSpecs[] = {
      {kIq3sMembers, 8, 4},  {kIq3xxsMembers, 8, 4}, {kIq2xxsMembers, 3, 8},
      {kIq2xsMembers, 3, 8}, {kIq2sMembers, 3, 8},   {kIq1sMembers, 3, 8}};  // IqGridId order
  constexpr size_t n = std::size(kSpecs);
  static_assert(n == static_cast<size_t>(IqGridId::Iq1s) + 1, "one spec per IqGridId");
  static std::once_flag built[n];
  static std::optional<IqGrid> grids[n];
  const auto i = static_cast<size_t>(id);
  if (i >= n) throw std::logic_error("iq_grid: unknown grid");
  std::call_once(built[i],
                 [&] { grids[i] = expand(kSpecs[i].members, kSpecs[i].radix, kSpecs[i].width); });
  return *grids[i];
}

}  // namespace lowbit::quant

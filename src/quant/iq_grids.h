// The codebooks of llama.cpp's i-quant types. Each entry is a vector of `width` levels
// (4 for the 3-bit grids, 8 for the others) picked from a small lattice; a block stores, per
// group of `width` values, the entry's index. The membership of each grid is data chosen by
// llama.cpp's authors (read out of its decoder by scripts/extract_iq_grids.py into
// iq_grid_bitmaps.inc); the entries are the members in ascending order of their packed
// level code sum_j level_j * radix^j.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lowbit::quant {

struct IqGrid {
  int n = 0;                    // entries
  int width = 0;                // levels per entry
  int radix = 0;                // levels per coordinate: 8 (3-bit grids) or 3
  std::vector<uint8_t> levels;  // [n][width], 0 .. radix - 1
  std::vector<int16_t> index;   // [radix^width]: entry of a level vector, -1 if not a member
  // For a level vector that is not a member: the entries at its three (radix 8) or two
  // (radix 3) smallest distinct distances (sum of squared level differences), where the
  // nearest entry under any moderate weighting lies: near[near_start[code] ..
  // near_start[code + 1]). A third distance for the 8-wide grids tripled the lists (IQ2_S:
  // 58 to 159 entries) and halved the quantizer's speed for a 0.02% lower error.
  std::vector<int32_t> near_start;
  std::vector<int16_t> near;

  // Entry sets as bitsets of `words` u64 (bit i = entry i): with_level[(j * radix + l) * words
  // ...] holds the entries whose coordinate j is level l.
  int words = 0;
  std::vector<uint64_t> with_level;

  const uint8_t* entry(int i) const { return levels.data() + static_cast<size_t>(i) * width; }
  const uint64_t* entries_with(int j, int l) const {
    return with_level.data() + static_cast<size_t>(j * radix + l) * words;
  }
};

enum class IqGridId { Iq3s, Iq3xxs, Iq2xxs, Iq2xs, Iq2s, Iq1s };
// Built at the first use of that grid.
const IqGrid& iq_grid(IqGridId id);

}  // namespace lowbit::quant

// lowbit's 2:4 sparse block types Q8_0_S24 and Q4_0_S24 (layouts in block_layouts.h): the
// grids of Q8_0 and Q4_0, with only the two kept values of every group of four stored.
// Pruning happens before rounding (lowbit/sparsity.h), so a group reaches set_codes with at
// most two non-zero codes and packing loses nothing; a group with more (rounding of weights
// that were not pruned) keeps its two largest.
#include <cstring>

#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"

namespace lowbit::quant {
namespace {

// The kept places of each group of four from the levels (codes minus the grid's bias) of a
// block: the non-zero ones, the two of largest magnitude if there are more (the lower place
// on ties), filled up with zero places from the lowest. kept[k] is the place (0-31) of kept
// value k; pos is written as the layout says.
void choose_kept(const int* levels, int* kept, uint8_t* pos) {
  std::memset(pos, 0, 4);
  for (int g = 0; g < 8; ++g) {
    const int* l = levels + 4 * g;
    int a = -1, b = -1;  // the largest and second largest magnitudes among non-zeros
    for (int p = 0; p < 4; ++p) {
      if (l[p] == 0) continue;
      const int m = l[p] < 0 ? -l[p] : l[p];
      if (a < 0 || m > (l[a] < 0 ? -l[a] : l[a]))
        b = a, a = p;
      else if (b < 0 || m > (l[b] < 0 ? -l[b] : l[b]))
        b = p;
    }
    for (int p = 0; p < 4 && (a < 0 || b < 0); ++p) {
      if (p == a || p == b) continue;
      if (a < 0)
        a = p;
      else
        b = p;
    }
    const int p0 = a < b ? a : b, p1 = a < b ? b : a;
    kept[2 * g] = 4 * g + p0;
    kept[2 * g + 1] = 4 * g + p1;
    pos[g / 2] |= static_cast<uint8_t>((p0 | p1 << 2) << (4 * (g % 2)));
  }
}

}  // namespace

// choose_q8_0 and choose_q4_0 write only d, which leads these layouts too.
void choose_q8_0_s24(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_q8_0(x, w, out, g);
}
void set_codes_q8_0_s24(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ8_0_S24*>(out);
  int levels[kQK], kept[16];
  for (int e = 0; e < kQK; ++e) levels[e] = codes[e] - 127;
  choose_kept(levels, kept, b->pos);
  for (int k = 0; k < 16; ++k) b->qs[k] = static_cast<int8_t>(levels[kept[k]]);
}
void dequantize_q8_0_s24(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ8_0_S24*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = 0;
  for (int k = 0; k < 16; ++k) y[kept_place(b->pos, k)] = d * b->qs[k];
}

void choose_q4_0_s24(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_q4_0(x, w, out, g);
}
void set_codes_q4_0_s24(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ4_0_S24*>(out);
  int levels[kQK], kept[16];
  for (int e = 0; e < kQK; ++e) levels[e] = codes[e] - 8;
  choose_kept(levels, kept, b->pos);
  for (int k = 0; k < 8; ++k)
    b->qs[k] = static_cast<uint8_t>((codes[kept[k]] & 15) | (codes[kept[k + 8]] & 15) << 4);
}
void dequantize_q4_0_s24(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ4_0_S24*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = 0;
  for (int k = 0; k < 16; ++k)
    y[kept_place(b->pos, k)] = d * ((k < 8 ? b->qs[k] & 15 : b->qs[k - 8] >> 4) - 8);
}

}  // namespace lowbit::quant

// The ternary block types TQ1_0 and TQ2_0 (layouts in block_layouts.h): 256 values, one f16
// scale d, every value -d, 0 or +d. `choose` fits d exactly (scale_fit.h, fit_ternary); the
// two types differ only in how the trits are packed (1.6875 and 2.0625 bits per weight).
#include <cstring>

#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

// Fits d, stores it as f16 and describes the grid {-d, 0, d} under the stored value.
void choose_ternary(const float* x, const float* w, uint16_t* d16, BlockGrid* g) {
  const float d = store_f16(fit_ternary(x, w, kQKK), d16);
  g->n_codes = 3;
  g->level_bias = 1;
  for (int e = 0; e < kQKK; ++e) g->scale[e] = d, g->offset[e] = 0;
}

}  // namespace

void choose_tq2_0(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_ternary(x, w, &reinterpret_cast<BlockTQ2_0*>(out)->d, g);
}
void set_codes_tq2_0(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockTQ2_0*>(out);
  std::memset(b->qs, 0, sizeof b->qs);
  for (int e = 0; e < kQKK; ++e) put_code2(b->qs, e, codes[e]);
}
void dequantize_tq2_0(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockTQ2_0*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQKK; ++e) y[e] = d * static_cast<float>(code2_at(b->qs, e) - 1);
}

void choose_tq1_0(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_ternary(x, w, &reinterpret_cast<BlockTQ1_0*>(out)->d, g);
}
void set_codes_tq1_0(const int* codes, uint8_t* out) {
  uint8_t* bytes = out;  // qs then qh: 52 bytes
  for (int i = 0; i < 52; ++i) {
    int t = 0;
    for (int j = 0; j < 5; ++j) {
      const int place = tq1_place(i, j);
      t = 3 * t + (place < 0 ? 0 : codes[place]);
    }
    bytes[i] = static_cast<uint8_t>((t * 256 + 242) / 243);  // ceil(256 t / 243)
  }
}
void dequantize_tq1_0(const uint8_t* in, float* y) {
  const float d = f16_to_f32(reinterpret_cast<const BlockTQ1_0*>(in)->d);
  for (int i = 0; i < 52; ++i)
    for (int j = 0; j < 5; ++j)
      if (const int place = tq1_place(i, j); place >= 0)
        y[place] = d * static_cast<float>(tq1_trit(in[i], j) - 1);
}

}  // namespace lowbit::quant

// The 32-value block types: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL (layouts in block_layouts.h).
// Each `choose` fits the float scale (and offset) with the searches of scale_fit.h and stores
// it as f16; the grid it reports uses the stored value, so codes are rounded under what the
// decoder will see.
#include <cstring>

#include "lowbit/float_convert.h"
#include "quant/block_codecs.h"
#include "quant/affine_grids.h"
#include "quant/block_layouts.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

// Nibble layout shared by the 32-value types: value e<16 in the low nibble of qs[e],
// value e>=16 in the high nibble of qs[e-16].
void pack_nibbles(const int* codes, uint8_t* qs) {
  for (int j = 0; j < 16; ++j)
    qs[j] = static_cast<uint8_t>((codes[j] & 15) | ((codes[j + 16] & 15) << 4));
}
int nibble(const uint8_t* qs, int e) { return e < 16 ? qs[e] & 15 : qs[e - 16] >> 4; }

// Fifth bits of Q5_0/Q5_1 as a little-endian u32.
void pack_high_bits(const int* codes, uint8_t* qh) {
  uint32_t h = 0;
  for (int e = 0; e < kQK; ++e) h |= static_cast<uint32_t>((codes[e] >> 4) & 1) << e;
  std::memcpy(qh, &h, 4);
}
int high_bit(const uint8_t* qh, int e) {
  uint32_t h;
  std::memcpy(&h, qh, 4);
  return (h >> e) & 1;
}

// Symmetric grid: value = d*(code - bias), levels [qmin, qmax] = codes - bias, f16 d.
void choose_symmetric(const float* x, const float* w, int qmin, int qmax, uint16_t* d16,
                      BlockGrid* g) {
  const float d = store_f16(fit_symmetric(x, w, kQK, qmin, qmax), d16);
  g->n_codes = qmax - qmin + 1;
  g->level_bias = -qmin;
  for (int e = 0; e < kQK; ++e) g->scale[e] = d, g->offset[e] = 0;
}

// Affine grid: value = d*code + m, codes [0, qmax], f16 d and m; with `zero`, m = -k*d
// exactly, so that code k decodes to 0 (affine_grids.h).
void choose_affine(const float* x, const float* w, int qmax, bool zero, uint16_t* d16,
                   uint16_t* m16, BlockGrid* g) {
  AffineFit f;
  if (zero) {
    const ZeroAffine z = fit_affine_with_zero(x, w, kQK, qmax, true);
    f = {z.d, -(z.d * static_cast<float>(z.zero))};
  } else {
    f = fit_affine(x, w, kQK, qmax, false);
  }
  const float m = store_f16(f.offset, m16);
  const float d = store_f16(f.scale, d16);
  g->n_codes = qmax + 1;
  for (int e = 0; e < kQK; ++e) g->scale[e] = d, g->offset[e] = m;
}

}  // namespace

void choose_q4_0(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_symmetric(x, w, -8, 7, &reinterpret_cast<BlockQ4_0*>(out)->d, g);
}
void set_codes_q4_0(const int* codes, uint8_t* out) {
  pack_nibbles(codes, reinterpret_cast<BlockQ4_0*>(out)->qs);
}
void dequantize_q4_0(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ4_0*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = d * (nibble(b->qs, e) - 8);
}

void choose_q4_1(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ4_1*>(out);
  choose_affine(x, w, 15, has_exact_zero(x, kQK), &b->d, &b->m, g);
}
void choose_zero_q4_1(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ4_1*>(out);
  choose_affine(x, w, 15, true, &b->d, &b->m, g);
}
void set_codes_q4_1(const int* codes, uint8_t* out) {
  pack_nibbles(codes, reinterpret_cast<BlockQ4_1*>(out)->qs);
}
void dequantize_q4_1(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ4_1*>(in);
  const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
  for (int e = 0; e < kQK; ++e) y[e] = d * nibble(b->qs, e) + m;
}

void choose_q5_0(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_symmetric(x, w, -16, 15, &reinterpret_cast<BlockQ5_0*>(out)->d, g);
}
void set_codes_q5_0(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ5_0*>(out);
  pack_nibbles(codes, b->qs);
  pack_high_bits(codes, b->qh);
}
void dequantize_q5_0(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ5_0*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = d * ((nibble(b->qs, e) | high_bit(b->qh, e) << 4) - 16);
}

void choose_q5_1(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ5_1*>(out);
  choose_affine(x, w, 31, has_exact_zero(x, kQK), &b->d, &b->m, g);
}
void choose_zero_q5_1(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ5_1*>(out);
  choose_affine(x, w, 31, true, &b->d, &b->m, g);
}
void set_codes_q5_1(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ5_1*>(out);
  pack_nibbles(codes, b->qs);
  pack_high_bits(codes, b->qh);
}
void dequantize_q5_1(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ5_1*>(in);
  const float d = f16_to_f32(b->d), m = f16_to_f32(b->m);
  for (int e = 0; e < kQK; ++e) y[e] = d * (nibble(b->qs, e) | high_bit(b->qh, e) << 4) + m;
}

// Codes 0..254 stand for levels -127..127 (llama.cpp never uses -128).
void choose_q8_0(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_symmetric(x, w, -127, 127, &reinterpret_cast<BlockQ8_0*>(out)->d, g);
}
void set_codes_q8_0(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ8_0*>(out);
  for (int e = 0; e < kQK; ++e) b->qs[e] = static_cast<int8_t>(codes[e] - 127);
}
void dequantize_q8_0(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ8_0*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = d * b->qs[e];
}

void choose_iq4_nl(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockIQ4_NL*>(out);
  const float d = store_f16(fit_table(x, w, kQK, kIq4nlValues, 16), &b->d);
  g->n_codes = 16;
  g->table = kIq4nlValues;
  for (int e = 0; e < kQK; ++e) g->scale[e] = d, g->offset[e] = 0;
}
void set_codes_iq4_nl(const int* codes, uint8_t* out) {
  pack_nibbles(codes, reinterpret_cast<BlockIQ4_NL*>(out)->qs);
}
void dequantize_iq4_nl(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockIQ4_NL*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQK; ++e) y[e] = d * kIq4nlValues[nibble(b->qs, e)];
}

}  // namespace lowbit::quant

// The registry of block codecs and the row-level entry points of lowbit/quant.h.
#include "quant/block_codecs.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <vector>

#include "core/parallel.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "lowbit/tensor.h"
#include "quant/block_layouts.h"
#include "quant/debias.h"
#include "quant/scale_fit.h"

namespace lowbit {
namespace quant {

int BlockGrid::nearest(int e, float x) const {
  const float t = scale[e] != 0 ? (x - offset[e]) / scale[e] : 0.0f;
  if (table) return nearest_level(t, table, n_codes);
  return round_clamp(t, -level_bias, n_codes - 1 - level_bias) + level_bias;
}

void BlockCodec::quantize(const float* x, const float* w, uint8_t* block) const {
  if (quantize_block) return quantize_block(x, w, block);
  BlockGrid g;
  choose(x, w, block, &g);
  int codes[kQKK];
  const int n = traits(type).block_size;
  for (int e = 0; e < n; ++e) codes[e] = g.nearest(e, x[e]);
  set_codes(codes, block);
}

const BlockCodec* block_codec(DType t) {
#define LOWBIT_AT(T, f) static_cast<int16_t>(offsetof(Block##T, f))
#define LOWBIT_CODEC(T, name, zero, m, debias)                                                \
  {                                                                                           \
    DType::T, choose_##name, zero, set_codes_##name, dequantize_##name, {LOWBIT_AT(T, d), m}, \
        debias                                                                                \
  }
  // Codebook types: no grid per value (block_codecs.h), a whole-block quantizer instead.
#define LOWBIT_CODEBOOK(T, d, debias)                                                    \
  {                                                                                      \
    DType::T, nullptr, nullptr, nullptr, dequantize_codebook<DType::T>, {d, -1}, debias, \
        quantize_codebook<DType::T>                                                      \
  }
  static constexpr std::array<BlockCodec, 23> kCodecs = {{
      LOWBIT_CODEC(Q4_0, q4_0, choose_q4_0, -1, false),
      LOWBIT_CODEC(Q4_1, q4_1, choose_zero_q4_1, LOWBIT_AT(Q4_1, m), false),
      LOWBIT_CODEC(Q5_0, q5_0, choose_q5_0, -1, false),
      LOWBIT_CODEC(Q5_1, q5_1, choose_zero_q5_1, LOWBIT_AT(Q5_1, m), false),
      LOWBIT_CODEC(Q8_0, q8_0, choose_q8_0, -1, false),
      LOWBIT_CODEC(IQ4_NL, iq4_nl, nullptr, -1, false),
      LOWBIT_CODEC(Q2_K, q2_k, choose_zero_q2_k, LOWBIT_AT(Q2_K, dmin), true),
      LOWBIT_CODEC(Q3_K, q3_k, choose_q3_k, -1, true),
      LOWBIT_CODEC(Q4_K, q4_k, choose_zero_q4_k, LOWBIT_AT(Q4_K, dmin), true),
      LOWBIT_CODEC(Q5_K, q5_k, choose_zero_q5_k, LOWBIT_AT(Q5_K, dmin), true),
      LOWBIT_CODEC(Q6_K, q6_k, choose_q6_k, -1, true),
      LOWBIT_CODEC(IQ4_XS, iq4_xs, nullptr, -1, false),
      LOWBIT_CODEBOOK(IQ3_S, LOWBIT_AT(IQ3_S, d), true),
      LOWBIT_CODEBOOK(IQ3_XXS, LOWBIT_AT(IQ3_XXS, d), true),
      LOWBIT_CODEBOOK(IQ2_S, LOWBIT_AT(IQ2_S, d), true),
      LOWBIT_CODEBOOK(IQ2_XS, LOWBIT_AT(IQ2_XS, d), true),
      LOWBIT_CODEBOOK(IQ2_XXS, LOWBIT_AT(IQ2_XXS, d), true),
      // The ternary codebooks clip a row's largest values by up to half, more than the
      // rescale (clamped at 1.25) can make up, like TQ1_0/TQ2_0; IQ1_M spreads d over four
      // nibbles.
      LOWBIT_CODEBOOK(IQ1_S, LOWBIT_AT(IQ1_S, d), false),
      LOWBIT_CODEBOOK(IQ1_M, -1, false),
      LOWBIT_CODEC(TQ1_0, tq1_0, choose_tq1_0, -1, false),
      LOWBIT_CODEC(TQ2_0, tq2_0, choose_tq2_0, -1, false),
      LOWBIT_CODEC(Q8_0_S24, q8_0_s24, choose_q8_0_s24, -1, false),
      LOWBIT_CODEC(Q4_0_S24, q4_0_s24, choose_q4_0_s24, -1, false),
  }};
#undef LOWBIT_AT
#undef LOWBIT_CODEC
#undef LOWBIT_CODEBOOK
  for (const auto& c : kCodecs)
    if (c.type == t) return &c;
  return nullptr;
}

}  // namespace quant

bool can_quantize_to(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || quant::block_codec(t) != nullptr;
}

bool can_dequantize(DType t) { return traits(t).is_float || quant::block_codec(t) != nullptr; }

namespace quant {

void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, bool debias, uint8_t* out) {
  const auto& tr = traits(t);
  if (row_len % tr.block_size != 0)
    fail(ErrorKind::Argument,
         "cannot quantize rows of {} values to {}: not a multiple of its block size {}", row_len,
         tr.name, tr.block_size);
  const BlockCodec* codec = block_codec(t);
  if (!codec) {
    if (!tr.is_float) fail(ErrorKind::Unsupported, "no quantizer for type {}", tr.name);
    auto bytes = from_f32(x, n_rows * row_len, t);
    std::memcpy(out, bytes.data(), bytes.size());
    return;
  }
  debias = debias && codec->debias;
  const uint64_t blocks_per_row = row_len / tr.block_size,
                 row_bytes = blocks_per_row * tr.type_size;
  std::vector<float> mx(debias ? row_len : 0);
  for (uint64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * row_len;
    uint8_t* qr = out + r * row_bytes;
    for (uint64_t b = 0; b < blocks_per_row; ++b) {
      const uint64_t col = b * tr.block_size;
      codec->quantize(xr + col, importance ? importance + col : nullptr, qr + b * tr.type_size);
    }
    if (!debias) continue;
    for (uint64_t c = 0; c < row_len; ++c) mx[c] = weight_at(importance, int(c)) * xr[c];
    debias_row(*codec, xr, mx.data(), row_len, qr);
  }
}

void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, bool debias, int n_threads, uint8_t* out) {
  const auto& tr = traits(t);
  const uint64_t row_bytes = row_len / tr.block_size * tr.type_size;
  parallel_for(n_rows, resolve_threads(n_threads), [&](uint64_t r0, uint64_t r1) {
    quantize_rows(t, x + r0 * row_len, r1 - r0, row_len, importance, debias, out + r0 * row_bytes);
  });
}

}  // namespace quant

void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, uint8_t* out) {
  quant::quantize_rows(t, x, n_rows, row_len, importance, true, out);
}

void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, int n_threads, uint8_t* out) {
  quant::quantize_rows(t, x, n_rows, row_len, importance, true, n_threads, out);
}

void dequantize_values(DType t, const uint8_t* in, uint64_t n, float* out) {
  const auto& tr = traits(t);
  const quant::BlockCodec* codec = quant::block_codec(t);
  if (!codec) {
    TensorView v;
    v.dtype = t;
    v.shape = {n};
    v.data = in;
    v.nbytes = n * tr.type_size;
    to_f32(v, out);
    return;
  }
  for (uint64_t b = 0; b < n / tr.block_size; ++b)
    codec->dequantize(in + b * tr.type_size, out + b * tr.block_size);
}

}  // namespace lowbit

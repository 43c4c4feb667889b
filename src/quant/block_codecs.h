// One codec per GGUF block type, operating on a single block, split in two steps so that
// rounding can be done by someone else (GPTQ) on the grid the parameters define:
//   choose     fits the block's parameters (f16 scales, mins, sub-block scales) to the values
//              x (importance w, null = uniform), writes them into the block and describes the
//              grid of values every position can take;
//   set_codes  writes one code per position into a block whose parameters are set.
// Plain round-to-nearest is choose, then each value's nearest grid point, then set_codes.
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"

namespace lowbit::quant {

// The values position e of a block can decode to once its parameters are fixed:
//   value(e, c) = scale[e] * level(c) + offset[e],  c in [0, n_codes)
//   level(c) = table ? table[c] : c - level_bias
struct BlockGrid {
  int n_codes = 0;
  int level_bias = 0;
  const int8_t* table = nullptr;  // sorted ascending, n_codes entries
  float scale[256];
  float offset[256];

  float level(int c) const { return table ? table[c] : static_cast<float>(c - level_bias); }
  float value(int e, int c) const { return scale[e] * level(c) + offset[e]; }
  int nearest(int e, float x) const;  // code of the grid value closest to x
};

using ChooseGridFn = void (*)(const float* x, const float* w, uint8_t* block, BlockGrid* grid);
using SetCodesFn = void (*)(const int* codes, uint8_t* block);
using DequantizeBlockFn = void (*)(const uint8_t* block, float* y);
using QuantizeBlockFn = void (*)(const float* x, const float* w, uint8_t* block);

struct BlockCodec {
  DType type;
  ChooseGridFn choose;
  // choose with 0 on the grid (pruned weights stay 0; affine_grids.h): choose itself for the
  // types whose grid always holds 0, null for IQ4_NL/IQ4_XS (no 0 among their levels) and
  // for the codebook types (IQ3_*, IQ2_*, IQ1_*: no grid per value, no 0 either).
  ChooseGridFn choose_zero;
  SetCodesFn set_codes;
  DequantizeBlockFn dequantize;
  // Byte offsets of the f16 fields that every decoded value of the block is proportional to
  // (d, and the offset m or the min scale dmin), -1 when unused.
  int16_t f16_scales[2];
  // Rounding rescales each row so it is not shrunk (quant/debias.h): the K and codebook
  // types. On the 4-bit 32-value and IQ4 types it raised tinyllm-8m's KLD by 0.1-0.9%
  // (docs/QUANTIZATION.md).
  bool debias;
  // Codebook types (IQ3_*, IQ2_*, IQ1_*): groups of values share one grid entry, so there is no
  // grid per position; choose, choose_zero and set_codes are null and this quantizes a whole block.
  QuantizeBlockFn quantize_block = nullptr;

  // Round-to-nearest: x = block_size values, w = their importance weights (null = uniform).
  void quantize(const float* x, const float* w, uint8_t* block) const;
};

// nullptr when the type has no block codec (plain floats, integers, Q8_1/Q8_K).
const BlockCodec* block_codec(DType t);

// lowbit::quantize_rows with the K types' rescale (quant/debias.h) optional: searches that
// score candidates, and methods that refine the rounding before rescaling (AWQ), round
// with debias = false.
void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, bool debias, uint8_t* out);
void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, bool debias, int n_threads, uint8_t* out);

// Defined in blocks_legacy.cpp, blocks_k.cpp, blocks_ternary.cpp and blocks_2of4.cpp: choose_X,
// set_codes_X, dequantize_X.
#define LOWBIT_DECLARE_CODEC(type)                                                   \
  void choose_##type(const float* x, const float* w, uint8_t* block, BlockGrid* g); \
  void set_codes_##type(const int* codes, uint8_t* block);                           \
  void dequantize_##type(const uint8_t* block, float* y);
LOWBIT_DECLARE_CODEC(q4_0)
LOWBIT_DECLARE_CODEC(q4_1)
LOWBIT_DECLARE_CODEC(q5_0)
LOWBIT_DECLARE_CODEC(q5_1)
LOWBIT_DECLARE_CODEC(q8_0)
LOWBIT_DECLARE_CODEC(iq4_nl)
LOWBIT_DECLARE_CODEC(q2_k)
LOWBIT_DECLARE_CODEC(q3_k)
LOWBIT_DECLARE_CODEC(q4_k)
LOWBIT_DECLARE_CODEC(q5_k)
LOWBIT_DECLARE_CODEC(q6_k)
LOWBIT_DECLARE_CODEC(iq4_xs)
LOWBIT_DECLARE_CODEC(tq1_0)  // blocks_ternary.cpp
LOWBIT_DECLARE_CODEC(tq2_0)
LOWBIT_DECLARE_CODEC(q8_0_s24)  // blocks_2of4.cpp
LOWBIT_DECLARE_CODEC(q4_0_s24)
#undef LOWBIT_DECLARE_CODEC
// Codebook types (IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS, IQ2_XXS): a whole block at once
// (blocks_iq.cpp).
template <DType T>
void quantize_codebook(const float* x, const float* w, uint8_t* block);
template <DType T>
void dequantize_codebook(const uint8_t* block, float* y);
// The choose with 0 on the grid of the types with an offset or a min (affine_grids.h).
void choose_zero_q4_1(const float* x, const float* w, uint8_t* block, BlockGrid* g);
void choose_zero_q5_1(const float* x, const float* w, uint8_t* block, BlockGrid* g);
void choose_zero_q2_k(const float* x, const float* w, uint8_t* block, BlockGrid* g);
void choose_zero_q4_k(const float* x, const float* w, uint8_t* block, BlockGrid* g);
void choose_zero_q5_k(const float* x, const float* w, uint8_t* block, BlockGrid* g);

// The integer sub-block parameters of a K super-block (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), for
// searches that move one sub-block's scale (and min) at a time while the f16 super-scales
// stay fixed. Position e of sub-block j = e / len decodes code c to
//   value(sc[j], mn[j], c) = d * sc[j] * (c - level_bias) - dmin * mn[j],   c in [0, n_codes).
struct SubBlockParams {
  int n_sub = 0, len = 0, n_codes = 0, level_bias = 0;
  int sc_lo = 0, sc_hi = 0;  // integer scale range
  int mn_hi = 0;             // integer min range [0, mn_hi]; 0 for symmetric types
  float d = 0, dmin = 0;
  int sc[16] = {}, mn[16] = {};
};

// Reads the parameters of a block; false for types without integer sub-block parameters.
bool read_sub_params(DType t, const uint8_t* block, SubBlockParams* p);
// Writes p's sub-block scales (and mins) back; the super-scales and the codes are untouched.
void write_sub_params(DType t, const SubBlockParams& p, uint8_t* block);

}  // namespace lowbit::quant

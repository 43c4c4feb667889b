// The codebook ("i-quant") types, layouts in block_layouts.h. IqShape describes IQ3_S,
// IQ3_XXS, IQ2_S, IQ2_XS and IQ2_XXS by what differs between them, so that one quantizer
// (blocks_iq.cpp), one GPTQ rounder (algo/gptq_codebook.cpp) and the kernels' integer form
// serve all of them. Each splits a block of 256 into sub-blocks of `sub` values with a 4-bit
// scale code c, and into groups of `group` values that share one grid entry; value
// e = scale(d, c) * magnitude[level] * sign. Iq1Shape (below) does the same for IQ1_S, IQ1_M.
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"
#include "quant/iq_grids.h"

namespace lowbit::quant {

struct IqShape {
  DType type;
  IqGridId grid;
  int group;  // values per grid entry: 4 (IQ3_*) or 8 (IQ2_*)
  int sub;    // values per scale code: 32, or 16 (IQ2_S, IQ2_XS)
  // Of level l: 2l + 1 (IQ3_S); 4 (2l + 1) but 62 for l = 7 (IQ3_XXS); 8, 25, 43 (IQ2_*).
  uint8_t magnitude[8];
  // IQ3_XXS, IQ2_XS and IQ2_XXS store 7 sign bits per 8 values: the 8th makes the count of
  // negatives even.
  bool parity;

  int levels() const { return iq_grid(grid).radix; }  // per coordinate: 8 (IQ3_*) or 3 (IQ2_*)
  int top() const { return magnitude[levels() - 1]; }
  // The group scale of code c, computed as llama.cpp's decoder computes it.
  float scale(float d, int c) const;
  // The kernels' integer form: scale(d, c) = (d * int_d()) * (1 + 2c).
  float int_d() const { return scale(1.0f, 0); }
  // Fields of a block.
  float d(const uint8_t* blk) const;
  int code(const uint8_t* blk, int sub_block) const;
  int entry(const uint8_t* blk, int group_index) const;
  bool negative(const uint8_t* blk, int e) const;
  int signs(const uint8_t* blk, int k) const;  // bit j: value 8k + j is negative
  // Writes a whole block: f16 d, the 256 / sub codes, the 256 / group entries and the 256
  // signs (with parity, every 8 values must hold an even number of negatives).
  void pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
            uint8_t* blk) const;
};

// nullptr for the other types.
const IqShape* iq_shape(DType t);

// IQ1_S and IQ1_M: groups of 8 take an entry of the ternary grid IqGridId::Iq1s, whose levels
// l = 0, 1, 2 stand for -1, 0, +1 (signed: no sign bits); a group's values are shifted by a
// delta of +-1/8, value e = d (2c + 1) (l - 1 + delta), c the 3-bit code of e's sub-block.
// The kernels' integer form: value = (d / 8) (2c + 1) (8 (l - 1) + 8 delta).
struct Iq1Shape {
  DType type;
  int sub;    // values per scale code: 32 (IQ1_S) or 16 (IQ1_M)
  int delta;  // values per delta sign: 32 (IQ1_S) or 8 (IQ1_M)

  float d(const uint8_t* blk) const;
  int code(const uint8_t* blk, int sub_block) const;  // 0 .. 7
  int entry(const uint8_t* blk, int group_index) const;
  bool negative_delta(const uint8_t* blk, int delta_index) const;
  // Writes a whole block: f16 d, the 256 / sub codes, the 32 entries and 256 / delta signs.
  void pack(uint16_t d16, const int* codes, const int* entries, const bool* negative_delta,
            uint8_t* blk) const;
};
constexpr float kIq1Delta = 0.125f;
// The IQ1 value formula in two factors: value = iq1_scale(d, c) * iq1_level(l, negative_delta).
inline float iq1_scale(float d, int code) {
  return d * static_cast<float>(2 * code + 1);
}
inline float iq1_delta(bool negative) {
  return negative ? -kIq1Delta : kIq1Delta;
}
inline float iq1_level(int level, bool negative_delta) {
  return static_cast<float>(level - 1) + iq1_delta(negative_delta);
}

// nullptr for the other types.
const Iq1Shape* iq1_shape(DType t);

// Whole blocks of 256 values (blocks_iq.cpp, blocks_iq1.cpp); w = importance, null = uniform.
void quantize_iq(const IqShape& shape, const float* x, const float* w, uint8_t* blk);
void dequantize_iq(const IqShape& shape, const uint8_t* blk, float* y);
void quantize_iq1(const Iq1Shape& shape, const float* x, const float* w, uint8_t* blk);
void dequantize_iq1(const Iq1Shape& shape, const uint8_t* blk, float* y);

// Every codebook type, for the code that names each at compile time (codec table, kernel
// instances); is_codebook is the same list at run time.
#define LOWBIT_CODEBOOK_TYPES(X) X(IQ3_S) X(IQ3_XXS) X(IQ2_S) X(IQ2_XS) X(IQ2_XXS) X(IQ1_S) X(IQ1_M)
constexpr bool is_codebook(DType t) {
#define LOWBIT_IS(T) t == DType::T ||
  return LOWBIT_CODEBOOK_TYPES(LOWBIT_IS) false;
#undef LOWBIT_IS
}

}  // namespace lowbit::quant

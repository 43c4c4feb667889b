// The codebook ("i-quant") types IQ3_S, IQ3_XXS, IQ2_S, IQ2_XS and IQ2_XXS (layouts in
// block_layouts.h), described by what differs between them, so that one quantizer
// (blocks_iq.cpp), one GPTQ rounder (algo/gptq_codebook.cpp) and the kernels' integer form
// serve all of them. Each splits a block of 256 into sub-blocks of `sub` values with a 4-bit
// scale code c, and into groups of `group` values that share one grid entry; value
// e = scale(d, c) * magnitude[level] * sign.
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
  // The kernels' integer form: value = (d * int_d) * (1 + 2c) * (±magnitude).
  float int_d;

  int levels() const;  // levels per coordinate: 8 (IQ3_*) or 3 (IQ2_*)
  int top() const { return magnitude[levels() - 1]; }
  // The group scale of code c, computed as llama.cpp's decoder computes it.
  float scale(float d, int c) const;
  // Fields of a block.
  float d(const uint8_t* blk) const;
  int code(const uint8_t* blk, int sub_block) const;
  int entry(const uint8_t* blk, int group_index) const;
  bool negative(const uint8_t* blk, int e) const;
  // Writes a whole block: f16 d, the 256 / sub codes, the 256 / group entries and the 256
  // signs (with parity, every 8 values must hold an even number of negatives).
  void pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
            uint8_t* blk) const;
};

// nullptr for the other types.
const IqShape* iq_shape(DType t);

}  // namespace lowbit::quant

// The two 3-bit codebook types, IQ3_S and IQ3_XXS (layouts in block_layouts.h), described
// by what differs between them, so that one quantizer (blocks_iq3.cpp), one GPTQ rounder
// (algo/gptq_codebook.cpp) and the kernels' integer form serve both. Both split a block of
// 256 into 8 sub-blocks of 32 with a 4-bit scale code c and groups of 4 values that share
// one grid entry; value e = scale(d, c) * magnitude[level] * sign.
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"
#include "quant/iq_grids.h"

namespace lowbit::quant {

struct Iq3Shape {
  DType type;
  IqGridId grid;
  uint8_t magnitude[8];  // of level l: 2l + 1 (IQ3_S); 4 (2l + 1) but 62 for l = 7 (IQ3_XXS)
  // IQ3_XXS stores 7 sign bits per 8 values: the 8th makes the count of negatives even.
  bool parity;
  // The kernels' integer form: value = (d * int_d) * (1 + 2c) * (±magnitude).
  float int_d;

  // The group scale of code c, computed as llama.cpp's decoder computes it.
  float scale(float d, int c) const;
  // Fields of a block.
  float d(const uint8_t* blk) const;
  int code(const uint8_t* blk, int sub) const;
  int entry(const uint8_t* blk, int group) const;
  bool negative(const uint8_t* blk, int e) const;
  // Writes a whole block: f16 d, the 8 codes, the 64 entries and the 256 signs (with parity,
  // every 8 values must hold an even number of negatives).
  void pack(uint16_t d16, const int* codes, const int* entries, const bool* negative,
            uint8_t* blk) const;
};

// nullptr for the other types.
const Iq3Shape* iq3_shape(DType t);

}  // namespace lowbit::quant

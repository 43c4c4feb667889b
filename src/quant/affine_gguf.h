// The GGUF block types that hold an integer checkpoint's grid exactly, and the encoding of
// its codes into them (docs/FORMATS.md). A 32-value block can take a group's codes as they
// are when the group's scale s and zero z are the block's:
//   symmetric codes (z = 2^(bits-1) everywhere): 4 bits -> Q4_0 (d = s), 5 -> Q5_0, 8 -> Q8_0;
//   any z: 4 bits -> Q4_1, 5 -> Q5_1 (d = s, m = -s*z rounded to f16: exact when it fits).
// Groups must cover whole blocks: group % 32 == 0, or one group per row or tensor with
// cols % 32 == 0. The scales of lowbit's, GPTQ's and AWQ's layouts are f16 already, so
// d = s exactly; F32 or BF16 scales (compressed-tensors) are rounded to f16.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "lowbit/affine.h"
#include "lowbit/tensor.h"

namespace lowbit::quant {

// The type that keeps w's codes, or nullopt when none does.
std::optional<DType> gguf_type_holding(const AffineWeight& w);
// w's rows (in w's order) as blocks of `type` = gguf_type_holding(w).
std::vector<uint8_t> encode_affine_blocks(const AffineWeight& w, DType type);
// The type a grid no GGUF type holds is rounded onto: the K type of as many bits
// (2 -> Q2_K, 3 -> Q3_K, 4 -> Q4_K, 5 -> Q5_K, 6 and 7 -> Q6_K, 8 -> Q8_0).
DType gguf_type_for_requantizing(const AffineWeight& w);

}  // namespace lowbit::quant

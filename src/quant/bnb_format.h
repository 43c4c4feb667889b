// bitsandbytes checkpoints as transformers saves them (quant_method "bitsandbytes"; there is
// no written specification: this follows bitsandbytes' QuantState.as_dict/from_dict and
// its reference kernels). For a linear P with weight [rows, cols], n = rows * cols:
//
//   4-bit (nf4, fp4)  P.weight U8 [ceil(n/2), 1]: the weight flattened row-major, element
//                     2k in the high nibble of byte k, 2k + 1 in the low one;
//                     P.weight.absmax F32 [blocks] (max |w| of each run of `blocksize`
//                     flattened elements), or U8 with double quantization:
//                     absmax = nested_quant_map[u8] * nested_absmax[b / nested_blocksize]
//                     + nested_offset; P.weight.quant_map F32 [16] (the code table);
//                     P.weight.quant_state.bitsandbytes__nf4|fp4 U8: a JSON object with
//                     quant_type, blocksize, dtype, shape [rows, cols] and nested_*;
//                     w = quant_map[code] * absmax[flat index / blocksize].
//   8-bit (LLM.int8)  P.weight I8 [rows, cols], P.SCB F32 [rows] (each row's max |w|),
//                     optional P.weight_format U8 (0 = row-major, the only one read);
//                     w = q * SCB[row] / 127.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/tensor.h"

namespace lowbit::quant {

// The linear a bitsandbytes tensor belongs to ("P" for "P.weight.absmax", "P.SCB", ...),
// or "" when the name is not one of its parts.
std::string bnb_linear_of(const std::string& tensor_name);
// The f32 weight [rows, cols] of linear `base` from its parts; `source` names the file in
// errors, which also name the tensor or JSON key.
std::vector<float> dequantize_bnb_linear(const std::string& base,
                                         const std::vector<const TensorView*>& parts,
                                         const std::string& source, uint64_t* rows, uint64_t* cols);

}  // namespace lowbit::quant

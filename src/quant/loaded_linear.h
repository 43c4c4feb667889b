// How the loaders of integer checkpoints (lowbit's layout, GPTQ, AWQ, compressed-tensors,
// bitsandbytes) hand a linear to the Model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/affine.h"

namespace lowbit::quant {

// Adds the f32 weight [rows, cols] of linear `hf_base` (its Hugging Face name without
// ".weight") under its GGUF name, and its grid when one is given; returns the GGUF name.
// Throws Format naming m.source when hf_base is not a weight of the model.
std::string add_loaded_linear(Model& m, const std::string& hf_base, uint64_t rows, uint64_t cols,
                              std::vector<float> w, std::shared_ptr<const AffineWeight> grid);
// W8A8: the int8 codes (code - zero) and row scales the engine multiplies, from an 8-bit grid
// with one group per row.
Int8Weight int8_weight_of(const AffineWeight& w);
// A static activation scale: positive, else Format naming `linear` of checkpoint `source`.
float positive_input_scale(std::optional<float> s, const std::string& source,
                           const std::string& linear);

}  // namespace lowbit::quant

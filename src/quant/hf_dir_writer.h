// Pieces shared by the writers of quantized Hugging Face directories (the affine int
// layouts, FP8): the tensors they keep unquantized and the directory around
// model.safetensors.
#pragma once

#include <functional>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lowbit/model.h"
#include "lowbit/quantize.h"

namespace lowbit::quant {

// Whether a writer quantizes `t`: the decoder layers' matrices (GGUF name "blk.*").
bool is_layer_matrix(const TensorView& t);
// `src` kept as it is: F32 when 1-D, else F16 (its rounding error goes into `rep`, which
// also gets the type and size); `done` runs once its bytes are made.
OutputTensor plain_output(const Model& m, const TensorView& src, TensorReport& rep,
                          std::function<void()> done);
// Writes out_dir (built beside it and renamed when complete): model.safetensors with `out`
// and `st_meta`, m's config.json with `quantization_config` (and torch_dtype when given),
// `extra` files (name -> text), and m's tokenizer and generation files copied unchanged.
// m must be a Hugging Face directory.
void write_hf_dir(const Model& m, const std::string& out_dir, const std::vector<OutputTensor>& out,
                  const std::map<std::string, std::string>& st_meta,
                  const nlohmann::json& quantization_config, const std::string& torch_dtype,
                  const std::map<std::string, std::string>& extra = {});

}  // namespace lowbit::quant

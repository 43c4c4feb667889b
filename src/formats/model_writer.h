// Pieces of the GGUF model writer shared by `convert` (plain floats) and `quantize`.
#pragma once

#include <vector>

#include "lowbit/gguf.h"
#include "lowbit/model.h"

namespace lowbit {

// Hyperparameters, vocabulary and general.* keys of `m` with llama.cpp's file_type number.
void set_model_metadata(const Model& m, GgufWriter& w, uint32_t file_type);
// Adds rope_freqs.weight (llama3 frequency factors) when the model has them.
void add_rope_freqs(const Model& m, GgufWriter& w);
// The q/k row layout llama.cpp expects for the model's architecture.
RopeLayout gguf_rope_layout(const ModelConfig& c);
// A q or k projection (weight or bias): its rows depend on the RoPE layout.
bool is_q_or_k(const std::string& gguf_name);
// Tensor `t` as f32, its q/k rows moved to `target` layout when needed.
std::vector<float> load_rows(const Model& m, const TensorView& t, RopeLayout target);

}  // namespace lowbit

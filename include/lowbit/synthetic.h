// Models with random weights and realistic shapes, for tests (a GGUF that carries a real
// vocabulary) and for speed measurements where the weights must not fit in cache.
#pragma once

#include <string>

#include "lowbit/model.h"

namespace lowbit {

// Weights ~ N(0, weight_std²) (norm weights 1 + 0.1·N, biases 0.5·weight_std·N), stored as
// `dtype` (F32/F16/BF16).
// The model owns its buffers. `vocab` is padded to config.n_vocab.
Model make_synthetic_model(ModelConfig config, Vocab vocab, uint64_t seed, DType dtype = DType::F32,
                           float weight_std = 0.02f);

// Named shapes: "llama-1b" (hidden 2048, 16 layers, FFN 8192, 32 heads / 8 KV heads of 64,
// vocab 128256, tied embeddings: the 1.24 B weights of Llama-3.2-1B) and "llama-8m" (a small
// one for tests). Throws Argument naming the shapes otherwise.
ModelConfig synthetic_shape(const std::string& name);

// A synthetic model whose matrices are in the types of `type_or_preset` (a preset such as
// Q4_K_M, or a type such as Q8_0 / F16 used everywhere), built fast enough for a 1B model:
// each matrix repeats a pool of 64 distinct random rows quantized once. Every byte still sits
// in its own memory, so generation reads as many bytes as a real model of that size.
Model make_synthetic_quantized(ModelConfig config, const std::string& type_or_preset,
                               uint64_t seed);

}  // namespace lowbit

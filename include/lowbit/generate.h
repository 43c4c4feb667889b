// Sampling and text generation on top of the Engine.
#pragma once

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "lowbit/engine.h"

namespace lowbit {

struct SamplerParams {
  float temperature = 0.8f;  // 0: greedy (argmax)
  int top_k = 40;            // 0: no limit
  float top_p = 0.95f;       // 1: no limit
  uint64_t seed = 0;
};

// Picks the next token from logits [n_vocab]. Ties in greedy mode go to the lowest id.
int32_t sample_token(const float* logits, size_t n_vocab, const SamplerParams& p,
                     std::mt19937_64& rng);

struct GenerateOptions {
  size_t n_predict = 128;
  SamplerParams sampler;
  bool stop_at_eos = true;
};

// The context an engine needs for a prompt of `n_prompt` tokens and n_predict more (the
// KV cache is sized by it), at most the model's.
uint32_t generation_context(const Model& m, size_t n_prompt, size_t n_predict);

// Evaluates `prompt` (batched), then samples up to n_predict tokens one at a time,
// calling on_token with each new id. Returns the generated ids.
std::vector<int32_t> generate(Engine& engine, const std::vector<int32_t>& prompt,
                              const GenerateOptions& opts,
                              const std::function<void(int32_t)>& on_token = {});

}  // namespace lowbit

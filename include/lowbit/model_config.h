// Hyperparameters of a Llama-family decoder, whatever file they came from.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

// How the two halves of each rotary pair are laid out inside a head.
//   Halves:      pairs (i, i + d/2) — Hugging Face "rotate_half" (NeoX style).
//   Interleaved: pairs (2i, 2i + 1) — original Meta/llama2.c layout, and what llama.cpp
//                expects in GGUF files of architecture "llama" (the HF converter permutes
//                the rows of q_proj/k_proj to get it).
enum class RopeLayout { Halves, Interleaved };

struct RopeScaling {
  enum class Type { None, Linear, Llama3 } type = Type::None;
  float factor = 1.0f;
  float low_freq_factor = 1.0f;   // llama3
  float high_freq_factor = 4.0f;  // llama3
  uint32_t original_context = 8192;
};

struct ModelConfig {
  std::string arch = "llama";  // GGUF architecture name: llama, qwen2, qwen3
  std::string name;
  uint32_t n_vocab = 0, n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, n_ff = 0;
  uint32_t head_dim = 0;  // usually n_embd / n_head; Qwen3 sets it explicitly
  uint32_t n_ctx = 2048;
  float norm_eps = 1e-5f;
  float rope_theta = 10000.0f;
  RopeScaling rope_scaling;
  bool attn_bias = false;       // q/k/v projections have a bias (Qwen2)
  bool qk_norm = false;         // RMSNorm on q and k per head (Qwen3)
  bool tied_embeddings = false; // output head shares token_embd.weight
  // lowbit only: ffn_down reads its input after the orthonormal Hadamard transform of n_ff
  // values (an online rotation, lowbit/rotation.h); GGUF key lowbit.rotation.ffn_down.
  bool ffn_down_hadamard = false;
  // lowbit only: static activation ranges, [n_layer × kActRangeSites] max |x| of each block's
  // linear inputs as QAT's moving average tracked them (ActivationRounding::static_ranges);
  // empty: none. GGUF key kActRangesKey.
  std::vector<float> act_ranges;
  // lowbit only: the largest rank of the block linears' low-rank branches (lowbit/lowrank.h);
  // 0: none. GGUF key lowbit.lowrank.rank.
  uint32_t lowrank_rank = 0;
  int32_t bos_id = 1, eos_id = 2;

  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }
  // Throws Format when counts are zero or do not divide (e.g. n_head % n_head_kv).
  void validate(const std::string& source) const;
};

// The inputs of a block's linears that act_ranges holds, in this order: attn_q/k/v's (the
// attention norm's output), attn_output's, ffn_gate/up's (the FFN norm's output), ffn_down's.
inline constexpr int kActRangeSites = 4;
inline constexpr const char* kActRangesKey = "lowbit.activation_ranges";
// The site of linear i in the order q, k, v, output, gate, up, down (train's kLinearNames).
inline int act_range_site(int linear) {
  constexpr int sites[7] = {0, 0, 0, 1, 2, 2, 3};
  return sites[linear];
}

// Reads a Hugging Face config.json (llama, mistral, qwen2, qwen3).
ModelConfig read_hf_config(const std::string& path);
ModelConfig parse_hf_config(const std::string& json_text, const std::string& source);

// The generation defaults HF keeps in generation_config.json (all optional).
struct GenerationConfig {
  int32_t bos_id = -1, eos_id = -1;
  float temperature = -1, top_p = -1;
  int32_t top_k = -1;
};
GenerationConfig read_generation_config(const std::string& path);

// The model's RoPE inverse frequencies for one head (head_dim / 2 values), with
// linear or llama3 scaling applied.
std::vector<float> rope_inv_freq(const ModelConfig& c);

}  // namespace lowbit

// Which linear layers of a block read the same input, and what produces that input: the one
// description of the Llama-family block that AWQ, SmoothQuant and the calibration hooks
// and rotations read. All supported architectures (llama, mistral, qwen2, qwen3)
// share it.
//
//   attn_q, attn_k, attn_v  <- attn_norm   (RMSNorm weight: scale its entries)
//   attn_output             <- attn_v rows (per KV head: heads sharing a KV head share scales)
//   ffn_gate, ffn_up        <- ffn_norm    (RMSNorm weight)
//   ffn_down                <- ffn_up rows (SwiGLU is linear in up)
// The output head reads the final norm (output_norm).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/model_config.h"

namespace lowbit {

enum class InputSource {
  Norm,        // an RMSNorm weight
  Rows,        // the rows of a linear whose output is the input, one per input channel
  KvHeadRows,  // attn_v's rows under grouped-query attention: one per KV-head dimension
};

struct InputGroup {
  // the linears reading this input (GGUF names), first = the group's key
  std::vector<std::string> weights;
  InputSource source;
  std::string producer;       // the norm weight or the linear whose rows produce the input
  std::string producer_bias;  // its bias, when the architecture has one ("" otherwise)
};

// The groups of block `layer`, in the order above.
std::vector<InputGroup> block_input_groups(const ModelConfig& c, uint32_t layer);

// The linears of block `layer` whose outputs are added to the residual stream (attn_output,
// ffn_down). The stream is read only through the norm groups above (and the output head).
std::vector<std::string> block_residual_writers(uint32_t layer);

// Whether `weight` is one of the linears above ("blk.N.<role>.weight"): what pruning touches
// (not the embedding nor the output head).
bool is_block_linear(const std::string& weight);
// N of a block linear "blk.N.<role>.weight", -1 for any other name.
int block_of(const std::string& weight);

// The key (first weight) of the group that `weight` belongs to; `weight` itself when it is in
// no group (the output head). Linears with the same key see the same input.
std::string input_group_key(const std::string& weight);

}  // namespace lowbit

// Structured pruning: whole FFN channels and whole KV groups (a KV head and the query heads
// that read it) are removed from every block, which leaves a smaller dense model that every
// runtime loads (n_ff, n_head and n_head_kv change; llama.cpp reads them from the GGUF).
//
// Each block keeps its most important channels and groups, the same number in every block:
//   FFN channel k:  mean(h_k²) · ‖ffn_down[:, k]‖²   h = ffn_down's input (SwiGLU output)
//   KV group g:     Σ over its heads' columns c of mean(a_c²) · ‖attn_output[:, c]‖²,
//                   a = attn_output's input (the heads' attention outputs)
// i.e. the output energy each one adds to the residual stream on the calibration text. Without
// statistics mean(h_k²) becomes ‖ffn_gate[k]‖·‖ffn_up[k]‖ and mean(a_c²) the squared norm of the
// attn_v row that produces column c.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

struct StructuredPruneOptions {
  double ffn_share = 0;    // share of each block's FFN channels removed, in [0, 1)
  uint32_t kv_groups = 0;  // KV groups removed from each block (fewer than n_head_kv)

  bool active() const { return ffn_share > 0 || kv_groups > 0; }
};

// Channels kept of n_ff after removing `share`: a multiple of 32 (the legacy block size) when
// n_ff is one, at least one unit.
uint32_t kept_ffn_channels(uint32_t n_ff, double share);

// "ffn 768->576 kv_heads 4->3" for `m`'s shapes: what lowbit.quantize.structured records.
std::string structured_label(const ModelConfig& c, const StructuredPruneOptions& o);

// Throws Argument for a share outside [0, 1) (what can be checked before a model is read).
void validate(const StructuredPruneOptions& o);
// Throws Argument naming the bad option (or the model that cannot take it: online rotation of
// ffn_down, W8A8 checkpoints).
void validate(const StructuredPruneOptions& o, const Model& m);

// importance(weight name): mean x² of that weight's input per column, or null (no statistics).
using InputImportance = std::function<const std::vector<float>*(const std::string& name)>;

// `m` with the least important channels and groups of every block removed (the pruned
// tensors in f32; the rest shared with `m`).
Model prune_structured(const Model& m, const StructuredPruneOptions& o,
                       const InputImportance& importance);

}  // namespace lowbit

// Sequential GPTQ: the model is quantized one transformer block at a time, and each block's
// Hessians come from the inputs the *already quantized* blocks produce, so every block
// corrects for what the earlier ones lost (the "sequential" scheme of GPTQ).
//
// Activations of the calibration windows are kept at the current block's input, [windows,
// n_ctx, n_embd] floats (twice with fp targets), plus one block's statistics; the rest of
// the model stays where it is (mapped). For each block:
//   1. run it in fp32 on the quantized-path inputs X̃, accumulating H = X̃ᵀX̃ per linear input
//      (and, with fp targets, C = XᵀX̃ against the inputs X of the unquantized model);
//   2. quantize its linears with GPTQ onto their planned types;
//   3. run it again with the quantized weights to produce the next block's X̃.
// With AWQ each group of linears sharing an input is first rescaled (lowbit/awq.h).
// With fp targets each linear minimises ||X Wᵀ - X̃ Qᵀ|| (it matches the unquantized model's
// output from the inputs it will really see): GPTQ runs on W' = W C H⁻¹ with H (the
// asymmetric calibration of GPTAQ, Li et al. 2025).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/awq.h"
#include "lowbit/calibration.h"
#include "lowbit/dtype.h"
#include "lowbit/gptq.h"
#include "lowbit/learned.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"

namespace lowbit {

// What AWQ's α minimises: the whole block's output error on a few calibration windows
// (run in fp32 with the group rounded; the objective of the AWQ paper), or the cheaper
// per-linear output error tr(ΔHΔᵀ) from the Hessians.
enum class AwqObjective { Block, Layer };

struct SequentialOptions {
  CalibrationOptions calib;  // windows, their length, seed, threads (0: all cores)
  // The quantized path's forward passes on the fast kernels (lowbit/kernels.h): a finished
  // block's quantized linears multiply 8-bit activations (packed int8 panels on AVX-512
  // VNNI), float ones go through BLAS as in the reference. false: the fp32 reference
  // (weights dequantized, BLAS) for every pass. The unquantized reference is always fp32.
  bool fast_kernels = true;
  GptqOptions gptq;
  bool gptq_rounding = true;  // GPTQ; false = round to nearest (e.g. AWQ alone)
  // GPTQ: match the unquantized model's outputs (GPTAQ), not the quantized path's own
  bool fp_targets = false;
  // AWQ scales per group of linears sharing an input (lowbit/awq.h), before rounding
  bool awq = false;
  int awq_grid = 20;          // α tried at 0, 1/grid, ..., 1
  AwqObjective awq_objective = AwqObjective::Block;
  int awq_windows = 4;        // Block: calibration windows the block output is scored on
  bool awq_clip = false;      // AWQ rounded to nearest: choose clipping per block by output error
                              // (awq_clip_quantize_rows, lowbit/awq.h)
  AwqClipOptions awq_clip_options;
  int awq_sub_passes = 4;  // AWQ rounded to nearest, K types: passes of the sub-block scale search
                           // (awq_refine_sub_scales); 0: off
  // Learned rounding (lowbit/learned.h) of every block after its start rounding (GPTQ, or to
  // nearest without gptq_rounding), against the unquantized block's outputs. Not with AWQ.
  std::optional<LearnedOptions> learn;
  // Pruning of the blocks' linears with GPTQ (prepare_pruning, lowbit/gptq.h); wanda's norms
  // are those of the inputs the pruned blocks before produce. Linears planned as F16, BF16 or
  // F32 are then pruned too (GPTQ onto the float grid: SparseGPT without quantization).
  SparsityPattern sparsity;
  PruneMethod prune = PruneMethod::SparseGpt;
  std::function<void(uint32_t layer, int step, int steps, double loss)> on_learn_step;
  std::function<void(uint32_t layer, uint32_t n_layers, double seconds)> on_layer;
  // When set, each tensor is handed over as soon as its block is done (the embedding after
  // the first activations, each block after its quantized forward, the head at the end) and
  // not kept in SequentialResult::tensors: a streaming writer puts it in the file at once.
  std::function<void(const std::string& name, const PrecomputedTensor& t)> on_done;
  // Checkpoints: when not empty, the finished tensors and the next block's inputs are stored
  // in this directory after every block; with `resume`, a run continues after the last block
  // stored there (the same bytes as an uninterrupted run). A checkpoint belongs to the job
  // described by `fingerprint` (with the tokens and types); another job's is an error.
  std::string checkpoint_dir;
  bool resume = false;
  std::string fingerprint;
};

struct SequentialResult {
  // Quantized weights (rows in the model's layout) with their errors; with AWQ also the
  // rescaled RMSNorm weights (F32 bytes). Empty when SequentialOptions::on_done takes them.
  std::map<std::string, PrecomputedTensor> tensors;
  std::map<std::string, double> awq_alpha;  // AWQ: α chosen per group, keyed by its first weight
  // AWQ: max/min of mean|x_j| at each group's input (same keys); near 1 means no outlier
  // channels, so little for AWQ to protect.
  std::map<std::string, double> awq_input_spread;
  std::vector<BlockLearnReport> learned;               // learned rounding: each block's loss
  uint64_t activation_bytes = 0;                       // the activations kept between blocks
  std::vector<double> layer_seconds;
};

// types: the planned type of every weight to quantize (GGUF names); the embedding and the
// output head are included when they are in `types` (the embedding by rounding, the head
// by GPTQ on the final hidden states). Weights of a non-block type are left to the caller.
SequentialResult quantize_sequential(const Model& m, const std::vector<int32_t>& tokens,
                                     const std::map<std::string, DType>& types,
                                     const SequentialOptions& o);

}  // namespace lowbit

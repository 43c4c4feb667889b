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
// With fp targets each linear minimises ||X Wᵀ - X̃ Qᵀ|| (it matches the unquantized model's
// output from the inputs it will really see): GPTQ runs on W' = W C H⁻¹ with H (the
// asymmetric calibration of GPTAQ, Li et al. 2025).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lowbit/calibration.h"
#include "lowbit/dtype.h"
#include "lowbit/gptq.h"
#include "lowbit/model.h"

namespace lowbit {

struct SequentialOptions {
  CalibrationOptions calib;  // windows, their length, seed, threads (0: all cores)
  GptqOptions gptq;
  bool fp_targets = false;   // match the unquantized model's outputs (GPTAQ), not the quantized path's own
  std::function<void(uint32_t layer, uint32_t n_layers, double seconds)> on_layer;
};

struct SequentialResult {
  std::map<std::string, std::vector<uint8_t>> bytes;   // quantized weight, rows in the model's layout
  std::map<std::string, std::vector<double>> hessian;  // H used for each weight (for reports)
  uint64_t activation_bytes = 0;                       // the activations kept between blocks
  std::vector<double> layer_seconds;
};

// types: the planned type of every weight to quantize (GGUF names); the embedding and the
// output head are included when they are in `types` (the embedding by rounding, the head
// by GPTQ on the final hidden states). Weights of a non-block type are left to the caller.
SequentialResult quantize_sequential(const Model& m, const std::vector<int32_t>& tokens,
                                     const std::map<std::string, DType>& types, const SequentialOptions& o);

}  // namespace lowbit

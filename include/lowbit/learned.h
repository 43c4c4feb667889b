// Learned rounding: the rounding of a transformer block's linears trained against the block's
// output, by gradient descent through the block (lowbit/block_grad.h). Run inside the
// sequential driver (lowbit/sequential.h): each block learns on the inputs the quantized
// blocks before it produce, against what the unquantized block outputs on the unquantized
// inputs, starting from the driver's own rounding (GPTQ or round to nearest).
//   AdaRound  (Nagel et al. 2020): each weight's code is floor or ceil of its start position,
//             relaxed to floor + h(V) with a rectified sigmoid h; Adam on V with a
//             regulariser that pushes h to 0 or 1 (its exponent β annealed 20 → 2).
//   AdaQuant  (Hubara et al. 2021): the weights themselves are trained (Adam) through the
//             type's own quantizer (straight-through estimator); the block parameters follow
//             the weights, so scales and mins are learned too.
//   AutoRound (Cheng et al. 2023): an offset v in [-0.5, 0.5] per weight added to its start
//             position before rounding; signed gradient descent, the best step kept.
// AdaRound and AutoRound keep the start's block parameters (scales, sub-block scales, mins)
// and change codes only, so they need a grid per value: the codebook types (IQ3_*, IQ2_*,
// IQ1_*: groups of values share one grid entry) are AdaQuant's alone. Training reads each grid
// point as scale · level + offset, which can differ from the decoder's own arithmetic by a few
// ulps; the reported losses are computed from the decoded bytes, which the file stores.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/block_grad.h"
#include "lowbit/dtype.h"

namespace lowbit {

enum class LearnedMethod { AdaRound, AdaQuant, AutoRound };

struct LearnedOptions {
  LearnedMethod method = LearnedMethod::AutoRound;
  int steps = 0;      // optimiser steps per block; 0: the method's default
  double lr = 0;      // 0: the method's default
  int batch = 0;      // calibration windows per step; 0: the default
  double reg = 0.01;  // AdaRound: regulariser weight, relative to the block's start loss
  uint64_t seed = 1;  // order of the windows
  // Each block learns on the unquantized model's inputs to it instead of those the quantized
  // blocks before it produce (the targets stay the unquantized block's outputs): ZeroQuant's
  // layer-by-layer distillation (LKD) with adaquant. Read by the sequential driver.
  bool teacher_inputs = false;
};
// The defaults (measured on tinyllm-8m, docs/QUANTIZATION.md) filled in.
LearnedOptions resolved(const LearnedOptions& o);
const char* learned_method_name(LearnedMethod m);  // "adaround", "adaquant", "autoround"

// One linear of the block to learn. `bytes` holds the start rounding (replaced by the
// result); `position` the values the start rounded (the weights, or what GPTQ's sweep met),
// which place each weight between its grid's neighbours; `importance` per input column
// (AdaQuant's re-quantization).
struct LearnedLinear {
  int index = 0;  // into BlockWeights::linear (kLinearNames)
  DType type = DType::F32;
  uint64_t rows = 0, cols = 0;
  std::vector<uint8_t> bytes;
  std::vector<float> position, importance;
};

struct BlockLearnReport {
  uint32_t layer = 0;                   // the block (set by the sequential driver)
  double loss_start = 0, loss_end = 0;  // mean squared error of the block output, every window
  double loss_learned = 0;  // ... of the learned rounding (= loss_end unless kept_start)
  int steps = 0;
  bool kept_start = false;  // the learned rounding was no better on the windows: start kept
};

// Trains the rounding of `linears` (the others, and the norms, stay as in `block`). inputs
// and targets: windows of n_ctx tokens, [n_ctx, n_embd] each. `label` names the block in
// errors (a non-finite loss). on_step(step, steps, loss) follows the progress.
BlockLearnReport learn_block_rounding(const train::BlockShape& shape,
                                      train::BlockWeights<float> block,
                                      std::vector<LearnedLinear>& linears,
                                      const std::vector<std::vector<float>>& inputs,
                                      const std::vector<std::vector<float>>& targets, size_t n_ctx,
                                      const LearnedOptions& options, const std::string& label,
                                      int n_threads,
                                      const std::function<void(int, int, double)>& on_step = {});

}  // namespace lowbit

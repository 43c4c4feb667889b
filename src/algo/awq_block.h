// AWQ scored by the block's output (the objective of Lin et al.): for each group of linears
// sharing an input, α is chosen on a grid so that the whole transformer block, run in fp32
// with the group's weights scaled and rounded, reproduces the unquantized block's output on
// calibration windows as closely as possible. Groups are decided in order (q/k/v, gate/up,
// down) and each decided group stays rounded while the next is searched, so later groups
// see the error of earlier ones. The per-linear objective of lowbit/awq.h cannot see that
// q/k errors act through softmax or that gate/up errors pass through SiLU(gate)·up.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lowbit/awq.h"
#include "lowbit/engine.h"
#include "lowbit/model.h"
#include "lowbit/topology.h"

namespace lowbit {

class AwqBlockSearch {
 public:
  // inputs: the block's inputs on the calibration windows, [n_tokens, n_embd] each; targets:
  // the unquantized block's outputs on the first targets.size() of them, the scoring windows. The
  // engine is the quantized path: weights and norms are replaced in it while scoring, and the
  // chosen ones stay.
  AwqBlockSearch(Engine& engine, const Model& m, uint32_t layer,
                 const std::vector<std::vector<float>>& inputs,
                 const std::vector<std::vector<float>>& targets, size_t n_tokens, int n_threads);

  // w: f32 working copies of the block's weights (group members and producer), types: their
  // planned types. Tries α = 0, 1/grid, ..., 1 with s = mean|x|^α; leaves the winner's rounded
  // weights and rescaled norm in the engine and returns it (error_plain: the block error at
  // α = 0; error_scaled: the winner's). w is not modified: the caller folds the scales.
  AwqScales search(const InputGroup& g, const std::map<std::string, std::vector<float>>& w,
                   const std::map<std::string, DType>& types, const std::vector<double>& mean_abs,
                   int grid);

 private:
  using Bytes = std::map<std::string, std::vector<uint8_t>>;
  // Rounds the group under scales s into `out` and points the engine at it.
  void install(const InputGroup& g, const std::map<std::string, std::vector<float>>& w,
               const std::map<std::string, DType>& types, const std::vector<float>& s, Bytes& out);
  double block_error();  // Σ‖block(x) − target‖² over the scoring windows

  Engine& engine_;
  const Model& model_;
  uint32_t layer_;
  const std::vector<std::vector<float>>& inputs_;
  const std::vector<std::vector<float>>& targets_;
  size_t n_tokens_;
  int n_threads_;
  std::map<std::string, TensorView> views_;  // what the engine reads (node addresses are stable)
  Bytes kept_;                               // the decided groups' rounded weights
};

}  // namespace lowbit

// GPTQ (Frantar et al. 2023): columns are rounded one at a time, in order of decreasing
// Hessian diagonal (act-order) or left to right, and each column's rounding error is spread
// over the columns not yet rounded, weighted by the inverse Hessian, so that ||(W - Q) Xᵀ||
// (not ||W - Q||) is minimised. Two targets share the sweep:
//   - the generic affine layout (affine.h): scale/zero per group of columns;
//   - the GGUF block types: each block's parameters (f16 scales, sub-block scales and mins)
//     are chosen when the sweep reaches the block's first column (or all up front with
//     act-order: "static groups"), then every column is rounded onto that block's grid.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/sparsity.h"

namespace lowbit {

struct AffineSpec;  // lowbit/affine.h (which includes quantize.h, which includes this)
struct AffineTensor;

// Measured on tinyllm-8m: left to right with damping 0.1 for the GGUF block types;
// act-order with static groups and damping 0.01 for the affine layout.
inline constexpr double kGptqGgufDamp = 0.1, kGptqAffineDamp = 0.01;
inline constexpr bool kGptqGgufActOrder = false, kGptqAffineActOrder = true;

struct GptqOptions {
  double damp = 0.01;  // added to the diagonal: damp * mean(diag(H)); raised x10 if Cholesky fails
  // with groups or blocks, implies static groups (parameters from the original W)
  bool act_order = true;
  int n_threads = 0;  // rows are swept in parallel; 0 = all cores
  // columns per lazy update (the trailing columns are updated by one GEMM per batch)
  uint64_t batch = 128;
  // Pruning in the same sweep (lowbit/sparsity.h): SparseGPT chooses `prune`'s zeros at each
  // batch (unstructured, per tile of rows x batch columns) or each group of M columns (N:M;
  // act-order is then off); `mask` ([rows, cols], 1 = pruned; read during the call) is a mask
  // chosen before (magnitude, wanda). A pruned weight is rounded as 0 and its error spread like
  // any other; it stays exactly 0 on every grid but IQ4_NL/IQ4_XS's (the types with a min
  // are given grids that hold 0). The codebook types (IQ3_*, IQ2_*) have no 0 and refuse
  // pruning.
  SparsityPattern prune;
  const uint8_t* mask = nullptr;
};

// W: [rows, cols] row-major. H: [cols, cols] symmetric, the proxy X^T X / n of the inputs.
// Returns the quantized tensor; `dequantized` (optional) receives Q as f32 [rows, cols].
AffineTensor gptq_quantize_affine(const float* w, uint64_t rows, uint64_t cols,
                                  const std::vector<double>& H, const AffineSpec& spec,
                                  const GptqOptions& o, std::vector<float>* dequantized = nullptr);

// GGUF block types (and F16, BF16, F32: GPTQ onto the float grid, for pruning without
// quantization): writes rows x (cols / block_size) blocks of `type` to `out`, the layout of
// quantize_rows. `importance` (cols values, or null) weights the choice of block parameters;
// null uses diag(H). Throws Argument when cols is not a multiple of the block size.
// H is taken by value: move it in when it is not needed afterwards (it is cols² doubles).
// pre_round (optional, rows x cols) receives each value as the sweep rounded it: the weight
// plus the errors propagated to it (where learned rounding places it between grid points).
void gptq_quantize_rows(DType type, const float* w, uint64_t rows, uint64_t cols,
                        std::vector<double> H, const float* importance, const GptqOptions& o,
                        uint8_t* out, float* pre_round = nullptr);

// Prepares pruning linear `name` (w: [rows, cols]): sparsegpt sets o.prune (H is then
// required) and returns no mask; magnitude and wanda return their mask, for o.mask or to zero
// before rounding to nearest. Wanda's norms are norms2 (cols values Σx², e.g. an importance
// vector) or else diag(H). Throws Argument naming the tensor when what a rule needs is missing.
std::vector<uint8_t> prepare_pruning(const std::string& name, PruneMethod method,
                                     const SparsityPattern& p, const std::vector<float>& w,
                                     uint64_t rows, uint64_t cols, const float* norms2,
                                     const std::vector<double>* H, GptqOptions& o);

}  // namespace lowbit

// Low-rank branches (SVDQuant): a block linear W [out, in] becomes W = B·A + R with
// A [r, in] and B [out, r] kept in 16 bits and only the residual R quantized. The engine
// computes y = R·x + B·(A·x), the branch on the linear's input before any activation
// rounding, so a few large directions of W (outlier rows and columns) leave the residual
// that 4-bit rounding sees.
//
// In a model the factors are tensors beside the weight: blk.N.<role>.lowrank_a [r, in] and
// blk.N.<role>.lowrank_b [out, r] (F32, F16 or BF16), with ModelConfig::lowrank_rank ≥ every
// r. GGUF key kLowRankKey; llama.cpp refuses such files (tensors it does not expect).
#pragma once

#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

inline constexpr const char* kLowRankKey = "lowbit.lowrank.rank";

// "blk.3.attn_q.weight" → "blk.3.attn_q.lowrank_a" / "blk.3.attn_q.lowrank_b".
std::string lowrank_a_name(const std::string& weight);
std::string lowrank_b_name(const std::string& weight);
bool is_lowrank_tensor(const std::string& name);
bool is_lowrank_a(const std::string& name);
// The weight of a factor: "blk.3.attn_q.lowrank_a" → "blk.3.attn_q.weight".
std::string lowrank_weight(const std::string& factor);

// The best rank-r approximation of w [rows, cols] (truncated SVD, LAPACK dgesdd in fp64):
// a = the first r right singular vectors as rows [r, cols], b = U_r·Σ_r [rows, r], both
// rounded to f16 values so that a residual formed against them is what a file holds.
// energy = Σ_{i<r} σ_i² / Σ σ², the share of ‖w‖² the branch takes. r is clipped to
// min(rows, cols).
struct LowRankFactors {
  uint32_t rank = 0;
  std::vector<float> a, b;
  double energy = 0;
};
LowRankFactors lowrank_svd(const float* w, uint64_t rows, uint64_t cols, uint32_t rank);

struct LowRankOptions {
  uint32_t rank = 16;
  // ECMAScript regex over weight names; the block linears it matches get a branch ("" = all
  // seven of every block).
  std::string only;
};
struct LowRankResult {
  Model model;  // each chosen weight replaced by W − B·A (f32), the factors added
  std::vector<std::pair<std::string, double>> energy;  // per weight, in model order
};
// Throws Argument for a rank of 0, a regex that matches no block linear, a model that
// already has branches, or a weight or factor that is not finite (naming the tensor), and
// Unsupported for a W8A8 checkpoint (the engine would prefer its int8 weights).
LowRankResult add_lowrank(const Model& m, const LowRankOptions& o);

// Checks the factors against their weights (both present, shapes [r, in] / [out, r],
// 1 ≤ r ≤ c.lowrank_rank, a float type) and that factors and key come together; throws
// Format naming the tensor or the key.
void validate_lowrank_tensors(const Model& m);
// "rank=8 alpha=0.5 only=ffn_.*" (what a checkpoint's fingerprint must tell apart); empty
// for rank 0. alpha: the smoothing a job applies first.
std::string lowrank_label(const LowRankOptions& o, double alpha);
// Throws Unsupported when `m` has branches that `what` (a format) cannot carry.
void refuse_lowrank(const Model& m, const std::string& what);

}  // namespace lowbit

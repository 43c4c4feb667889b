// AWQ (Lin et al. 2024): activation-aware per-input-channel scaling. A linear's input
// channel j is multiplied by s_j inside the weights (W·diag(s)) and divided by s_j where the
// input is produced (the preceding RMSNorm weight, or the rows of the preceding linear), so
// the fp32 model computes exactly the same function, but the channels that carry large
// activations get finer quantization steps. s = mean|x|^α (normalised so max·min = 1), with
// α chosen on a grid to minimise the output error of the quantized weights on the
// calibration inputs, tr(ΔHΔᵀ) with Δ = W - Q(W·diag(s))·diag(1/s).
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit {

// One weight fed by the scaled input: [rows, cols] f32 and the type it will be stored in.
struct AwqWeight {
  const std::vector<float>* w;
  uint64_t rows, cols;
  DType type;
};

struct AwqScales {
  std::vector<float> s;        // per input column; all 1 when α = 0 wins
  double alpha = 0;
  double error_plain = 0;      // Σ tr(ΔHΔᵀ) with s = 1 (plain rounding)
  double error_scaled = 0;     // the same with the chosen s (never above error_plain)
};

// H: [cols, cols] of the shared input; mean_abs: mean |x_j| per column. α is tried at
// 0, 1/grid, ..., 1; at most `max_rows` evenly spread rows of each weight are used to score.
AwqScales awq_search(const std::vector<AwqWeight>& weights, const std::vector<double>& H,
                     const std::vector<double>& mean_abs, int grid = 20, uint64_t max_rows = 256);

// s_j = mean|x_j|^α, normalised so that max·min = 1 (all 1 at α = 0).
std::vector<float> awq_scales_for(const std::vector<double>& mean_abs, double alpha);

// AWQ's weight-clip search, scored by the layer's output error. For each row, block by
// block (32 or 256 columns of `type`), the values are clipped to ±r·max|w| for a few ratios
// r and rounded to nearest; the rounding kept is the one that adds least to the row's
// output error eᵀHe (H = XᵀX/n), given the blocks already decided:
//     e_bᵀ H_bb e_b + 2 e_bᵀ Σ_{c<b} H_bc e_c,   e = w − dequant(q).
// r = 1 is plain rounding. Each candidate is also rounded weighted by diag(H) (the
// importance matrix), so the search decides per block which of the two to trust. Unlike
// GPTQ, no value is moved to absorb another's error: only whole-block roundings are chosen.
struct AwqClipOptions {
  int steps = 6;             // ratios 1, 1 − step, ..., 1 − steps·step
  float step = 0.05f;
  bool try_importance = true; // also round each candidate weighted by diag(H)
};

// w: [rows, cols] f32; h: [cols, cols] (row-major, fp64); out: rows in `type`'s blocks.
void awq_clip_quantize_rows(DType type, const float* w, uint64_t rows, uint64_t cols,
                            const std::vector<double>& h, const AwqClipOptions& o, int n_threads,
                            uint8_t* out);

// AWQ's clip search at the quantizer's own groups, for rows already quantized to a K type
// (Q2_K..Q6_K; q: [rows] of `type`'s blocks, changed in place). AutoAWQ searches a clipping
// per group of 128 by that group's output error; here each sub-block's integer scale (and
// min) is moved by up to ±2 steps — smaller clips its largest values, larger widens its
// range — and its values re-rounded to nearest, whenever that lowers the row's output error
// eᵀHe (H: [cols, cols], e = w − dequantized row). The f16 super-scales stay. Up to
// `passes` sweeps over the sub-blocks (fewer when one changes nothing). Returns false, q
// untouched, for types without integer sub-block scales.
bool awq_refine_sub_scales(DType type, const float* w, uint64_t rows, uint64_t cols,
                           const std::vector<double>& h, int passes, int n_threads, uint8_t* q);

// Folding, exact in fp32 up to rounding:
void awq_scale_columns(std::vector<float>& w, uint64_t rows, uint64_t cols,
                       const std::vector<float>& s);                            // W·diag(s)
void awq_unscale_norm(std::vector<float>& gamma, const std::vector<float>& s);  // γ / s
void awq_unscale_rows(std::vector<float>& w, uint64_t rows, uint64_t cols,
                      const std::vector<float>& s);  // diag(1/s)·W
// H of the scaled input x/s: diag(1/s) H diag(1/s).
void awq_unscale_hessian(std::vector<double>& h, const std::vector<float>& s);

}  // namespace lowbit

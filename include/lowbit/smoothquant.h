// SmoothQuant (Xiao et al. 2023): moves the quantization difficulty of activations with
// outlier channels into the weights, so that both quantize well to int8 (W8A8).
//
// A linear's input channel j is divided by s_j where the input is produced and its weight
// column multiplied by s_j, so the fp32 model computes the same function:
//   s_j = max|X_j|^α / max|W_j|^(1-α)
// (max|X_j| over the calibration tokens, max|W_j| over the column of every weight that reads
// the input). α is the migration strength: 0 leaves the activations alone, 1 flattens them.
// Groups per layer, and where 1/s is folded:
//   q, k, v       <- attn_norm weight
//   gate, up      <- ffn_norm weight
//   attn_output   <- rows of attn_v (with grouped-query attention, the heads sharing a KV
//                    head share its scales, so s is taken over the group of heads)
//   ffn_down      <- rows of ffn_up (SwiGLU is linear in up)
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lowbit/calibration.h"
#include "lowbit/model.h"
#include "lowbit/w8a8.h"

namespace lowbit {

struct SmoothQuantOptions {
  double alpha = 0.5;        // migration strength in [0, 1]
  bool smooth = true;        // false: plain W8A8 (s = 1), the baseline
  bool static_acts = false;  // one activation scale per linear from calibration; else per token
};

struct SmoothQuantResult {
  Model model;           // the smoothed model; changed weights are f32 owned by model.storage
  W8A8Activations acts;  // scheme and, when static, the scale of every linear's input
  // Per linear group (keyed by its first weight): max over channels of max|X_j| divided by
  // their mean, before and after smoothing (how spiky the input is).
  std::map<std::string, std::pair<double, double>> spikiness;
};

// s_j for one input; act_absmax and w_absmax have one value per input channel. Channels
// where either is 0 keep s_j = 1.
std::vector<float> smoothing_scales(const std::vector<float>& act_absmax,
                                    const std::vector<float>& w_absmax, double alpha);

// stats: calibration statistics of the unsmoothed model, with absmax for every linear input.
SmoothQuantResult smooth_model(const Model& m, const CalibrationStats& stats,
                               const SmoothQuantOptions& o);

}  // namespace lowbit

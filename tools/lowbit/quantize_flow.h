// The GGUF quantization flow shared by `quantize` and `sweep`: flags, method dispatch
// (rtn, imatrix, gptq, awq, awq+gptq) and the budget mix.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "commands.h"
#include "lowbit/affine.h"
#include "lowbit/gptq.h"
#include "lowbit/mixed.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"

namespace lowbit::cli {

struct QuantizeFlags {
  std::string model, out, type = "Q4_K_M", tokenizer, output_type, embd_type;
  std::vector<std::string> overrides;
  bool pure = false, json = false, quiet = false, sym = false, asym = false;
  int threads = 0;
  int64_t group = 128;
  std::string range = "minmax";
  double percentile = 99.9;
  std::string method, stats;
  CalibrationFlags calib;
  double damp = -1;  // -1: the target's default
  bool act_order = false, no_act_order = false, fp_targets = false;
  int awq_grid = 20;
  std::string awq_objective = "block";  // block | layer (lowbit/sequential.h)
  int awq_windows = 4;
  bool awq_clip = false;
  int awq_sub_passes = 4;
  double sq_alpha = 0.5;                  // smoothquant: migration strength
  std::string act_scheme = "per-token";  // w8a8 / smoothquant: per-token or static activation scales
  double bpw = 0;
  std::string max_size, recipe, save_recipe, sensitivity = "proxy";
  size_t sensitivity_windows = 4, sensitivity_ctx = 256;
};

// The budget and sensitivity flags shared by `quantize` and `sweep`.
void add_sensitivity_flags(CLI::App* c, QuantizeFlags& f);

// GPTQ settings from the flags; the defaults differ per target (measured on tinyllm-8m:
// act-order with static groups for the affine layout, left to right for GGUF blocks).
GptqOptions gptq_options(const QuantizeFlags& f, bool act_order, double damp);

// Statistics with the Hessian of every linear input, for GPTQ without the sequential driver
// and for the budget's sensitivity: read from f.stats (written by `lowbit calibrate
// --hessian`) or measured on f.calib.text. `what` names the user of the Hessians in errors.
CalibrationStats hessian_stats(const Model& m, const QuantizeFlags& f, const std::string& what);

// W8A8 (--type int8 --method smoothquant|w8a8): SmoothQuant's scales from the calibration
// maxima (smoothquant only), then int8 per-channel weights and the activation scheme.
QuantizeReport write_w8a8(const Model& m, const QuantizeFlags& f, const AffineSpec& spec, const std::string& method,
                          const std::function<void(size_t, size_t, const TensorReport&)>& on_tensor);

// Quantizes m to f.out with f's method; q carries the plan and callbacks.
QuantizeReport quantize_gguf(const Model& m, const QuantizeFlags& f, QuantizeOptions q);

// Budget mixes: sensitivity of every tensor on the calibration text (once), then the mix
// for a budget (written as a recipe when save_path is set).
std::vector<MixTensor> measure_mix_sensitivity(const Model& m, const QuantizeFlags& f, const QuantizePlanOptions& plan);
uint64_t bytes_at_bpw(const Model& m, double bpw);
std::map<std::string, DType> recipe_for_budget(const Model& m, const std::vector<MixTensor>& tensors, uint64_t budget,
                                               const std::string& save_path, bool quiet);

}  // namespace lowbit::cli

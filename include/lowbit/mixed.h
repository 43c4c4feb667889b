// Mixed precision under a size budget: one type per tensor, chosen to minimise the summed
// estimated loss subject to total bytes <= budget (a multiple-choice knapsack).
//
//   sensitivity:  loss[tensor][type] ≈ the mean KL divergence the model gains when only that
//                 tensor is quantized to that type (losses are assumed to add up);
//   solver:       exact dynamic programming over bytes rounded *up* to a unit, so the
//                 chosen mix never exceeds the budget;
//   recipe:       the choice as reviewable JSON (tensor -> type, bytes, loss) that
//                 `lowbit quantize --recipe` replays.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"

namespace lowbit {

struct MixOption {
  DType type;
  uint64_t bytes = 0;
  double loss = 0;   // estimated added KLD (nats per token)
  double proxy = 0;  // the Hessian proxy tr(ΔHΔᵀ)/tr(WHWᵀ) (or ||ΔW||²/||W||² without H)
  double measured = -1;  // measured KLD when it was measured, else -1
};

struct MixTensor {
  std::string name;
  uint64_t n_values = 0;
  std::vector<MixOption> options;  // one option = fixed (1-D tensors, user overrides)
};

struct MixSolution {
  std::vector<size_t> choice;  // index into each tensor's options
  uint64_t bytes = 0;
  double loss = 0;
};

// Throws Argument when even the smallest options exceed the budget.
MixSolution solve_budget(const std::vector<MixTensor>& tensors, uint64_t budget_bytes);
// Fails (naming both sizes) when even the smallest option of every tensor exceeds the budget.
void check_budget_fits(const std::vector<MixTensor>& tensors, uint64_t budget_bytes);

enum class SensitivityMode {
  Measured,  // KLD measured for every tensor and type (exact, slow)
  Proxy,     // KLD measured once per tensor at `reference`; other types scaled by the proxy
};

struct SensitivityOptions {
  // Not TQ1_0: the proxy, scaled from Q3_K's measured loss, underrates ternary error, and
  // with it the 4.2 MB tinyllm-8m mix went from KLD 0.0074 to 0.0095 (docs/QUANTIZATION.md).
  std::vector<DType> candidates = {DType::Q2_K, DType::Q3_K, DType::Q4_K,
                                   DType::Q5_K, DType::Q6_K, DType::Q8_0};
  SensitivityMode mode = SensitivityMode::Proxy;
  DType reference = DType::Q3_K;  // Proxy: the type measured for every tensor
  size_t n_windows = 4, n_ctx = 256;
  uint64_t seed = 1;
  int n_threads = 0;
  std::function<void(size_t done, size_t total)> on_step;
};

// Losses of every candidate type for every matrix of `m`. The plan supplies the tensors
// that stay fixed (1-D, and the ones matched by plan.tensor_types: their planned type is
// their only option). `hessian` (GGUF name -> [cols, cols], may return null) gives the proxy.
// The options of every tensor of the plan with their sizes only (no losses): what a budget
// can choose from, known before anything is measured.
std::vector<MixTensor> mix_options(const Model& m, const QuantizePlanOptions& plan,
                                   const std::vector<DType>& candidates);

std::vector<MixTensor> measure_sensitivity(
    const Model& m, const std::vector<int32_t>& tokens, const QuantizePlanOptions& plan,
    const std::function<const std::vector<double>*(const std::string&)>& hessian,
    const SensitivityOptions& o);

// Spearman rank correlation of the proxy against the measured KLD over every option that was
// measured (and is not fixed); NaN when fewer than 3.
double proxy_rank_correlation(const std::vector<MixTensor>& tensors);

// Recipe files: {"format": "lowbit-recipe", "budget_bytes", "total_bytes", "estimated_kld",
// "tensors": [{"name", "type", "bytes", "loss"}]}.
void write_recipe(const std::string& path, const std::vector<MixTensor>& tensors,
                  const MixSolution& s, uint64_t budget);
// name -> type; throws Format naming the file and the entry on a bad file.
std::map<std::string, DType> read_recipe(const std::string& path);

// "120MB", "3.5GB", "900KB", "123456" -> bytes (decimal units: KB = 1000 B; KiB/MiB/GiB = 1024^n).
uint64_t parse_byte_size(const std::string& text);

}  // namespace lowbit

// Calibration statistics of the inputs of every linear layer, collected by running the
// fp32 reference engine over windows of calibration text, and their files:
//   - lowbit writes them as a GGUF "imatrix" file that llama.cpp's tools also read
//     (per weight: "<name>.in_sum2" = Σx² per input column, "<name>.counts" = rows seen);
//   - lowbit reads that format (also with llama.cpp's older ".sums" name) and llama.cpp's
//     legacy binary imatrix.dat.
// The importance of input column j is mean(x_j²) (llama.cpp imatrix semantics).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

struct InputStats {
  uint64_t count = 0;            // input rows (tokens) accumulated
  std::vector<double> sum_sq;    // Σ x_j², one per input column
  std::vector<float> absmax;     // max |x_j| (empty when read from a llama.cpp file)
  std::vector<double> xtx;  // Σ x xᵀ, [cols, cols] row-major; only with CalibrationOptions::hessian
  std::vector<float> importance() const;  // sum_sq / count
  std::vector<double> hessian() const;    // xtx / count: the GPTQ proxy H (empty without xtx)
};

struct CalibrationStats {
  std::map<std::string, InputStats> by_weight;  // GGUF weight name -> stats of its input
  uint64_t n_windows = 0, window_len = 0;
  std::string dataset;  // the calibration text's file name
};

struct CalibrationOptions {
  size_t n_samples = 128;  // windows
  size_t n_ctx = 512;      // tokens per window (BOS first)
  uint64_t seed = 1;
  int n_threads = 0;  // 0: every core
  bool hessian = false;  // also accumulate Σ x xᵀ per weight (cols² doubles each)
  // Under mpirun (lowbit/distributed.h) the ranks measure the windows in turns and rank 0
  // sums them; the other ranks get the totals too only with this set.
  bool on_every_rank = false;
  std::function<void(size_t done, size_t total)> on_window;
};

// `n` windows of `len` tokens from seeded random offsets in `tokens` (BOS replaces the first
// token when bos >= 0). Fewer when the text is short; throws Argument when it is shorter
// than one window.
std::vector<std::vector<int32_t>> sample_windows(const std::vector<int32_t>& tokens, size_t n,
                                                 size_t len, uint64_t seed, int32_t bos);

// The same sums in the same order for any number of ranks: each window's share (its Σx²
// summed from zero, its x xᵀ in float) is added to the totals in window order.
CalibrationStats collect_calibration_stats(const Model& m, const std::vector<int32_t>& tokens,
                                           const CalibrationOptions& o);
// The same on the text file at `text_path`, tokenized with the model's tokenizer (no BOS:
// each window gets its own); `dataset` is set to the file's name.
CalibrationStats collect_calibration_stats(const Model& m, const std::string& text_path,
                                           const CalibrationOptions& o);

void write_calibration_stats(const CalibrationStats& s, const std::string& path);
// Reads a GGUF imatrix (lowbit's or llama.cpp's) or a legacy llama.cpp imatrix.dat. With
// `wants_hessian`, only the weights it names get their Hessians (xtx) read: a rank of a
// distributed job reads those of its own tensors.
using WeightFilter = std::function<bool(const std::string& weight)>;
CalibrationStats read_calibration_stats(const std::string& path,
                                        const WeightFilter& wants_hessian = {});

}  // namespace lowbit

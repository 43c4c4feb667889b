// Errors of a quantized tensor against its f32 values: the plain weight error and, given
// the Hessian of its input, the error of the layer's output on the calibration inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/dtype.h"
#include "quant/error_sums.h"

namespace lowbit {

struct TensorErrors {
  double weight = 0;  // ||W - Q|| / ||W||
  double output = 0;  // sqrt(tr((W-Q) H (W-Q)ᵀ) / tr(W H Wᵀ)); 0 without H
};

// x: [rows, row_len] f32; out: the quantized rows of `type`; hessian: [row_len²] in f32 (the
// SGEMM's precision; callers measuring several quantizations convert once), or null.
TensorErrors measure_errors(DType type, const std::vector<float>& x, uint64_t row_len,
                            const std::vector<uint8_t>& out, const std::vector<float>* hessian,
                            int n_threads);

// Σ (x - Q(x))² and Σ x² of a piece of a tensor, to add up over row chunks.
ErrorSums weight_error_sums(DType type, const std::vector<float>& x, uint64_t row_len,
                            const std::vector<uint8_t>& out, int n_threads);

// Share of the n values of `bytes` (of `type`) that decode to exactly 0 (pruned weights).
double decoded_zero_share(DType type, const std::vector<uint8_t>& bytes, uint64_t n);

// H as measure_errors takes it: f32, or empty when `h` is null or not [row_len²].
std::vector<float> hessian_f32(const std::vector<double>* h, uint64_t row_len);

}  // namespace lowbit

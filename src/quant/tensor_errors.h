// Errors of a quantized tensor against its f32 values: the plain weight error and, given
// the Hessian of its input, the error of the layer's output on the calibration inputs.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit {

struct TensorErrors {
  double weight = 0;  // ||W - Q|| / ||W||
  double output = 0;  // sqrt(tr((W-Q) H (W-Q)ᵀ) / tr(W H Wᵀ)); 0 without H
};

// x: [rows, row_len] f32; out: the quantized rows of `type`; hessian: [row_len²] or null.
TensorErrors measure_errors(DType type, const std::vector<float>& x, uint64_t row_len, const std::vector<uint8_t>& out,
                            const std::vector<double>* hessian, int n_threads);

}  // namespace lowbit

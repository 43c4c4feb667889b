// GPTQ (Frantar et al. 2023) onto the generic affine layout: columns are rounded one at a
// time in order of decreasing Hessian diagonal (act-order) or left to right, and each
// column's rounding error is spread over the columns not yet rounded, weighted by the
// inverse Hessian, so that ||(W - Q) X|| (not ||W - Q||) is minimised.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/affine.h"

namespace lowbit {

struct GptqOptions {
  double damp = 0.01;     // added to the diagonal: damp * mean(diag(H)); raised x10 if Cholesky fails
  bool act_order = true;  // with groups, implies static groups (parameters from the original W)
};

// W: [rows, cols] row-major. H: [cols, cols] symmetric, the proxy X^T X / n of the inputs.
// Returns the quantized tensor; `dequantized` (optional) receives Q as f32 [rows, cols].
AffineTensor gptq_quantize_affine(const float* w, uint64_t rows, uint64_t cols, const std::vector<double>& H,
                                  const AffineSpec& spec, const GptqOptions& o, std::vector<float>* dequantized = nullptr);

}  // namespace lowbit

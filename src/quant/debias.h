// Removing the shrink of least-squares rounding (docs/QUANTIZATION.md, "Round to nearest
// against llama.cpp's quantizer").
//
// Least-squares block scales make a block's error orthogonal to its quantized values y, so
// y is shorter than the original x by about the relative squared error (2% for Q3_K, 7% for
// Q2_K); every later layer sees that shrink coherently. These functions multiply the f16
// scales of a row's blocks by r = x M x^T / x M y^T for a metric M, so that the row's error
// is orthogonal to the row itself: (x - r y) M x^T = 0. The codes stay.
#pragma once

#include <cstdint>

#include "quant/block_codecs.h"

namespace lowbit::quant {

// r is clamped to this range, so a row whose quantized values hold little of it is not
// blown up.
inline constexpr double kMaxDebias[2] = {0.8, 1.25};

// One row of `codec` blocks in q; mx = M x: the importance times x for rounding (M = diag(w),
// or the identity). The f16 fields of consecutive blocks round up or down so that their
// rounding errors do not add up along the row; a block whose fields would overflow f16 keeps
// them. A block that was rounded onto a grid holding 0 (affine_grids.h: x holds an exact 0,
// or zero_grids for all blocks) keeps that 0: its two fields move together.
void debias_row(const BlockCodec& codec, const float* x, const float* mx, uint64_t row_len,
                uint8_t* q, bool zero_grids = false);

// Every row of a layer's weights w [rows, cols] of `type` in the metric of its inputs,
// h = E[x x^T] [cols, cols]: the layer's output error is then uncorrelated with its output.
// For GPTQ and AWQ, whose roundings are chosen by that output error. Nothing happens for
// types without the rescale (BlockCodec::debias).
void debias_rows_output(DType type, const float* w, uint64_t rows, uint64_t cols, const float* h,
                        int n_threads, uint8_t* q, bool zero_grids = false);

}  // namespace lowbit::quant

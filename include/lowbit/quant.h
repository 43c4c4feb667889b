// Row quantization into the GGUF block types and back (reference scalar code).
// Rows are `row_len` consecutive f32 values; a quantized row is row_len / block_size blocks.
// `importance` has one entry per column (row_len values, llama.cpp imatrix semantics:
// the mean of x^2 of that input channel); null weighs every value equally.
#pragma once

#include <cstdint>

#include "lowbit/dtype.h"

namespace lowbit {

// Types `quantize_rows` can produce: F32, F16, BF16 and the GGUF block types except the
// activation-only Q8_1 / Q8_K.
bool can_quantize_to(DType t);
// Types `dequantize_values` can read: the above plus the other plain float types.
bool can_dequantize(DType t);

// Quantizes n_rows rows into `out` (n_rows * row_len / block_size * type_size bytes): each
// block's parameters minimise its (importance-weighted) squared error and every value takes
// its nearest code; for the K types (Q2_K..Q6_K) each row's f16 scales are then rescaled so
// that the row is not shrunk: sum w x (x - y) = 0 (docs/QUANTIZATION.md, "Round to
// nearest"). Throws Argument when row_len is not a multiple of the block size.
void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, uint8_t* out);
// The same with the rows split over n_threads threads (0: all cores); the bytes are identical.
void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len,
                   const float* importance, int n_threads, uint8_t* out);
// Decodes `n` values (a multiple of the block size) stored as `t`.
void dequantize_values(DType t, const uint8_t* in, uint64_t n, float* out);

}  // namespace lowbit

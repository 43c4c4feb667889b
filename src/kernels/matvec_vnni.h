// Generation's product (one token) on AVX-512 VNNI, read straight from the GGUF blocks
// (matvec_vnni.cpp). dot_rows takes it where packed_gemm_is_fast() says the VNNI kernels
// may run; elsewhere the Highway row kernels of dot_simd.cpp serve.
#pragma once

#include <cstddef>
#include <cstdint>

#include "lowbit/kernels.h"

namespace lowbit::kernels {

// The types with a kernel here: the 32-value types Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and IQ4_NL,
// the K types Q2_K .. Q6_K, and IQ4_XS.
bool has_matvec_vnni(DType t);

// dot_rows for one of those types: y[r] = row r · a for the n_rows rows of w, row_bytes
// apart. a is quantized in the type's activation blocks, with u8, sum16_i16 (and d, sum16)
// set, as act_row sets them. Each call first prepares the token (row_len bytes).
void matvec_vnni(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                 const ActRow& a, float* y);

}  // namespace lowbit::kernels

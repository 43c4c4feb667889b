// The SIMD kernels of dot_simd.cpp, one per instruction set, dispatched at run time.
#pragma once

#include <string>

#include "lowbit/kernels.h"

namespace lowbit::kernels {

void dot_rows_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len, const ActRow& a, float* y);
std::string simd_target_name();

}  // namespace lowbit::kernels

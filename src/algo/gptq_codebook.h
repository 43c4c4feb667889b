// GPTQ onto a codebook type (IQ3_*, IQ2_*, IQ1_*): the rounder of gptq_sweep.h for blocks whose
// groups of values share one grid entry.
#pragma once

#include <cstdint>
#include <memory>

#include "algo/gptq_sweep.h"
#include "lowbit/dtype.h"

namespace lowbit::gptq {

// A rounder for `type` (a codebook type), writing blocks of rows of `cols` values to `out`.
// importance: per column (the Hessian's diagonal), weights of the entry search.
std::unique_ptr<GridRounder> make_codebook_rounder(DType type, uint64_t cols,
                                                   const float* importance, uint8_t* out,
                                                   float* met);

}  // namespace lowbit::gptq

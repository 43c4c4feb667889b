// The GPTQ column sweep, independent of the target format. A format is a GridRounder: it
// fixes the parameters of a block of columns of one row from that block's current values,
// then rounds single values onto the grid those parameters define.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/gptq.h"

namespace lowbit::gptq {

class GridRounder {
 public:
  virtual ~GridRounder() = default;
  virtual uint64_t block_len() const = 0;  // columns that share parameters (a group or a block)
  // Rows [r0, r1) are about to be swept (storage for their grids may be sized here).
  virtual void begin_rows(uint64_t r0, uint64_t r1) = 0;
  // Fix the parameters of (row, block) from `values`, the block's block_len() current values.
  virtual void choose(uint64_t row, uint64_t block, const float* values) = 0;
  // Round `v` at (row, col) onto its block's grid, remember the code; returns the decoded value.
  virtual float round(uint64_t row, uint64_t col, float v) = 0;
  // Rows [r0, r1) are done: store their codes.
  virtual void end_rows(uint64_t r0, uint64_t r1) = 0;
};

// Upper factor U of (H + damp)^-1 = UᵀU, [n, n] row-major (LAPACK). Retries with more damping.
std::vector<double> inverse_hessian_factor(std::vector<double> h, uint64_t n, double damp);

// Sweeps W [rows, cols] (modified: dead columns are zeroed, the rest receive the propagated
// errors) through `rounder`. Parameters are chosen at each block's first column, or all up
// front from the original W when act-order is on or a block spans the whole row.
// H is taken by value: a caller done with it moves it in and saves a cols² copy.
void sweep(std::vector<float>& W, uint64_t rows, uint64_t cols, std::vector<double> H,
           const GptqOptions& o, GridRounder& rounder);

}  // namespace lowbit::gptq

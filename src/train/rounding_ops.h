// What the student's forward pass rounds besides its weights (lowbit::ActivationRounding, as the
// engine rounds it), with the straight-through backward passes that quantization-aware
// training takes through the rounding. Row-major [rows, cols]; Real = float | double
// (double rounds through float: the same grid as the engine).
#pragma once

#include <cstddef>
#include <cstdint>

#include "lowbit/dtype.h"

namespace lowbit::train {

// out = x rounded to signed `bits` integers, values clamped: range 0 per row with the scale
// clip·max|x| / (2^(bits−1) − 1) (kernels::round_acts_per_token); range > 0 with one scale
// clip·range / (2^(bits−1) − 1) for all (a static range; kernels::round_acts_to_range).
// out may be x.
template <class Real>
void round_acts(const Real* x, size_t rows, size_t cols, int bits, float clip, float range,
                Real* out);
// Straight through: dx passes where x was not clamped (|x| ≤ clip·max|x| of its row, or
// ≤ clip·range), and is zeroed where it was (no change of x moves a clamped value).
// With `rounded` (round_acts' output) and a per-token scale (range 0), the gradient through
// the scale as well (LSQ, Esser et al. 2020): x̂ = s·k with s = clip·max|x|/(2^(bits−1) − 1)
// and k straight through round(x/s), so ∂x̂_i/∂s = (x̂_i − x_i)/s where x_i is not clamped
// and x̂_i/s where it is; s moves with the largest |x| of its row, ∂s/∂|x|max = s/max|x|.
// That term is where a rotation learns to shrink the rows' maxima.
template <class Real>
void round_acts_backward(const Real* x, size_t rows, size_t cols, float clip, float range, Real* dx,
                         const Real* rounded = nullptr);

// x rounded in place to type t per row of `cols` (as the KV cache stores it: quantize_rows,
// then decoded); F32 leaves it. The backward pass is the identity.
template <class Real>
void round_rows_to(DType t, Real* x, size_t rows, size_t cols);

// The engine's online Hadamard transform of each row in place, x ← H x / √n with
// H = hadamard_matrix(n) (kernels::hadamard_rows); `inverse` applies Hᵀ/√n instead, which is
// the backward pass (H is orthogonal but not always symmetric: Paley I factors).
template <class Real>
void hadamard_rows(Real* x, size_t rows, uint32_t n, bool inverse);

}  // namespace lowbit::train

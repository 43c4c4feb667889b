// The W8A8 integer GEMM (SmoothQuant path): int8 weights times int8 activations, summed
// exactly in int32. Highway, compiled once per instruction set and chosen at run time.
//
// Micro-tile: kRows weight rows × kToks tokens. Each step loads N int8 values of every row
// and every token once, widens them to int16 and multiply-adds pairs into kRows·kToks int32
// accumulators (pmaddwd), so a decoded weight vector is reused by kToks tokens and an
// activation vector by kRows rows. Bounds: |w| ≤ 128 (-128 from compressed-tensors), |x| ≤ 127,
// one lane gains ≤ 2·128·127 per step, so rows of up to 2^31 / 32512 ≈ 66 000 values per
// lane cannot overflow.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/int8_gemm.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/dot_simd.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

void GemmI8(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
            int32_t* out, size_t ld_out) {
  gemm_i8_reference(w, n_rows, cols, x, n_tok, out, ld_out);
}

#else

using D16 = hn::ScalableTag<int16_t>;
using D32 = hn::Repartition<int32_t, D16>;
using D8 = hn::Rebind<int8_t, D16>;

template <size_t kRows, size_t kToks>
void Tile(const int8_t* w, size_t cols, const int8_t* x, int32_t* out, size_t ld_out) {
  const D16 d16;
  const D32 d32;
  const D8 d8;
  const size_t N = hn::Lanes(d16);
  hn::Vec<D32> acc[kRows][kToks], unused = hn::Zero(d32);
  for (size_t r = 0; r < kRows; ++r)
    for (size_t t = 0; t < kToks; ++t) acc[r][t] = hn::Zero(d32);
  size_t i = 0;
  for (; i + N <= cols; i += N) {
    hn::Vec<D16> xv[kToks];
    for (size_t t = 0; t < kToks; ++t) xv[t] = hn::PromoteTo(d16, hn::LoadU(d8, x + t * cols + i));
    for (size_t r = 0; r < kRows; ++r) {
      const auto wv = hn::PromoteTo(d16, hn::LoadU(d8, w + r * cols + i));
      for (size_t t = 0; t < kToks; ++t)
        acc[r][t] = hn::ReorderWidenMulAccumulate(d32, wv, xv[t], acc[r][t], unused);
    }
  }
  for (size_t r = 0; r < kRows; ++r)
    for (size_t t = 0; t < kToks; ++t) {
      int32_t s = hn::GetLane(hn::SumOfLanes(d32, acc[r][t]));
      for (size_t k = i; k < cols; ++k) s += int32_t{w[r * cols + k]} * x[t * cols + k];  // tail
      out[t * ld_out + r] = s;
    }
}

constexpr size_t kRows = 2, kToks = 4;

void GemmI8(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
            int32_t* out, size_t ld_out) {
  size_t t = 0;
  for (; t + kToks <= n_tok; t += kToks) {
    size_t r = 0;
    for (; r + kRows <= n_rows; r += kRows)
      Tile<kRows, kToks>(w + r * cols, cols, x + t * cols, out + t * ld_out + r, ld_out);
    for (; r < n_rows; ++r)
      Tile<1, kToks>(w + r * cols, cols, x + t * cols, out + t * ld_out + r, ld_out);
  }
  for (; t < n_tok; ++t) {  // fewer than kToks tokens left: one at a time, four rows per step
    size_t r = 0;
    for (; r + 4 <= n_rows; r += 4)
      Tile<4, 1>(w + r * cols, cols, x + t * cols, out + t * ld_out + r, ld_out);
    for (; r < n_rows; ++r)
      Tile<1, 1>(w + r * cols, cols, x + t * cols, out + t * ld_out + r, ld_out);
  }
}

#endif  // vector targets

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(GemmI8);

void gemm_i8_simd(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
                  int32_t* out, size_t ld_out) {
  HWY_DYNAMIC_DISPATCH(GemmI8)(w, n_rows, cols, x, n_tok, out, ld_out);
}

}  // namespace lowbit::kernels
#endif

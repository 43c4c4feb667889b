// Per-target helpers of the Highway kernels, included after <hwy/highway.h> by each file that
// is compiled once per instruction set (Highway's -inl.h pattern: the guard flips with
// HWY_TARGET_TOGGLE, so every target gets its own copy).
#if defined(LOWBIT_KERNELS_SIMD_F16_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef LOWBIT_KERNELS_SIMD_F16_INL_H_
#undef LOWBIT_KERNELS_SIMD_F16_INL_H_
#else
#define LOWBIT_KERNELS_SIMD_F16_INL_H_
#endif

#include <hwy/highway.h>

#include "lowbit/float_convert.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {

// f16 bits to f32: the F16C instruction where the target has it (AVX2 and up).
HWY_INLINE float F16(uint16_t h) {
#if HWY_TARGET <= HWY_AVX2
  return _cvtsh_ss(h);
#else
  return f16_to_f32(h);
#endif
}

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#endif  // LOWBIT_KERNELS_SIMD_F16_INL_H_

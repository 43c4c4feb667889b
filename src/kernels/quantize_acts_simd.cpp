// Activation quantization (kernels::quantize_acts) with Highway, compiled once per instruction
// set and chosen at run time. It computes what the scalar reference computes, bit for bit:
// amax over the block, d = amax / 127, q = round-to-nearest-even(x · (1 / d)) (NearestInt, as
// lrintf in the default rounding mode), exact integer sums per 16 values.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/quantize_acts_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/dot_simd.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

void QuantizeActBlocks(const float* x, size_t n_blocks, uint32_t block, QuantizedActs& out) {
  quantize_act_blocks_reference(x, n_blocks, block, out);
}

#else

// At most 16 lanes, so that 16 values are a whole number of vectors.
using DF = hn::CappedTag<float, 16>;
using DI = hn::RebindToSigned<DF>;

void QuantizeActBlocks(const float* x, size_t n_blocks, uint32_t block, QuantizedActs& out) {
  const DF df;
  const DI di;
  const hn::Rebind<int16_t, DF> d16;
  const hn::Rebind<uint8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  for (size_t b = 0; b < n_blocks; ++b) {
    const float* xb = x + b * block;
    auto vmax = hn::Zero(df);
    for (uint32_t i = 0; i < block; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, xb + i)));
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    const float d = amax / 127.0f, id = inverse_scale(d);
    out.d[b] = d;
    const auto vid = hn::Set(df, id);
    int16_t* q = out.q.data() + b * block;
    uint8_t* u = out.u8.data() + b * block;
    for (uint32_t g = 0; g < block / 16; ++g) {
      auto sum = hn::Zero(di);
      for (uint32_t i = 16 * g; i < 16 * g + 16; i += N) {
        const auto qi = hn::NearestInt(hn::Mul(hn::LoadU(df, xb + i), vid));
        sum = hn::Add(sum, qi);
        hn::StoreU(hn::DemoteTo(d16, qi), d16, q + i);
        hn::StoreU(hn::DemoteTo(d8, hn::Add(qi, hn::Set(di, 128))), d8, u + i);
      }
      const int32_t s = hn::GetLane(hn::SumOfLanes(di, sum));
      out.sum16[b * (block / 16) + g] = s;
      out.sum16_i16[b * (block / 16) + g] = static_cast<int16_t>(s);
    }
  }
}

#endif  // vector targets

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(QuantizeActBlocks);

void quantize_act_blocks_simd(const float* x, size_t n_blocks, uint32_t block, QuantizedActs& out) {
  HWY_DYNAMIC_DISPATCH(QuantizeActBlocks)(x, n_blocks, block, out);
}

}  // namespace lowbit::kernels
#endif

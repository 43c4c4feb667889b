// Activation quantization (kernels::quantize_acts) with Highway, compiled once per instruction
// set and chosen at run time. It computes what the scalar reference computes, bit for bit:
// amax over the block, d = amax / 127, q = round-to-nearest-even(x · (1 / d)) (NearestInt, as
// lrintf in the default rounding mode), exact integer sums per 16 values; and the same for
// quantize_acts_rounded's codes on one step per row.
#include <algorithm>

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

void QuantizeActBlocks(const float* x, size_t b0, size_t b1, uint32_t block, QuantizedActs& out) {
  quantize_act_blocks_reference(x, b0, b1, block, out);
}

void RoundActRows(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                  const float* range, QuantizedActs& out) {
  round_act_rows_reference(x, n_rows, row_len, bits, clip, range, out);
}

#else

// At most 16 lanes, so that 16 values are a whole number of vectors.
using DF = hn::CappedTag<float, 16>;
using DI = hn::RebindToSigned<DF>;

// The codes q = round(x · id) of 16 values, as int16 and as q + 128 in bytes; returns Σq, from
// the bytes where a vector holds 8 floats or more (psadbw: Σ(q + 128) − 16 · 128), else from
// the int32 lanes.
template <class D>
HWY_INLINE int32_t QuantizeGroup(D df, const float* HWY_RESTRICT x, hn::Vec<D> vid,
                                 int16_t* HWY_RESTRICT codes, uint8_t* HWY_RESTRICT bytes) {
  const hn::RebindToSigned<D> di;
  const hn::Rebind<int16_t, D> d16;
  const hn::Rebind<uint8_t, D> d8;
  const size_t N = hn::Lanes(df);
  const auto offset = hn::Set(di, 128);
  // MaxLanes is a compile-time bound: scalable vectors may hold fewer lanes at run time.
  if constexpr (!HWY_HAVE_SCALABLE && hn::MaxLanes(D()) >= 8) {
    const hn::Repartition<uint64_t, decltype(d8)> d64;
    auto sum = hn::Zero(d64);
    for (size_t i = 0; i < 16; i += N) {
      const auto qi = hn::NearestInt(hn::Mul(hn::LoadU(df, x + i), vid));
      hn::StoreU(hn::DemoteTo(d16, qi), d16, codes + i);
      const auto u = hn::DemoteTo(d8, hn::Add(qi, offset));
      hn::StoreU(u, d8, bytes + i);
      sum = hn::Add(sum, hn::SumsOf8(u));
    }
    return static_cast<int32_t>(hn::GetLane(hn::SumOfLanes(d64, sum))) - 16 * 128;
  } else {
    auto sum = hn::Zero(di);
    for (size_t i = 0; i < 16; i += N) {
      const auto qi = hn::NearestInt(hn::Mul(hn::LoadU(df, x + i), vid));
      sum = hn::Add(sum, qi);
      hn::StoreU(hn::DemoteTo(d16, qi), d16, codes + i);
      hn::StoreU(hn::DemoteTo(d8, hn::Add(qi, offset)), d8, bytes + i);
    }
    return hn::GetLane(hn::SumOfLanes(di, sum));
  }
}

// The outputs go through local restrict pointers: the byte stores may alias anything, and
// through `out` every one of them made the compiler reload the vectors' data pointers.
void QuantizeActBlocks(const float* HWY_RESTRICT x, size_t b0, size_t b1, uint32_t block,
                       QuantizedActs& out) {
  const DF df;
  const size_t N = hn::Lanes(df);
  float* HWY_RESTRICT scales = out.d.data();
  int16_t* HWY_RESTRICT codes = out.q.data();
  uint8_t* HWY_RESTRICT bytes = out.u8.data();
  int32_t* HWY_RESTRICT sums = out.sum16.data();
  int16_t* HWY_RESTRICT sums_i16 = out.sum16_i16.data();
  for (size_t b = b0; b < b1; ++b) {
    const float* HWY_RESTRICT xb = x + b * block;
    auto vmax = hn::Zero(df);
    for (uint32_t i = 0; i < block; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, xb + i)));
    const float amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    const float d = amax / 127.0f, id = inverse_scale(d);
    scales[b] = d;
    const auto vid = hn::Set(df, id);
    for (uint32_t g = 0; g < block / 16; ++g) {
      const size_t at = b * block + 16 * g;
      const int32_t total = QuantizeGroup(df, xb + 16 * g, vid, codes + at, bytes + at);
      sums[at / 16] = total;
      sums_i16[at / 16] = static_cast<int16_t>(total);
    }
  }
}

// Per row: the step from max|x| (or the static range), then codes clamp(round(x / s)) in
// groups of 16 with their sums. Clamping before rounding gives the reference's values (the
// bound is an integer) and keeps NearestInt in range.
void RoundActRows(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                  const float* range, QuantizedActs& out) {
  const DF df;
  const DI di;
  const hn::Rebind<int16_t, DF> d16;
  const hn::Rebind<uint8_t, DF> d8;
  const size_t N = hn::Lanes(df);
  const float qmax = act_qmax(bits);
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * row_len;
    float amax = 0;
    if (!range) {
      auto vmax = hn::Zero(df);
      for (size_t i = 0; i < row_len; i += N) vmax = hn::Max(vmax, hn::Abs(hn::LoadU(df, xr + i)));
      amax = hn::GetLane(hn::MaxOfLanes(df, vmax));
    }
    const float s = act_step(bits, clip, range ? *range : amax);
    std::fill_n(out.d.data() + r * (row_len / out.block), row_len / out.block, s);
    const auto vs = hn::Set(df, s == 0 ? 1.0f : s), hi = hn::Set(df, qmax), lo = hn::Neg(hi);
    const auto keep = hn::Set(df, s == 0 ? 0.0f : 1.0f);  // a step of 0: codes 0
    int16_t* q = out.q.data() + r * row_len;
    uint8_t* u = out.u8.data() + r * row_len;
    for (size_t g = 0; g < row_len / 16; ++g) {
      auto sum = hn::Zero(di);
      for (size_t i = 16 * g; i < 16 * g + 16; i += N) {
        const auto v = hn::Mul(hn::Div(hn::LoadU(df, xr + i), vs), keep);
        const auto qi = hn::NearestInt(hn::Min(hn::Max(v, lo), hi));
        sum = hn::Add(sum, qi);
        hn::StoreU(hn::DemoteTo(d16, qi), d16, q + i);
        hn::StoreU(hn::DemoteTo(d8, hn::Add(qi, hn::Set(di, 128))), d8, u + i);
      }
      const int32_t t = hn::GetLane(hn::SumOfLanes(di, sum));
      out.sum16[(r * row_len) / 16 + g] = t;
      out.sum16_i16[(r * row_len) / 16 + g] = static_cast<int16_t>(t);
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
HWY_EXPORT(RoundActRows);

void round_act_rows_simd(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                         const float* range, QuantizedActs& out) {
  HWY_DYNAMIC_DISPATCH(RoundActRows)(x, n_rows, row_len, bits, clip, range, out);
}

void quantize_act_blocks_simd(const float* x, size_t b0, size_t b1, uint32_t block,
                              QuantizedActs& out) {
  HWY_DYNAMIC_DISPATCH(QuantizeActBlocks)(x, b0, b1, block, out);
}

}  // namespace lowbit::kernels
#endif

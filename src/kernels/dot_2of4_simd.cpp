// SIMD dot products of the 2:4 sparse types (Q8_0_S24, Q4_0_S24) with 8-bit activations.
//
// A block stores the 16 kept codes of its 32 values and their places (block_layouts.h). The
// kernel spreads the kept codes back to their 32 places in registers with one byte shuffle
// per 16 values (pshufb: a 256-entry table maps a pattern byte, two groups, to the shuffle
// indices of their 8 values, 0x80 where a zero goes), then multiply-adds the dense int8
// vector with the int16 activations as Q8_0 does. The weight bytes read per row are
// 22/34 (Q8_0_S24) and 14/18 (Q4_0_S24) of the dense types'; the arithmetic is the same.
// The shuffle works within 16-byte lanes, so the codes are spread 16 values at a time.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dot_2of4_simd.cpp"
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include "kernels/dot_simd.h"
#include "kernels/simd_f16-inl.h"
#include "lowbit/float_convert.h"
#include "quant/block_layouts.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

void DotRows2of4(int t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                 const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  for (size_t i = 0; i < n_acts; ++i)
    dot_rows_reference(static_cast<DType>(t), w, row_bytes, n_rows, row_len, acts[i], y + i * ld_y);
}

#else

using DU8 = hn::Full128<uint8_t>;
using D8 = hn::Full128<int8_t>;
using VU8 = hn::Vec<DU8>;

// kSpread[b][i]: for the 8 values of the two groups of pattern byte b, the kept value
// (0-3 of the pair's four) at value i, or 0x80 (a zero) where none is.
struct SpreadTable {
  alignas(16) uint8_t idx[256][8];
};
constexpr SpreadTable MakeSpread() {
  SpreadTable t{};
  for (int b = 0; b < 256; ++b) {
    for (int i = 0; i < 8; ++i) t.idx[b][i] = 0x80;
    for (int g = 0; g < 2; ++g) {
      const int nib = (b >> (4 * g)) & 15;
      t.idx[b][4 * g + (nib & 3)] = static_cast<uint8_t>(2 * g);
      t.idx[b][4 * g + (nib >> 2)] = static_cast<uint8_t>(2 * g + 1);
    }
  }
  return t;
}
constexpr SpreadTable kSpread = MakeSpread();

// Shuffle indices of the 16 values of pattern bytes p0 and p1; `first` (loop-invariant) adds
// the index of each byte's first kept value in the block (0, 4 or 8, 12).
HWY_INLINE VU8 SpreadIndices(uint8_t p0, uint8_t p1, VU8 first) {
  const hn::Half<DU8> dh;
  return hn::Add(hn::Combine(DU8(), hn::LoadU(dh, kSpread.idx[p1]), hn::LoadU(dh, kSpread.idx[p0])),
                 first);
}

// The 16 kept codes of a block as int8 values.
template <DType kType>
HWY_INLINE hn::Vec<D8> KeptValues(const uint8_t* blk) {
  if constexpr (kType == DType::Q8_0_S24) {
    return hn::LoadU(D8(), reinterpret_cast<const quant::BlockQ8_0_S24*>(blk)->qs);
  } else {
    const hn::Half<DU8> dh;
    const auto q = hn::LoadU(dh, reinterpret_cast<const quant::BlockQ4_0_S24*>(blk)->qs);
    const VU8 codes =
        hn::Combine(DU8(), hn::ShiftRight<4>(q), hn::And(q, hn::Set(dh, uint8_t{15})));
    return hn::Sub(hn::BitCast(D8(), codes), hn::Set(D8(), int8_t{8}));
  }
}

// The dense int8 values of a block, multiplied with the int16 activations: one vector of 32
// int16 lanes on AVX-512 (the 16 kept codes copied into both 128-bit halves, which the
// shuffle reads separately), two of 16 on AVX2, four of 8 on SSE4.
using DW = hn::ScalableTag<int16_t>;
using DW32 = hn::Repartition<int32_t, DW>;
using DWF = hn::Rebind<float, DW32>;

template <class D8x, class V>
HWY_INLINE hn::Vec<DW32> MulAddDense(D8x, V dense, const int16_t* q, hn::Vec<DW32> acc) {
  auto unused = hn::Zero(DW32());
  return hn::ReorderWidenMulAccumulate(DW32(), hn::PromoteTo(DW(), dense), hn::LoadU(DW(), q), acc,
                                       unused);
}

// One weight row times kT tokens: y[t * ld_y] = Σ_i w[i] · a[t][i].
template <DType kType, size_t kT>
void DotRow(const uint8_t* w, size_t n_blocks, const ActRow* a, float* y, size_t ld_y) {
  constexpr size_t kBytes =
      kType == DType::Q8_0_S24 ? sizeof(quant::BlockQ8_0_S24) : sizeof(quant::BlockQ4_0_S24);
  const hn::Half<DU8> dh;
  // 0x80 + 12 keeps bit 7
  const VU8 first_lo = hn::Combine(DU8(), hn::Set(dh, uint8_t{4}), hn::Zero(dh));
  const VU8 first_hi = hn::Combine(DU8(), hn::Set(dh, uint8_t{12}), hn::Set(dh, uint8_t{8}));
  hn::Vec<DWF> facc[2][kT];  // two chains per token: alternate blocks
  for (size_t t = 0; t < kT; ++t) facc[0][t] = facc[1][t] = hn::Zero(DWF());
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = w + b * kBytes;
    const uint8_t* pos = blk + 2;  // after d, in both layouts
    const VU8 kept = hn::BitCast(DU8(), KeptValues<kType>(blk));
    const VU8 idx_lo = SpreadIndices(pos[0], pos[1], first_lo),
              idx_hi = SpreadIndices(pos[2], pos[3], first_hi);
    hn::Vec<DW32> acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = hn::Zero(DW32());
#if HWY_TARGET <= HWY_AVX3
    {
      const hn::Rebind<uint8_t, DW> d8;  // 32 bytes: two 128-bit halves
      const auto dense =
          hn::TableLookupBytesOr0(hn::Combine(d8, kept, kept), hn::Combine(d8, idx_hi, idx_lo));
      const auto v = hn::BitCast(hn::Rebind<int8_t, DW>(), dense);
      for (size_t t = 0; t < kT; ++t) acc[t] = MulAddDense(d8, v, a[t].q + 32 * b, acc[t]);
    }
#elif HWY_TARGET == HWY_AVX2
    {
      const auto lo = hn::BitCast(D8(), hn::TableLookupBytesOr0(kept, idx_lo));
      const auto hi = hn::BitCast(D8(), hn::TableLookupBytesOr0(kept, idx_hi));
      for (size_t t = 0; t < kT; ++t) {
        acc[t] = MulAddDense(D8(), lo, a[t].q + 32 * b, acc[t]);
        acc[t] = MulAddDense(D8(), hi, a[t].q + 32 * b + 16, acc[t]);
      }
    }
#else
    {
      const hn::Half<D8> dh;
      const auto lo = hn::BitCast(D8(), hn::TableLookupBytesOr0(kept, idx_lo));
      const auto hi = hn::BitCast(D8(), hn::TableLookupBytesOr0(kept, idx_hi));
      const hn::Vec<hn::Half<D8> > v[4] = {hn::LowerHalf(dh, lo), hn::UpperHalf(dh, lo),
                                           hn::LowerHalf(dh, hi), hn::UpperHalf(dh, hi)};
      for (size_t t = 0; t < kT; ++t)
        for (size_t k = 0; k < 4; ++k)
          acc[t] = MulAddDense(dh, v[k], a[t].q + 32 * b + 8 * k, acc[t]);
    }
#endif
    const float dw = F16(*reinterpret_cast<const uint16_t*>(blk));
    for (size_t t = 0; t < kT; ++t)
      facc[b & 1][t] =
          hn::MulAdd(hn::ConvertTo(DWF(), acc[t]), hn::Set(DWF(), dw * a[t].d[b]), facc[b & 1][t]);
  }
  for (size_t t = 0; t < kT; ++t)
    y[t * ld_y] = hn::GetLane(hn::SumOfLanes(DWF(), hn::Add(facc[0][t], facc[1][t])));
}

template <DType kType>
void Rows(const uint8_t* w, size_t row_bytes, size_t n_rows, size_t n_blocks, const ActRow* acts,
          size_t n_acts, float* y, size_t ld_y) {
  size_t t = 0;
  for (; t + 4 <= n_acts; t += 4)
    for (size_t r = 0; r < n_rows; ++r)
      DotRow<kType, 4>(w + r * row_bytes, n_blocks, acts + t, y + t * ld_y + r, ld_y);
  for (; t < n_acts; ++t)
    for (size_t r = 0; r < n_rows; ++r)
      DotRow<kType, 1>(w + r * row_bytes, n_blocks, acts + t, y + t * ld_y + r, ld_y);
}

void DotRows2of4(int t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                 const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  if (static_cast<DType>(t) == DType::Q8_0_S24)
    return Rows<DType::Q8_0_S24>(w, row_bytes, n_rows, row_len / 32, acts, n_acts, y, ld_y);
  Rows<DType::Q4_0_S24>(w, row_bytes, n_rows, row_len / 32, acts, n_acts, y, ld_y);
}

#endif  // vector targets

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(DotRows2of4);

void dot_rows_2of4_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                        const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  HWY_DYNAMIC_DISPATCH(DotRows2of4)
  (static_cast<int>(t), w, row_bytes, n_rows, row_len, acts, n_acts, y, ld_y);
}

}  // namespace lowbit::kernels
#endif

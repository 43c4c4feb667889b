// SIMD dot products of quantized weight rows with 8-bit activations (Highway, compiled once
// per instruction set and chosen at run time).
//
// Integer types: a block's values v (block_ints.h) are decoded in registers, N at a time
// (N = 16 int16 lanes on AVX2/AVX-512, 8 on SSE4/NEON), multiplied by the sub-block scale
// in int16 and multiply-added with the int16 activations into int32 lanes (pmaddwd). One f32
// multiply-add per block applies d·d_act; the minimum term uses the activations' 16-value
// sums. Bounds: |v·scale| ≤ 4096 and |q| ≤ 127, so 256 products fit easily in int32.
// Float types: f16/bf16 are widened to f32 in registers.
#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/dot_simd.cpp"
#include "kernels/dot_simd.h"

#include <hwy/cache_control.h>
#include <hwy/foreach_target.h>  // IWYU pragma: keep
#include <hwy/highway.h>

#include <cstddef>
#include <cstring>
#include <type_traits>
#include <vector>

#include "kernels/block_ints.h"
#include "kernels/codebook_decode.h"
#include "kernels/packed_layout.h"
#include "kernels/simd_f16-inl.h"

HWY_BEFORE_NAMESPACE();
namespace lowbit::kernels {
namespace HWY_NAMESPACE {
namespace hn = hwy::HWY_NAMESPACE;

#if HWY_TARGET == HWY_SCALAR || HWY_TARGET == HWY_EMU128

// No vector unit worth the name: the scalar reference.
void DotRows(int t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
             const ActRow& a, float* y) {
  dot_rows_reference(static_cast<DType>(t), w, row_bytes, n_rows, row_len, a, y);
}
void DotRowsMulti(int t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                  const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  for (size_t i = 0; i < n_acts; ++i)
    dot_rows_reference(static_cast<DType>(t), w, row_bytes, n_rows, row_len, acts[i], y + i * ld_y);
}

#else

using D16 = hn::CappedTag<int16_t, 16>;
using D32 = hn::Repartition<int32_t, D16>;
using DF32 = hn::Rebind<float, D32>;
using V16 = hn::Vec<D16>;

// N bytes from p, zero-extended to int16 lanes.
HWY_INLINE V16 LoadBytes(const uint8_t* p) {
  return hn::PromoteTo(D16(), hn::LoadU(hn::Rebind<uint8_t, D16>(), p));
}
HWY_INLINE V16 LowNibbles(V16 v) { return hn::And(v, hn::Set(D16(), 15)); }
HWY_INLINE V16 HighNibbles(V16 v) { return hn::ShiftRight<4>(v); }
HWY_INLINE V16 Bits(V16 v, int shift, int16_t mask) {
  return hn::And(hn::ShiftRightSame(v, shift), hn::Set(D16(), mask));
}

// Decoders that read the block's bytes directly need no preparation per block.
struct InRegisters {
  static void Prepare(const uint8_t*) {}
};

// Decoders: v[e0 .. e0+N) of one block, with e0 a multiple of N inside one sub-block.
struct Q4_1 : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const V16 q = LoadBytes(reinterpret_cast<const quant::BlockQ4_1*>(b)->qs + e % 16);
    return e < 16 ? LowNibbles(q) : HighNibbles(q);
  }
};
// Fifth bit: bit e of the 32-bit qh, spread over the lanes by a per-lane bit mask.
HWY_INLINE V16 FifthBit(const uint8_t* qh, int e) {
  alignas(32) static constexpr uint16_t kLaneBit[16] = {
      1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768};
  uint32_t bits;
  std::memcpy(&bits, qh, 4);
  const D16 d;
  const V16 lane_bit = hn::BitCast(d, hn::Load(hn::Rebind<uint16_t, D16>(), kLaneBit));
  const V16 set = hn::And(hn::Set(d, static_cast<int16_t>(bits >> e)), lane_bit);
  return hn::IfThenElseZero(hn::Ne(set, hn::Zero(d)), hn::Set(d, 16));
}
template <class Block, int kOffset>
struct Q5 : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const auto* blk = reinterpret_cast<const Block*>(b);
    const V16 q = LoadBytes(blk->qs + e % 16);
    return hn::Sub(hn::Or(e < 16 ? LowNibbles(q) : HighNibbles(q), FifthBit(blk->qh, e)),
                   hn::Set(D16(), kOffset));
  }
};
struct Q2_K : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    return Bits(LoadBytes(reinterpret_cast<const quant::BlockQ2_K*>(b)->qs + 32 * h + l), 2 * k, 3);
  }
};
struct TQ2_0 : InRegisters {  // Q2_K's places, v = trit - 1
  static V16 Values(const uint8_t* b, int e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const V16 t =
        Bits(LoadBytes(reinterpret_cast<const quant::BlockTQ2_0*>(b)->qs + 32 * h + l), 2 * k, 3);
    return hn::Sub(t, hn::Set(D16(), 1));
  }
};
// Values 0-239 read trit j of consecutive bytes: ((byte * 3^j) & 255) * 3 >> 8 in int16
// lanes (byte * 81 < 2^15). Values 240-255 interleave four trits of four bytes: scalar.
struct TQ1_0 : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const D16 d;
    if (e >= 240) {
      alignas(32) int16_t v[16];
      for (size_t i = 0; i < hn::Lanes(d); ++i) {
        const int place = e + static_cast<int>(i) - 240;
        v[i] = static_cast<int16_t>(quant::tq1_trit(b[48 + place % 4], place / 4) - 1);
      }
      return hn::Load(d, v);
    }
    static constexpr int16_t kPow3[5] = {1, 3, 9, 27, 81};
    const int j = e < 160 ? e / 32 : (e - 160) / 16;
    const V16 x = LoadBytes(e < 160 ? b + e % 32 : b + 32 + (e - 160) % 16);
    const V16 frac = hn::And(hn::Mul(x, hn::Set(d, kPow3[j])), hn::Set(d, 255));
    return hn::Sub(hn::ShiftRight<8>(hn::Mul(frac, hn::Set(d, 3))), hn::Set(d, 1));
  }
};
struct Q3_K : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const auto* blk = reinterpret_cast<const quant::BlockQ3_K*>(b);
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const V16 low = Bits(LoadBytes(blk->qs + 32 * h + l), 2 * k, 3);
    const V16 high = Bits(LoadBytes(blk->hmask + l), 4 * h + k, 1);
    return hn::Sub(hn::Or(low, hn::ShiftLeft<2>(high)),
                   hn::Set(D16(), 4));  // low - 4 unless the high bit is set
  }
};
struct Q5_K : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const auto* blk = reinterpret_cast<const quant::BlockQ5_K*>(b);
    const V16 q = LoadBytes(blk->qs + 32 * (e / 64) + e % 32);
    const V16 high = Bits(LoadBytes(blk->qh + e % 32), e / 32, 1);
    return hn::Or(e % 64 < 32 ? LowNibbles(q) : HighNibbles(q), hn::ShiftLeft<4>(high));
  }
};

// IQ4_NL and IQ4_XS: 4-bit indices into kIq4nlValues, looked up N at a time by a byte
// shuffle. Each sub-block of 32 has nibble32's layout; its codes start at kQs + 16 (e / 32).
template <size_t kQs>
struct Iq4 : InRegisters {
  static V16 Values(const uint8_t* b, int e) {
    const hn::Rebind<uint8_t, D16> du8;
    const hn::Rebind<int8_t, D16> d8;
    const auto q = hn::LoadU(du8, b + kQs + 16 * (e / 32) + e % 16);
    const auto code = e % 32 < 16 ? hn::And(q, hn::Set(du8, 15)) : hn::ShiftRight<4>(q);
    const auto table = hn::LoadU(hn::Full128<int8_t>(), quant::kIq4nlValues);
    return hn::PromoteTo(D16(), hn::TableLookupBytes(table, hn::BitCast(d8, code)));
  }
};
using Iq4Nl = Iq4<offsetof(quant::BlockIQ4_NL, qs)>;
using Iq4Xs = Iq4<offsetof(quant::BlockIQ4_XS, qs)>;

// The codebook types: Prepare decodes the block's 256 values to int8 lanes eight at a time
// (codebook_decode.h), Values widens N of them.
template <DType kType>
struct CodebookDecoded {
  const uint64_t* entries = codebook_entry_values(kType);
  alignas(64) int8_t v[256];
  void Prepare(const uint8_t* b) { decode_codebook<kType>(b, entries, v); }
  V16 Values(const uint8_t*, int e) const {
    return hn::PromoteTo(D16(), hn::LoadU(hn::Rebind<int8_t, D16>(), v + e));
  }
};
// Weight bytes are requested this far ahead of the block being multiplied: the kernels do
// enough work per byte that the hardware prefetcher alone falls behind. Measured on the
// synthetic 1B model, 2 threads (t/s, three runs each): Q8_0 13.6–14.2 at 4096, 15.1–16.4 at
// 2048, 15.9–17.7 at 3072, 12.9–13.2 at 512; Q4_K_M 18.4–19.5 at 4096, ~20.5 at 2048 and 3072.
// Too far ahead and the lines are evicted (or hold fill buffers) before they are used.
constexpr size_t kPrefetchAhead = 3072;

// One row: Σ over blocks of d·d_act·Σ_s scale_s·(v·q) − dmin·d_act·Σ_s min_s·Σq.
// kBlock values per block; kScaled: the sub-block scales are not all 1.
template <DType kType, class Decoder, int kBlock, bool kScaled>
float DotRow(const uint8_t* w, size_t n_blocks, const ActRow& a) {
  const D16 d16;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  const size_t block_bytes = traits(kType).type_size;
  auto facc = hn::Zero(df);
  double min_sum = 0;
  BlockHeader h;
  Decoder decoder;
  for (size_t b = 0; b < n_blocks; ++b) {
    const uint8_t* blk = w + b * block_bytes;
    const int16_t* q = a.q + b * kBlock;
    for (size_t off = 0; off < block_bytes; off += 64) hwy::Prefetch(blk + kPrefetchAhead + off);
    block_header(kType, blk, h);
    decoder.Prepare(blk);
    auto acc = hn::Zero(d32), unused = hn::Zero(d32);
    for (int s = 0; s < h.n_sub; ++s) {
      const V16 scale = hn::Set(d16, static_cast<int16_t>(h.scale[s]));
      for (int e = s * h.sub; e < (s + 1) * h.sub; e += static_cast<int>(N)) {
        V16 v = decoder.Values(blk, e);
        if (kScaled) v = hn::Mul(v, scale);
        acc = hn::ReorderWidenMulAccumulate(d32, v, hn::LoadU(d16, q + e), acc, unused);
      }
    }
    const float ad = a.d[b];
    facc = hn::MulAdd(hn::ConvertTo(df, acc), hn::Set(df, h.d * ad), facc);
    if (h.has_min) {
      const int32_t* sums = a.sum16 + b * (kBlock / 16);
      int64_t m = 0;
      for (int s = 0; s < h.n_sub; ++s)
        for (int k = 0; k < h.sub / 16; ++k) m += int64_t{h.min[s]} * sums[s * h.sub / 16 + k];
      min_sum += static_cast<double>(h.dmin * ad) * m;
    }
  }
  return hn::GetLane(hn::SumOfLanes(df, facc)) - static_cast<float>(min_sum);
}

// The types of the common presets (Q8_0; Q4_K and Q6_K of Q4_K_M) and Q4_0 get kernels with a
// fixed structure at the full vector width (32 int16 lanes on AVX-512, 16 on AVX2, 8 on
// SSE4): whole 32-value runs per step, no per-value index arithmetic.
using DW = hn::ScalableTag<int16_t>;
using DW32 = hn::Repartition<int32_t, DW>;
using DWF = hn::Rebind<float, DW32>;
using VW = hn::Vec<DW>;
constexpr size_t kW = hn::MaxLanes(DW());

HWY_INLINE VW LoadBytesW(const uint8_t* p) {
  return hn::PromoteTo(DW(), hn::LoadU(hn::Rebind<uint8_t, DW>(), p));
}
HWY_INLINE auto MulAddPairs(VW w, const int16_t* q, hn::Vec<DW32> acc) {
  auto unused = hn::Zero(DW32());
  return hn::ReorderWidenMulAccumulate(DW32(), w, hn::LoadU(DW(), q), acc, unused);
}
// Lanes [0, 16) of a run take scale a, lanes [16, 32) scale b (16-value sub-blocks).
HWY_INLINE VW TwoScales(int a, int b, size_t lane0) {
  if constexpr (kW >= 32) {
    const hn::Half<DW> dh;
    return hn::Combine(DW(), hn::Set(dh, static_cast<int16_t>(b)),
                       hn::Set(dh, static_cast<int16_t>(a)));
  } else {
    return hn::Set(DW(), static_cast<int16_t>(lane0 < 16 ? a : b));
  }
}

// Each kernel multiplies one weight row with kT activation rows (tokens): a weight vector
// is decoded once and multiply-added with every token's codes, so prompt processing decodes
// each row kT times less often. y[t * ld_y] receives token t's sum.
template <size_t kT>
void DotRowQ8_0(const uint8_t* w, size_t n_blocks, const ActRow* a, float* y, size_t ld_y) {
  const DW32 d32;
  const DWF df;
  hn::Vec<DWF> facc[2][kT];  // two chains per token: alternate blocks (latency with kT = 1)
  for (size_t t = 0; t < kT; ++t) facc[0][t] = facc[1][t] = hn::Zero(df);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto* blk = reinterpret_cast<const quant::BlockQ8_0*>(w) + b;
    if (b % 2 == 0) {  // two blocks are 68 bytes: one line, sometimes the start of the next
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(blk) + kPrefetchAhead);
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(blk) + kPrefetchAhead + 64);
    }
    hn::Vec<DW32> acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = hn::Zero(d32);
    for (size_t j = 0; j < 32; j += kW) {
      const VW v = hn::PromoteTo(DW(), hn::LoadU(hn::Rebind<int8_t, DW>(), blk->qs + j));
      for (size_t t = 0; t < kT; ++t) acc[t] = MulAddPairs(v, a[t].q + 32 * b + j, acc[t]);
    }
    const float dw = F16(blk->d);
    for (size_t t = 0; t < kT; ++t)
      facc[b & 1][t] =
          hn::MulAdd(hn::ConvertTo(df, acc[t]), hn::Set(df, dw * a[t].d[b]), facc[b & 1][t]);
  }
  for (size_t t = 0; t < kT; ++t)
    y[t * ld_y] = hn::GetLane(hn::SumOfLanes(df, hn::Add(facc[0][t], facc[1][t])));
}

// Q4_0 (the W4A4 weights): 16 bytes per block, low nibbles values 0–15, high nibbles 16–31,
// v = nibble − 8. With 32 lanes one run is both halves of the bytes; otherwise a run is one
// half (kW = 16) or part of it (8).
template <size_t kT>
void DotRowQ4_0(const uint8_t* w, size_t n_blocks, const ActRow* a, float* y, size_t ld_y) {
  static_assert(kW <= 32);
  const DW32 d32;
  const DWF df;
  const VW eight = hn::Set(DW(), 8);
  hn::Vec<DWF> facc[2][kT];  // two chains per token, as Q8_0
  for (size_t t = 0; t < kT; ++t) facc[0][t] = facc[1][t] = hn::Zero(df);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto* blk = reinterpret_cast<const quant::BlockQ4_0*>(w) + b;
    if (b % 4 == 0) hwy::Prefetch(reinterpret_cast<const uint8_t*>(blk) + kPrefetchAhead);
    hn::Vec<DW32> acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = hn::Zero(d32);
    for (size_t j = 0; j < 32; j += kW) {
      VW v;
      if constexpr (kW == 32) {
        const hn::Half<DW> dh;
        const auto bytes =
            hn::PromoteTo(dh, hn::LoadU(hn::Rebind<uint8_t, decltype(dh)>(), blk->qs));
        const auto low = hn::And(bytes, hn::Set(dh, 15));
        v = hn::Combine(DW(), hn::ShiftRight<4>(bytes), low);
      } else {
        const VW bytes = LoadBytesW(blk->qs + j % 16);
        v = j < 16 ? hn::And(bytes, hn::Set(DW(), 15)) : hn::ShiftRight<4>(bytes);
      }
      v = hn::Sub(v, eight);
      for (size_t t = 0; t < kT; ++t) acc[t] = MulAddPairs(v, a[t].q + 32 * b + j, acc[t]);
    }
    const float dw = F16(blk->d);
    for (size_t t = 0; t < kT; ++t)
      facc[b & 1][t] =
          hn::MulAdd(hn::ConvertTo(df, acc[t]), hn::Set(df, dw * a[t].d[b]), facc[b & 1][t]);
  }
  for (size_t t = 0; t < kT; ++t)
    y[t * ld_y] = hn::GetLane(hn::SumOfLanes(df, hn::Add(facc[0][t], facc[1][t])));
}

// The minimum term of Q4_K, −dmin·d_act·Σ_j min_j·Σq(sub-block j), is kept in f32 lanes:
// the activations' 16 sums of 16 times each sub-block's min (spread over its two sums),
// converted and multiply-added per block, reduced once per row.
using DM = hn::CappedTag<int32_t, 16>;
using DMF = hn::Rebind<float, DM>;

template <size_t kT>
void DotRowQ4_K(const uint8_t* w, size_t n_blocks, const ActRow* a, float* y, size_t ld_y) {
  const DW32 d32;
  const DWF df;
  const DM dm;
  const DMF dmf;
  const size_t NM = hn::Lanes(dm);
  const VW low4 = hn::Set(DW(), 15);
  hn::Vec<DWF> facc[kT];
  hn::Vec<DMF> fmin[kT];
  for (size_t t = 0; t < kT; ++t) facc[t] = hn::Zero(df), fmin[t] = hn::Zero(dmf);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto* blk = reinterpret_cast<const quant::BlockQ4_K*>(w) + b;
    for (size_t off = 0; off < sizeof(*blk); off += 64)
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(blk) + kPrefetchAhead + off);
    int sc[8];
    alignas(64) int32_t mn16[16];  // min of sub-block j at 2j and 2j + 1
    for (int j = 0; j < 8; ++j) {
      int mn;
      quant::unpack_scale_min_k4(j, blk->scales, &sc[j], &mn);
      mn16[2 * j] = mn16[2 * j + 1] = mn;
    }
    hn::Vec<DW32> acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = hn::Zero(d32);
    for (int g = 0; g < 4; ++g) {  // 64 values: low nibbles are sub-block 2g, high nibbles 2g+1
      const VW s_lo = hn::Set(DW(), static_cast<int16_t>(sc[2 * g])),
               s_hi = hn::Set(DW(), static_cast<int16_t>(sc[2 * g + 1]));
      for (size_t j = 0; j < 32; j += kW) {
        const VW codes = LoadBytesW(blk->qs + 32 * g + j);
        const VW lo = hn::Mul(hn::And(codes, low4), s_lo),
                 hi = hn::Mul(hn::ShiftRight<4>(codes), s_hi);
        for (size_t t = 0; t < kT; ++t) {
          const int16_t* q = a[t].q + 256 * b + 64 * g + j;
          acc[t] = MulAddPairs(hi, q + 32, MulAddPairs(lo, q, acc[t]));
        }
      }
    }
    const float dw = F16(blk->d), dmin = F16(blk->dmin);
    for (size_t t = 0; t < kT; ++t) {
      const float ad = a[t].d[b];
      facc[t] = hn::MulAdd(hn::ConvertTo(df, acc[t]), hn::Set(df, dw * ad), facc[t]);
      const auto dm_ad = hn::Set(dmf, dmin * ad);
      for (size_t k = 0; k < 16; k += NM) {
        const auto m = hn::Mul(hn::LoadU(dm, a[t].sum16 + 16 * b + k), hn::Load(dm, mn16 + k));
        fmin[t] = hn::MulAdd(hn::ConvertTo(dmf, m), dm_ad, fmin[t]);
      }
    }
  }
  for (size_t t = 0; t < kT; ++t)
    y[t * ld_y] =
        hn::GetLane(hn::SumOfLanes(df, facc[t])) - hn::GetLane(hn::SumOfLanes(dmf, fmin[t]));
}

template <size_t kT>
void DotRowQ6_K(const uint8_t* w, size_t n_blocks, const ActRow* a, float* y, size_t ld_y) {
  const DW32 d32;
  const DWF df;
  const VW low4 = hn::Set(DW(), 15), two = hn::Set(DW(), 3), offset = hn::Set(DW(), 32);
  hn::Vec<DWF> facc[kT];
  for (size_t t = 0; t < kT; ++t) facc[t] = hn::Zero(df);
  for (size_t b = 0; b < n_blocks; ++b) {
    const auto* blk = reinterpret_cast<const quant::BlockQ6_K*>(w) + b;
    for (size_t off = 0; off < sizeof(*blk); off += 64)
      hwy::Prefetch(reinterpret_cast<const uint8_t*>(blk) + kPrefetchAhead + off);
    hn::Vec<DW32> acc[kT];
    for (size_t t = 0; t < kT; ++t) acc[t] = hn::Zero(d32);
    for (int h = 0; h < 2; ++h)      // values 128h + 32k + l
      for (int k = 0; k < 4; ++k) {  // 32 values, sub-blocks 8h + 2k and 8h + 2k + 1
        const int sub = 8 * h + 2 * k;
        for (size_t j = 0; j < 32; j += kW) {
          const VW ql = LoadBytesW(blk->ql + 64 * h + 32 * (k & 1) + j);
          const VW lo = k < 2 ? hn::And(ql, low4) : hn::ShiftRight<4>(ql);
          const VW hi = hn::And(hn::ShiftRightSame(LoadBytesW(blk->qh + 32 * h + j), 2 * k), two);
          const VW v = hn::Mul(hn::Sub(hn::Or(lo, hn::ShiftLeft<4>(hi)), offset),
                               TwoScales(blk->scales[sub], blk->scales[sub + 1], j));
          for (size_t t = 0; t < kT; ++t)
            acc[t] = MulAddPairs(v, a[t].q + 256 * b + 128 * h + 32 * k + j, acc[t]);
        }
      }
    const float dw = F16(blk->d);
    for (size_t t = 0; t < kT; ++t)
      facc[t] = hn::MulAdd(hn::ConvertTo(df, acc[t]), hn::Set(df, dw * a[t].d[b]), facc[t]);
  }
  for (size_t t = 0; t < kT; ++t) y[t * ld_y] = hn::GetLane(hn::SumOfLanes(df, facc[t]));
}

// Rows [0, n_rows) times tokens [0, n_acts): tokens four at a time, the rows of the tile
// inside (a tile of weight rows stays in L1/L2 while each group of four tokens passes).
template <void (*kRow1)(const uint8_t*, size_t, const ActRow*, float*, size_t),
          void (*kRow4)(const uint8_t*, size_t, const ActRow*, float*, size_t)>
void MultiRows(const uint8_t* w, size_t row_bytes, size_t n_rows, size_t n_blocks,
               const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  size_t t = 0;
  for (; t + 4 <= n_acts; t += 4)
    for (size_t r = 0; r < n_rows; ++r)
      kRow4(w + r * row_bytes, n_blocks, acts + t, y + t * ld_y + r, ld_y);
  for (; t < n_acts; ++t)
    for (size_t r = 0; r < n_rows; ++r)
      kRow1(w + r * row_bytes, n_blocks, acts + t, y + t * ld_y + r, ld_y);
}

// f32 / f16 / bf16 weights times f32 activations, the tail in scalar code.
template <class T>
float DotRowFloat(const T* w, size_t n, const float* x) {
  const hn::ScalableTag<float> df;
  const hn::Rebind<T, decltype(df)> dw;
  const size_t N = hn::Lanes(df);
  auto acc0 = hn::Zero(df), acc1 = hn::Zero(df);
  size_t i = 0;
  auto load = [&](size_t at) {
    if constexpr (std::is_same_v<T, float>) return hn::LoadU(df, w + at);
    else return hn::PromoteTo(df, hn::LoadU(dw, w + at));
  };
  for (; i + 2 * N <= n; i += 2 * N) {
    acc0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), acc0);
    acc1 = hn::MulAdd(load(i + N), hn::LoadU(df, x + i + N), acc1);
  }
  for (; i + N <= n; i += N) acc0 = hn::MulAdd(load(i), hn::LoadU(df, x + i), acc0);
  float s = hn::GetLane(hn::SumOfLanes(df, hn::Add(acc0, acc1)));
  for (; i < n; ++i) {
    if constexpr (std::is_same_v<T, float>) s += w[i] * x[i];
    else if constexpr (std::is_same_v<T, hwy::float16_t>)
      s += f16_to_f32(reinterpret_cast<const uint16_t*>(w)[i]) * x[i];
    else s += bf16_to_f32(reinterpret_cast<const uint16_t*>(w)[i]) * x[i];
  }
  return s;
}

// Table-decoded types (no min), several tokens: each row's blocks are decoded once, scaled
// by their sub-block scales, and multiplied with every token; the sums are DotRow's, in the
// same order. (Decoding per token made a batch of 512 on IQ2_M ~30x slower than fp32.)
template <DType kType, class Decoder, int kBlock>
void TableRowsMulti(const uint8_t* w, size_t row_bytes, size_t n_rows, size_t n_blocks,
                    const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  const D16 d16;
  const D32 d32;
  const DF32 df;
  const size_t N = hn::Lanes(d16);
  const size_t block_bytes = traits(kType).type_size;
  thread_local std::vector<int16_t> v;  // [n_blocks * kBlock] scaled values of one row
  thread_local std::vector<float> dw;   // [n_blocks] each block's d
  v.resize(n_blocks * kBlock);
  dw.resize(n_blocks);
  BlockHeader h;
  Decoder decoder;
  for (size_t r = 0; r < n_rows; ++r) {
    for (size_t b = 0; b < n_blocks; ++b) {
      const uint8_t* blk = w + r * row_bytes + b * block_bytes;
      block_header(kType, blk, h);
      decoder.Prepare(blk);
      int16_t* vb = v.data() + b * kBlock;
      for (int e = 0; e < kBlock; e += static_cast<int>(N)) {
        const V16 scale = hn::Set(d16, static_cast<int16_t>(h.scale[e / h.sub]));
        hn::StoreU(hn::Mul(decoder.Values(blk, e), scale), d16, vb + e);
      }
      dw[b] = h.d;
    }
    for (size_t t = 0; t < n_acts; ++t) {
      auto facc = hn::Zero(df);
      for (size_t b = 0; b < n_blocks; ++b) {
        const int16_t* vb = v.data() + b * kBlock;
        const int16_t* q = acts[t].q + b * kBlock;
        auto acc = hn::Zero(d32), unused = hn::Zero(d32);
        for (int e = 0; e < kBlock; e += static_cast<int>(N))
          acc = hn::ReorderWidenMulAccumulate(d32, hn::LoadU(d16, vb + e), hn::LoadU(d16, q + e),
                                              acc, unused);
        facc = hn::MulAdd(hn::ConvertTo(df, acc), hn::Set(df, dw[b] * acts[t].d[b]), facc);
      }
      y[t * ld_y + r] = hn::GetLane(hn::SumOfLanes(df, facc));
    }
  }
}

template <class Fn>
void ForRows(const uint8_t* w, size_t row_bytes, size_t n_rows, float* y, Fn fn) {
  for (size_t r = 0; r < n_rows; ++r) y[r] = fn(w + r * row_bytes);
}

void DotRows(int type, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
             const ActRow& a, float* y) {
  const DType t = static_cast<DType>(type);
  const size_t nb32 = row_len / 32, nb256 = row_len / 256;
  switch (t) {
    case DType::F32:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRowFloat(reinterpret_cast<const float*>(r), row_len, a.x);
      });
    case DType::F16:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRowFloat(reinterpret_cast<const hwy::float16_t*>(r), row_len, a.x);
      });
    case DType::BF16:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRowFloat(reinterpret_cast<const hwy::bfloat16_t*>(r), row_len, a.x);
      });
    case DType::Q4_0:
      return MultiRows<DotRowQ4_0<1>, DotRowQ4_0<4> >(w, row_bytes, n_rows, nb32, &a, 1, y, 0);
    case DType::Q4_1:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q4_1, Q4_1, 32, false>(r, nb32, a);
      });
    case DType::Q5_0:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q5_0, Q5<quant::BlockQ5_0, 16>, 32, false>(r, nb32, a);
      });
    case DType::Q5_1:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q5_1, Q5<quant::BlockQ5_1, 0>, 32, false>(r, nb32, a);
      });
    case DType::Q8_0:
      return MultiRows<DotRowQ8_0<1>, DotRowQ8_0<4> >(w, row_bytes, n_rows, nb32, &a, 1, y, 0);
    case DType::IQ4_NL:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::IQ4_NL, Iq4Nl, 32, false>(r, nb32, a);
      });
    case DType::Q2_K:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q2_K, Q2_K, 256, true>(r, nb256, a);
      });
    case DType::Q3_K:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q3_K, Q3_K, 256, true>(r, nb256, a);
      });
    case DType::Q4_K:
      return MultiRows<DotRowQ4_K<1>, DotRowQ4_K<4> >(w, row_bytes, n_rows, nb256, &a, 1, y, 0);
    case DType::Q5_K:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::Q5_K, Q5_K, 256, true>(r, nb256, a);
      });
    case DType::Q6_K:
      return MultiRows<DotRowQ6_K<1>, DotRowQ6_K<4> >(w, row_bytes, n_rows, nb256, &a, 1, y, 0);
    case DType::IQ4_XS:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::IQ4_XS, Iq4Xs, 256, true>(r, nb256, a);
      });
#define LOWBIT_TABLE_ROWS(T)                                                      \
  case DType::T:                                                                  \
    return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {               \
      return DotRow<DType::T, CodebookDecoded<DType::T>, 256, true>(r, nb256, a); \
    });
      LOWBIT_CODEBOOK_TYPES(LOWBIT_TABLE_ROWS)
#undef LOWBIT_TABLE_ROWS
    case DType::TQ1_0:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::TQ1_0, TQ1_0, 256, false>(r, nb256, a);
      });
    case DType::TQ2_0:
      return ForRows(w, row_bytes, n_rows, y, [&](const uint8_t* r) {
        return DotRow<DType::TQ2_0, TQ2_0, 256, false>(r, nb256, a);
      });
    default: return dot_rows_reference(t, w, row_bytes, n_rows, row_len, a, y);
  }
}

// Several tokens: the multi-token kernels where a type has them, else one token at a time.
void DotRowsMulti(int type, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                  const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  switch (static_cast<DType>(type)) {
    case DType::Q8_0:
      return MultiRows<DotRowQ8_0<1>, DotRowQ8_0<4> >(w, row_bytes, n_rows, row_len / 32, acts,
                                                      n_acts, y, ld_y);
    case DType::Q4_0:
      return MultiRows<DotRowQ4_0<1>, DotRowQ4_0<4> >(w, row_bytes, n_rows, row_len / 32, acts,
                                                      n_acts, y, ld_y);
    case DType::Q4_K:
      return MultiRows<DotRowQ4_K<1>, DotRowQ4_K<4> >(w, row_bytes, n_rows, row_len / 256, acts,
                                                      n_acts, y, ld_y);
    case DType::Q6_K:
      return MultiRows<DotRowQ6_K<1>, DotRowQ6_K<4> >(w, row_bytes, n_rows, row_len / 256, acts,
                                                      n_acts, y, ld_y);
    case DType::IQ4_NL:
      return TableRowsMulti<DType::IQ4_NL, Iq4Nl, 32>(w, row_bytes, n_rows, row_len / 32, acts,
                                                      n_acts, y, ld_y);
    case DType::IQ4_XS:
      return TableRowsMulti<DType::IQ4_XS, Iq4Xs, 256>(w, row_bytes, n_rows, row_len / 256, acts,
                                                       n_acts, y, ld_y);
#define LOWBIT_CODEBOOK_MULTI(T)                                     \
  case DType::T:                                                     \
    return TableRowsMulti<DType::T, CodebookDecoded<DType::T>, 256>( \
        w, row_bytes, n_rows, row_len / 256, acts, n_acts, y, ld_y);
      LOWBIT_CODEBOOK_TYPES(LOWBIT_CODEBOOK_MULTI)
#undef LOWBIT_CODEBOOK_MULTI
    default:
      for (size_t t = 0; t < n_acts; ++t)
        DotRows(type, w, row_bytes, n_rows, row_len, acts[t], y + t * ld_y);
  }
}

#endif  // vector targets

const char* TargetName() { return hwy::TargetName(HWY_TARGET); }

}  // namespace HWY_NAMESPACE
}  // namespace lowbit::kernels
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace lowbit::kernels {

HWY_EXPORT(DotRows);
HWY_EXPORT(DotRowsMulti);
HWY_EXPORT(TargetName);

void dot_rows_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                   const ActRow& a, float* y) {
  HWY_DYNAMIC_DISPATCH(DotRows)(static_cast<int>(t), w, row_bytes, n_rows, row_len, a, y);
}

void dot_rows_multi_simd(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                         const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  HWY_DYNAMIC_DISPATCH(DotRowsMulti)
  (static_cast<int>(t), w, row_bytes, n_rows, row_len, acts, n_acts, y, ld_y);
}

std::string simd_target_name() { return HWY_DYNAMIC_DISPATCH(TargetName)(); }

std::vector<int64_t> available_isas() { return hwy::SupportedAndGeneratedTargets(); }
std::string isa_name(int64_t isa) { return hwy::TargetName(isa); }
void restrict_isa(int64_t isa) {
  hwy::SetSupportedTargetsForTest(isa);
  refresh_packed_dispatch();
}

}  // namespace lowbit::kernels
#endif

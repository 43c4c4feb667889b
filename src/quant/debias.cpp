// Removing the shrink of least-squares rounding (debias.h).
#include "quant/debias.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <vector>

#include "core/blas.h"
#include "core/parallel.h"
#include "lowbit/dtype.h"
#include "lowbit/float_convert.h"
#include "quant/affine_grids.h"
#include "quant/block_layouts.h"

namespace lowbit::quant {
namespace {

// The f16 values next to v: lo <= v <= hi (equal when v is representable).
void f16_neighbours(float v, uint16_t* lo, uint16_t* hi) {
  const uint16_t h = f32_to_f16(v), mag = h & 0x7fff;
  *lo = *hi = h;
  for (int step : {-1, 1}) {
    if (mag == 0 && step < 0) continue;
    const uint16_t n = static_cast<uint16_t>((h & 0x8000) | (mag + step));
    const float fn = f16_to_f32(n), fl = f16_to_f32(*lo), fh = f16_to_f32(*hi);
    if (fn <= v && (fl > v || fn > fl)) *lo = n;
    if (fn >= v && (fh < v || fn < fh)) *hi = n;
  }
}

uint16_t load_f16(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h;
}
void store_f16(uint8_t* p, uint16_t h) {
  std::memcpy(p, &h, 2);
}

// dmin / d of a two-field block when that ratio is a power of two (a zero-holding grid,
// affine_grids.h), else 0.
float zero_keeping_ratio(const BlockCodec& codec, const uint8_t* blk) {
  const float d = f16_to_f32(load_f16(blk + codec.f16_scales[0]));
  const float dmin = f16_to_f32(load_f16(blk + codec.f16_scales[1]));
  int e = 0;
  return d != 0 && std::frexp(dmin / d, &e) == 0.5f ? dmin / d : 0;
}

}  // namespace

void debias_row(const BlockCodec& codec, const float* x, const float* mx, uint64_t row_len,
                uint8_t* q, bool zero_grids) {
  const auto& tr = traits(codec.type);
  const uint64_t n_blocks = row_len / tr.block_size, len = tr.block_size;
  const int n_fields = codec.f16_scales[1] < 0 ? 1 : 2;
  // part[b][i] = sum over block b of mx * (the block decoded with field i = 1, the other 0),
  // so that the block's sum mx y is linear in its fields: sum_i field_i * part[b][i].
  std::vector<std::array<double, 2>> part(n_blocks);
  double xx = 0, xy = 0;
  std::vector<uint8_t> probe(tr.type_size);
  float scratch[kQKK];
  for (uint64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = q + b * tr.type_size;
    std::memcpy(probe.data(), blk, tr.type_size);
    for (int i = 0; i < n_fields; ++i) {
      for (int k = 0; k < n_fields; ++k)
        store_f16(&probe[codec.f16_scales[k]], k == i ? 0x3c00 : 0);
      codec.dequantize(probe.data(), scratch);
      double p = 0;
      for (uint64_t e = 0; e < len; ++e) p += double(mx[b * len + e]) * scratch[e];
      part[b][i] = p;
      xy += f16_to_f32(load_f16(blk + codec.f16_scales[i])) * p;
    }
    for (uint64_t e = 0; e < len; ++e) xx += double(mx[b * len + e]) * x[b * len + e];
  }
  if (!(xx > 0 && xy > 0)) return;
  const double r = std::clamp(xx / xy, kMaxDebias[0], kMaxDebias[1]);
  // Each block's fields times r, rounded up or down in f16 so that the row's running sum
  // mx y stays closest to r times the original: the rounding errors do not add up.
  double drift = 0;  // achieved - wanted, over the blocks done
  for (uint64_t b = 0; b < n_blocks; ++b) {
    uint8_t* blk = q + b * tr.type_size;
    double now = 0;
    uint16_t cand[2][2];
    bool finite = true;
    for (int i = 0; i < n_fields; ++i) {
      const float v = f16_to_f32(load_f16(blk + codec.f16_scales[i]));
      now += v * part[b][i];
      f16_neighbours(static_cast<float>(v * r), &cand[i][0], &cand[i][1]);
      finite =
          finite && std::isfinite(f16_to_f32(cand[i][1])) && std::isfinite(f16_to_f32(cand[i][0]));
    }
    const double want = r * now;
    if (!finite) {
      drift += now - want;
      continue;
    }
    // A block whose grid holds 0 through dmin = 2^e d (affine_grids.h) keeps that ratio, so
    // its zeros stay exactly 0: dmin's candidates follow d's.
    const bool holds_zero = zero_grids || has_exact_zero(x + b * len, static_cast<int>(len));
    const float ratio = n_fields == 2 && holds_zero ? zero_keeping_ratio(codec, blk) : 0;
    if (ratio != 0)
      for (int c = 0; c < 2; ++c) cand[1][c] = f32_to_f16(f16_to_f32(cand[0][c]) * ratio);
    double best = INFINITY;
    int pick = 0;
    for (int c = 0; c < (1 << n_fields); ++c) {
      if (ratio != 0 && (c & 1) != (c >> 1)) continue;
      double got = 0;
      for (int i = 0; i < n_fields; ++i) got += f16_to_f32(cand[i][(c >> i) & 1]) * part[b][i];
      if (std::fabs(drift + got - want) < best) best = std::fabs(drift + got - want), pick = c;
    }
    double got = 0;
    for (int i = 0; i < n_fields; ++i) {
      const uint16_t h = cand[i][(pick >> i) & 1];
      store_f16(blk + codec.f16_scales[i], h);
      got += f16_to_f32(h) * part[b][i];
    }
    drift += got - want;
  }
}

void debias_rows_output(DType type, const float* w, uint64_t rows, uint64_t cols, const float* h,
                        int n_threads, uint8_t* q, bool zero_grids) {
  const BlockCodec* codec = block_codec(type);
  if (!codec || !codec->debias) return;
  std::vector<float> wh(rows * cols);  // row r: h w_r (h is symmetric)
  blas::sgemm(resolve_threads(n_threads), CblasNoTrans, CblasNoTrans, rows, cols, cols, 1.0f, w,
              cols, h, cols, 0.0f, wh.data(), cols);
  const uint64_t row_bytes = cols / traits(type).block_size * traits(type).type_size;
  parallel_for(rows, resolve_threads(n_threads), [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r)
      debias_row(*codec, w + r * cols, &wh[r * cols], cols, q + r * row_bytes, zero_grids);
  });
}

}  // namespace lowbit::quant

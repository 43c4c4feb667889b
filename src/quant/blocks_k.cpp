// The 256-value "K" super-block types: Q2_K, Q3_K, Q4_K, Q5_K, Q6_K and IQ4_XS.
// A super-block holds 8 or 16 sub-blocks, each with its own small integer scale (and min)
// multiplied by one f16 super-scale. Quantization:
//   1. fit float parameters per sub-block (scale_fit.h);
//   2. try a few super-scales near max/range, and for each sub-block the integer scales
//      next to the rounded one, keeping the combination with the lowest weighted error;
//   3. report the grid of the stored parameters (block_codecs.h), on which values are rounded.
// Step 2 is where this differs from a plain "round the scales" quantizer: the integer
// scales are chosen by the error they cause, not by their distance to the float scale.
// The search of the types with a min (Q2_K, Q4_K, Q5_K) lives in affine_grids.cpp, beside
// their grids that hold 0 for pruned weights.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "lowbit/float_convert.h"
#include "quant/affine_grids.h"
#include "quant/block_codecs.h"
#include "quant/block_layouts.h"
#include "quant/scale_fit.h"

namespace lowbit::quant {
namespace {

float f16_round(float f) { return f16_to_f32(f32_to_f16(f)); }
const float* sub(const float* w, int off) { return w ? w + off : nullptr; }

// The grid of the chosen affine parameters: value = (d*sc)*code - dmin*mn, codes [0, qmax].
void affine_grid(const AffineK& p, int n_sub, int len, int qmax, BlockGrid* g) {
  g->n_codes = qmax + 1;
  for (int j = 0; j < n_sub; ++j)
    for (int i = 0; i < len; ++i) {
      g->scale[j * len + i] = p.d * p.sc[j];
      g->offset[j * len + i] = -(p.dmin * p.mn[j]);
    }
}

// --- symmetric sub-blocks (Q3_K, Q6_K, IQ4_XS): value = d*sc*level(q) ---
// `table` null means integer levels qmin..qmax; otherwise non-uniform levels.
struct SymmetricK {
  float d = 0;
  int sc[16] = {};
};

struct SymSpec {
  int n_sub, len, qmin, qmax;  // code range (ignored with a table)
  int smin, smax;              // integer sub-block scale range
  const int8_t* table;
};

float sub_error(const SymSpec& p, const float* x, const float* w, float scale) {
  return p.table ? error_table(x, w, p.len, scale, p.table, 16)
                 : error_symmetric(x, w, p.len, scale, p.qmin, p.qmax);
}

SymmetricK choose_symmetric_k(const float* x, const float* w, const SymSpec& p) {
  float s[16] = {};
  int imax = 0;
  for (int j = 0; j < p.n_sub; ++j) {
    s[j] = p.table ? fit_table(x + j * p.len, sub(w, j * p.len), p.len, p.table, 16)
                   : fit_symmetric(x + j * p.len, sub(w, j * p.len), p.len, p.qmin, p.qmax);
    if (std::fabs(s[j]) > std::fabs(s[imax])) imax = j;
  }
  SymmetricK best;
  if (s[imax] == 0) return best;
  float best_err = INFINITY;
  auto evaluate = [&](float d) {
    SymmetricK cand;
    cand.d = f16_round(d);
    if (cand.d == 0) return;
    float err = 0;
    for (int j = 0; j < p.n_sub; ++j) {
      const int r = round_clamp(s[j] / cand.d, p.smin, p.smax);
      float ej = INFINITY;
      for (int a = std::max(r - 1, p.smin); a <= std::min(r + 1, p.smax); ++a) {
        const float e = sub_error(p, x + j * p.len, sub(w, j * p.len), cand.d * a);
        if (e < ej) { ej = e; cand.sc[j] = a; }
      }
      err += ej;
    }
    if (err < best_err) { best_err = err; best = cand; }
  };
  // The largest sub-block scale lands on the negative end (one more level) or the positive end.
  for (float f : kSuperScaleFactors) evaluate(s[imax] / p.smin * f);
  evaluate(s[imax] / p.smax);
  return best;
}

// The grid of the chosen symmetric parameters: value = (d*sc)*level, codes [0, qmax-qmin]
// standing for levels qmin..qmax, or table indexes.
void symmetric_grid(const SymmetricK& k, const SymSpec& p, BlockGrid* g) {
  g->n_codes = p.table ? 16 : p.qmax - p.qmin + 1;
  g->level_bias = p.table ? 0 : -p.qmin;
  g->table = p.table;
  for (int j = 0; j < p.n_sub; ++j)
    for (int i = 0; i < p.len; ++i) {
      g->scale[j * p.len + i] = k.d * k.sc[j];
      g->offset[j * p.len + i] = 0;
    }
}

// Q4_K/Q5_K: eight 6-bit scales and mins in 12 bytes. Scales/mins 0-3 use the low 6 bits
// of bytes 0-3 / 4-7; 4-7 keep their low nibbles in bytes 8-11 and their top 2 bits in the
// spare top bits of bytes 0-3 (scales) / 4-7 (mins).
void pack_scale_min_k4(const int* sc, const int* mn, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int j = 0; j < 4; ++j) {
    q[j] = static_cast<uint8_t>(sc[j]);
    q[j + 4] = static_cast<uint8_t>(mn[j]);
  }
  for (int j = 4; j < 8; ++j) {
    q[j + 4] = static_cast<uint8_t>((sc[j] & 15) | ((mn[j] & 15) << 4));
    q[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
    q[j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
  }
}

// Q3_K: sixteen 6-bit values (scale + 32). Low nibbles: values 0-7 in the low nibbles of
// bytes 0-7, values 8-15 in their high nibbles. Top 2 bits of value i: byte 8 + i%4, bit 2*(i/4).
void pack_scales_q3k(const int* sc, uint8_t* q) {
  std::memset(q, 0, 12);
  for (int i = 0; i < 16; ++i) {
    const int v = sc[i] + 32;
    q[i % 8] |= static_cast<uint8_t>((v & 15) << (i < 8 ? 0 : 4));
    q[8 + i % 4] |= static_cast<uint8_t>((v >> 4) << (2 * (i / 4)));
  }
}

constexpr SymSpec kQ3K{16, 16, -4, 3, -32, 31, nullptr};
constexpr SymSpec kQ6K{16, 16, -32, 31, -128, 127, nullptr};
constexpr SymSpec kIQ4XS{8, 32, 0, 0, -32, 31, kIq4nlValues};

}  // namespace

namespace {
void store_q2_k(const float* x, const float* w, bool zero, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ2_K*>(out);
  const AffineK p =
      zero ? choose_affine_k_with_zero(x, w, 16, 16, 3, 15) : choose_affine_k(x, w, 16, 16, 3, 15);
  affine_grid(p, 16, 16, 3, g);
  b->d = f32_to_f16(p.d);
  b->dmin = f32_to_f16(p.dmin);
  for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<uint8_t>(p.sc[j] | (p.mn[j] << 4));
}
}  // namespace

void choose_q2_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  store_q2_k(x, w, has_exact_zero(x, kQKK), out, g);
}
void choose_zero_q2_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  store_q2_k(x, w, true, out, g);
}
void set_codes_q2_k(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ2_K*>(out);
  std::memset(b->qs, 0, sizeof b->qs);
  for (int e = 0; e < kQKK; ++e) put_code2(b->qs, e, codes[e]);
}
void dequantize_q2_k(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ2_K*>(in);
  const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
  for (int e = 0; e < kQKK; ++e) {
    const int q = code2_at(b->qs, e);
    const uint8_t s = b->scales[e / 16];
    y[e] = d * (s & 15) * q - dmin * (s >> 4);
  }
}

void choose_q3_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ3_K*>(out);
  const SymmetricK p = choose_symmetric_k(x, w, kQ3K);
  symmetric_grid(p, kQ3K, g);
  b->d = f32_to_f16(p.d);
  pack_scales_q3k(p.sc, b->scales);
}
void set_codes_q3_k(const int* codes, uint8_t* out) {  // codes 0..7 = level + 4
  auto* b = reinterpret_cast<BlockQ3_K*>(out);
  std::memset(b->qs, 0, sizeof b->qs);
  std::memset(b->hmask, 0, sizeof b->hmask);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    b->qs[32 * h + l] |= static_cast<uint8_t>((codes[e] & 3) << (2 * k));
    if (codes[e] >= 4) b->hmask[l] |= static_cast<uint8_t>(1 << (4 * h + k));
  }
}
void dequantize_q3_k(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ3_K*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const int low = (b->qs[32 * h + l] >> (2 * k)) & 3;
    const int q = low - ((b->hmask[l] >> (4 * h + k)) & 1 ? 0 : 4);
    y[e] = d * unpack_scale_q3k(b->scales, e / 16) * q;
  }
}

// Q4_K and Q5_K share the parameter search, the 12-byte scale packing and the nibble
// layout; Q5_K adds the fifth bits in qh.
template <typename Block>
void choose_k4_family(const float* x, const float* w, int qmax, bool zero, Block* b, BlockGrid* g) {
  const AffineK p = zero ? choose_affine_k_with_zero(x, w, 8, 32, qmax, 63)
                         : choose_affine_k(x, w, 8, 32, qmax, 63);
  affine_grid(p, 8, 32, qmax, g);
  b->d = f32_to_f16(p.d);
  b->dmin = f32_to_f16(p.dmin);
  pack_scale_min_k4(p.sc, p.mn, b->scales);
}
void pack_low_nibbles_k4(const int* codes, uint8_t* qs) {
  for (int g = 0; g < 4; ++g)
    for (int l = 0; l < 32; ++l)
      qs[32 * g + l] =
          static_cast<uint8_t>((codes[64 * g + l] & 15) | ((codes[64 * g + 32 + l] & 15) << 4));
}

// qh: Q5_K's fifth bits, or null for Q4_K.
template <typename Block>
void dequantize_k4_family(const Block* b, const uint8_t* qh, float* y) {
  const float d = f16_to_f32(b->d), dmin = f16_to_f32(b->dmin);
  for (int e = 0; e < kQKK; ++e) {
    int sc, mn;
    unpack_scale_min_k4(e / 32, b->scales, &sc, &mn);
    int q = (b->qs[32 * (e / 64) + e % 32] >> (e % 64 < 32 ? 0 : 4)) & 15;
    if (qh) q |= ((qh[e % 32] >> (e / 32)) & 1) << 4;
    y[e] = d * sc * q - dmin * mn;
  }
}

void choose_q4_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_k4_family(x, w, 15, has_exact_zero(x, kQKK), reinterpret_cast<BlockQ4_K*>(out), g);
}
void choose_zero_q4_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_k4_family(x, w, 15, true, reinterpret_cast<BlockQ4_K*>(out), g);
}
void set_codes_q4_k(const int* codes, uint8_t* out) {
  pack_low_nibbles_k4(codes, reinterpret_cast<BlockQ4_K*>(out)->qs);
}
void dequantize_q4_k(const uint8_t* in, float* y) {
  dequantize_k4_family(reinterpret_cast<const BlockQ4_K*>(in), nullptr, y);
}

void choose_q5_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_k4_family(x, w, 31, has_exact_zero(x, kQKK), reinterpret_cast<BlockQ5_K*>(out), g);
}
void choose_zero_q5_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  choose_k4_family(x, w, 31, true, reinterpret_cast<BlockQ5_K*>(out), g);
}
void set_codes_q5_k(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockQ5_K*>(out);
  pack_low_nibbles_k4(codes, b->qs);
  std::memset(b->qh, 0, sizeof b->qh);
  for (int e = 0; e < kQKK; ++e) b->qh[e % 32] |= static_cast<uint8_t>((codes[e] >> 4) << (e / 32));
}
void dequantize_q5_k(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ5_K*>(in);
  dequantize_k4_family(b, b->qh, y);
}

void choose_q6_k(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockQ6_K*>(out);
  const SymmetricK p = choose_symmetric_k(x, w, kQ6K);
  symmetric_grid(p, kQ6K, g);
  b->d = f32_to_f16(p.d);
  for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<int8_t>(p.sc[j]);
}
void set_codes_q6_k(const int* codes, uint8_t* out) {  // codes 0..63 = level + 32
  auto* b = reinterpret_cast<BlockQ6_K*>(out);
  std::memset(b->ql, 0, sizeof b->ql);
  std::memset(b->qh, 0, sizeof b->qh);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    b->ql[64 * h + 32 * (k & 1) + l] |= static_cast<uint8_t>((codes[e] & 15) << (k < 2 ? 0 : 4));
    b->qh[32 * h + l] |= static_cast<uint8_t>((codes[e] >> 4) << (2 * k));
  }
}
void dequantize_q6_k(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockQ6_K*>(in);
  const float d = f16_to_f32(b->d);
  for (int e = 0; e < kQKK; ++e) {
    const int h = e / 128, k = (e % 128) / 32, l = e % 32;
    const int low = (b->ql[64 * h + 32 * (k & 1) + l] >> (k < 2 ? 0 : 4)) & 15;
    const int q = low | (((b->qh[32 * h + l] >> (2 * k)) & 3) << 4);
    y[e] = d * b->scales[e / 16] * (q - 32);
  }
}

void choose_iq4_xs(const float* x, const float* w, uint8_t* out, BlockGrid* g) {
  auto* b = reinterpret_cast<BlockIQ4_XS*>(out);
  const SymmetricK p = choose_symmetric_k(x, w, kIQ4XS);
  symmetric_grid(p, kIQ4XS, g);
  b->d = f32_to_f16(p.d);
  b->scales_h = 0;
  std::memset(b->scales_l, 0, sizeof b->scales_l);
  for (int j = 0; j < 8; ++j) {
    const int v = p.sc[j] + 32;
    b->scales_l[j / 2] |= static_cast<uint8_t>((v & 15) << (4 * (j % 2)));
    b->scales_h |= static_cast<uint16_t>((v >> 4) << (2 * j));
  }
}
void set_codes_iq4_xs(const int* codes, uint8_t* out) {
  auto* b = reinterpret_cast<BlockIQ4_XS*>(out);
  for (int j = 0; j < 8; ++j)
    for (int l = 0; l < 16; ++l)
      b->qs[16 * j + l] = static_cast<uint8_t>(codes[32 * j + l] | (codes[32 * j + 16 + l] << 4));
}
void dequantize_iq4_xs(const uint8_t* in, float* y) {
  const auto* b = reinterpret_cast<const BlockIQ4_XS*>(in);
  const float d = f16_to_f32(b->d);
  for (int j = 0; j < 8; ++j) {
    const int ls =
        ((b->scales_l[j / 2] >> (4 * (j % 2))) & 15) | (((b->scales_h >> (2 * j)) & 3) << 4);
    const float dl = d * (ls - 32);
    for (int l = 0; l < 16; ++l) {
      y[32 * j + l] = dl * kIq4nlValues[b->qs[16 * j + l] & 15];
      y[32 * j + 16 + l] = dl * kIq4nlValues[b->qs[16 * j + l] >> 4];
    }
  }
}

bool read_sub_params(DType t, const uint8_t* block, SubBlockParams* p) {
  *p = SubBlockParams{};
  switch (t) {
    case DType::Q2_K: {
      const auto* b = reinterpret_cast<const BlockQ2_K*>(block);
      *p = {16, 16, 4, 0, 0, 15, 15, f16_to_f32(b->d), f16_to_f32(b->dmin)};
      for (int j = 0; j < 16; ++j) p->sc[j] = b->scales[j] & 15, p->mn[j] = b->scales[j] >> 4;
      return true;
    }
    case DType::Q3_K: {
      const auto* b = reinterpret_cast<const BlockQ3_K*>(block);
      *p = {16, 16, 8, 4, kQ3K.smin, kQ3K.smax, 0, f16_to_f32(b->d), 0};
      for (int j = 0; j < 16; ++j) p->sc[j] = unpack_scale_q3k(b->scales, j);
      return true;
    }
    case DType::Q4_K:
    case DType::Q5_K: {
      // Q4_K and Q5_K start with the same d, dmin and 12 scale bytes.
      const auto* b = reinterpret_cast<const BlockQ4_K*>(block);
      *p = {8, 32, t == DType::Q4_K ? 16 : 32, 0, 0, 63, 63, f16_to_f32(b->d), f16_to_f32(b->dmin)};
      for (int j = 0; j < 8; ++j) unpack_scale_min_k4(j, b->scales, &p->sc[j], &p->mn[j]);
      return true;
    }
    case DType::Q6_K: {
      const auto* b = reinterpret_cast<const BlockQ6_K*>(block);
      *p = {16, 16, 64, 32, kQ6K.smin, kQ6K.smax, 0, f16_to_f32(b->d), 0};
      for (int j = 0; j < 16; ++j) p->sc[j] = b->scales[j];
      return true;
    }
    default:
      return false;
  }
}

void write_sub_params(DType t, const SubBlockParams& p, uint8_t* block) {
  switch (t) {
    case DType::Q2_K: {
      auto* b = reinterpret_cast<BlockQ2_K*>(block);
      for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<uint8_t>(p.sc[j] | (p.mn[j] << 4));
      break;
    }
    case DType::Q3_K:
      pack_scales_q3k(p.sc, reinterpret_cast<BlockQ3_K*>(block)->scales);
      break;
    case DType::Q4_K:
    case DType::Q5_K:
      pack_scale_min_k4(p.sc, p.mn, reinterpret_cast<BlockQ4_K*>(block)->scales);
      break;
    case DType::Q6_K: {
      auto* b = reinterpret_cast<BlockQ6_K*>(block);
      for (int j = 0; j < 16; ++j) b->scales[j] = static_cast<int8_t>(p.sc[j]);
      break;
    }
    default:
      break;
  }
}

}  // namespace lowbit::quant

// AWQ's clip search at the quantizer's own groups (lowbit/awq.h, awq_refine_sub_scales).
// A K super-block's sub-blocks each hold a small integer scale (and min) times an f16
// super-scale. Shrinking a sub-block's integer scale clips its largest values, growing it
// widens its range; either re-rounds its values to nearest. Coordinate descent on the row's
// output error eᵀHe (e = w − dequantized row, H = XᵀX/n):
//   changing sub-block j's values by δ (e → e + δ on its positions P) changes the error by
//   2 δᵀ(He)_P + δᵀ H_PP δ,
// so with g = He kept per row, a candidate costs |P|² and an accepted one |P|·cols (g += H_:,P δ),
// done for all rows that moved at once as one sgemm.
#include <cblas.h>

#include <algorithm>

#include "core/parallel.h"
#include "lowbit/awq.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"
#include "quant/scale_fit.h"

namespace lowbit {
namespace {

constexpr int kReach = 2;   // integer scale (and min) steps tried either side of the current one
constexpr int kMaxLen = 32;  // longest K sub-block (Q4_K, Q5_K); Q2_K, Q3_K, Q6_K have 16

// Sub-block j of SubBlockParams p decodes code c to scale·(c − level_bias) − off with
// scale = d·sc[j], off = dmin·mn[j]. The nearest level (c − level_bias, in [lo, hi]) to x;
// 0 when the scale is 0. Written for loops that vectorize.
inline float nearest_level(float x, float scale, float off, float lo, float hi) {
  return scale == 0 ? 0.0f : quant::round_clamp_f((x + off) / scale, lo, hi);
}

// Tries sub-block j of block p, which covers columns [c0, c0 + len) of one row: x the row's
// weights, deq/codes its current rounding, g = He its output-error gradient (read only here).
// On a move that lowers the error, updates p, codes and deq, writes δ = e_new − e_old into
// delta (len) and returns true; g is left for the caller to update.
bool best_sub_block_move(const float* x, quant::SubBlockParams& p, int j, uint64_t c0, int* codes,
                         float* deq, const float* g, const std::vector<float>& hf, uint64_t cols,
                         float* delta) {
  const uint64_t len = p.len;
  const float lo = static_cast<float>(-p.level_bias),
              hi = static_cast<float>(p.n_codes - 1 - p.level_bias);
  // Per candidate (loops written to vectorize): codes c relative to the level bias, the
  // values' change δ, and u = H_PP δ built from H's rows (H symmetric), then
  // Δerr = δᵀ(2g + u).
  float cand[kMaxLen], cand_delta[kMaxLen], best_codes[kMaxLen], u[kMaxLen];
  double best = 0;
  int best_sc = p.sc[j], best_mn = p.mn[j];
  for (int sc = std::max(p.sc[j] - kReach, p.sc_lo); sc <= std::min(p.sc[j] + kReach, p.sc_hi);
       ++sc)
    for (int mn = std::max(p.mn[j] - kReach, 0); mn <= std::min(p.mn[j] + kReach, p.mn_hi); ++mn) {
      if (sc == p.sc[j] && mn == p.mn[j]) continue;
      const float scale = p.d * sc, off = p.dmin * mn;
      for (uint64_t i = 0; i < len; ++i) cand[i] = nearest_level(x[c0 + i], scale, off, lo, hi);
      for (uint64_t i = 0; i < len; ++i)
        cand_delta[i] = deq[c0 + i] - (scale * cand[i] - off), u[i] = 0;
      for (uint64_t k = 0; k < len; ++k) {
        const float* hk = &hf[(c0 + k) * cols + c0];
        const float dk = cand_delta[k];
        for (uint64_t i = 0; i < len; ++i) u[i] += hk[i] * dk;
      }
      double d_err = 0;
      for (uint64_t i = 0; i < len; ++i)
        d_err += static_cast<double>(cand_delta[i]) * (2 * g[c0 + i] + u[i]);
      if (d_err < best) {
        best = d_err, best_sc = sc, best_mn = mn;
        std::copy_n(cand_delta, len, delta);
        std::copy_n(cand, len, best_codes);
      }
    }
  if (best_sc == p.sc[j] && best_mn == p.mn[j]) return false;
  p.sc[j] = best_sc;
  p.mn[j] = best_mn;
  for (uint64_t i = 0; i < len; ++i) {
    codes[c0 + i] = static_cast<int>(best_codes[i]) + p.level_bias;
    deq[c0 + i] -= delta[i];
  }
  return true;
}

}  // namespace

bool awq_refine_sub_scales(DType type, const float* w, uint64_t rows, uint64_t cols,
                           const std::vector<double>& h, int passes, int n_threads, uint8_t* q) {
  const auto& tr = traits(type);
  const quant::BlockCodec* codec = quant::block_codec(type);
  quant::SubBlockParams probe;
  const std::vector<uint8_t> zero(tr.type_size);
  if (!codec || !quant::read_sub_params(type, zero.data(), &probe)) return false;
  if (cols % tr.block_size)
    fail(ErrorKind::Argument, "AWQ sub-block search: {} columns is not a multiple of {}'s block",
         cols, tr.name);
  if (h.size() != cols * cols)
    fail(ErrorKind::Argument, "AWQ sub-block search: H has {} values, expected {}²", h.size(),
         cols);
  if (passes <= 0 || rows == 0) return true;
  const uint64_t bs = tr.block_size, n_blocks = cols / bs, row_bytes = n_blocks * tr.type_size;
  const std::vector<float> hf(h.begin(), h.end());

  // The starting rounding, re-read as sub-block parameters and nearest codes; G = E·H (H
  // symmetric).
  std::vector<float> deq(rows * cols), G(rows * cols);
  std::vector<int> codes(rows * cols);
  std::vector<std::vector<quant::SubBlockParams>> params(
      rows, std::vector<quant::SubBlockParams>(n_blocks));
  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t b = 0; b < n_blocks; ++b) {
        quant::SubBlockParams& p = params[r][b];
        quant::read_sub_params(type, q + r * row_bytes + b * tr.type_size, &p);
        const float lo = static_cast<float>(-p.level_bias),
                    hi = static_cast<float>(p.n_codes - 1 - p.level_bias);
        for (uint64_t i = 0; i < bs; ++i) {
          const uint64_t c = r * cols + b * bs + i;
          const int j = static_cast<int>(i) / p.len;
          const float scale = p.d * p.sc[j], off = p.dmin * p.mn[j];
          const float level = nearest_level(w[c], scale, off, lo, hi);
          codes[c] = static_cast<int>(level) + p.level_bias;
          deq[c] = scale * level - off;
          G[c] = w[c] - deq[c];  // E for now
        }
      }
  });
  {
    std::vector<float> E = G;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows),
                static_cast<int>(cols), static_cast<int>(cols), 1.0f, E.data(),
                static_cast<int>(cols), hf.data(), static_cast<int>(cols), 0.0f, G.data(),
                static_cast<int>(cols));
  }

  // Sub-block by sub-block across all rows (each row still sees its earlier moves through G):
  // the rows that moved get G += Δ·H[P, :] in one sgemm, so H's P rows are read once per
  // sub-block for all rows instead of once per accepted move. A row that went a whole pass
  // without a move is done.
  const int len = probe.len, n_sub = probe.n_sub;
  if (len > kMaxLen)
    fail(ErrorKind::Unsupported, "AWQ sub-block search: {} sub-blocks of {} values exceed {}",
         tr.name, len, kMaxLen);
  std::vector<uint8_t> active(rows, 1), moved(rows), changed(rows);
  std::vector<float> D(rows * len), T;
  std::vector<uint64_t> idx;
  for (int pass = 0; pass < passes; ++pass) {
    std::fill(changed.begin(), changed.end(), 0);
    for (uint64_t b = 0; b < n_blocks; ++b)
      for (int j = 0; j < n_sub; ++j) {
        const uint64_t c0 = b * bs + static_cast<uint64_t>(j) * len;
        parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
          for (uint64_t r = r0; r < r1; ++r) {
            const uint64_t o = r * cols;
            moved[r] = active[r] && best_sub_block_move(w + o, params[r][b], j, c0, &codes[o],
                                                        &deq[o], &G[o], hf, cols, &D[r * len]);
            changed[r] |= moved[r];
          }
        });
        idx.clear();
        for (uint64_t r = 0; r < rows; ++r) {  // compact the moved rows' δ to the front of D
          if (!moved[r]) continue;
          if (idx.size() != r) std::copy_n(&D[r * len], len, &D[idx.size() * len]);
          idx.push_back(r);
        }
        if (idx.empty()) continue;
        T.resize(idx.size() * cols);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(idx.size()),
                    static_cast<int>(cols), len, 1.0f, D.data(), len, &hf[c0 * cols],
                    static_cast<int>(cols), 0.0f, T.data(), static_cast<int>(cols));
        for (uint64_t m = 0; m < idx.size(); ++m) {
          float* gr = &G[idx[m] * cols];
          const float* tr_ = &T[m * cols];
          for (uint64_t k = 0; k < cols; ++k) gr[k] += tr_[k];
        }
      }
    active = changed;
    if (std::none_of(active.begin(), active.end(), [](uint8_t a) { return a != 0; })) break;
  }

  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      uint8_t* row = q + r * row_bytes;
      for (uint64_t b = 0; b < n_blocks; ++b) {
        quant::write_sub_params(type, params[r][b], row + b * tr.type_size);
        codec->set_codes(&codes[r * cols + b * bs], row + b * tr.type_size);
      }
    }
  });
  return true;
}

}  // namespace lowbit

// AWQ's clip search at the quantizer's own groups (lowbit/awq.h, awq_refine_sub_scales).
// A K super-block's sub-blocks each hold a small integer scale (and min) times an f16
// super-scale. Shrinking a sub-block's integer scale clips its largest values, growing it
// widens its range; either re-rounds its values to nearest. Coordinate descent on the row's
// output error eᵀHe (e = w − dequantized row, H = XᵀX/n):
//   changing sub-block j's values by δ (e → e + δ on its positions P) changes the error by
//   2 δᵀ(He)_P + δᵀ H_PP δ,
// so with g = He kept per row, a candidate costs |P|² and an accepted one |P|·cols (g += H_:,P δ).
#include <cblas.h>

#include <algorithm>
#include <cmath>

#include "core/parallel.h"
#include "lowbit/awq.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"

namespace lowbit {
namespace {

constexpr int kReach = 2;  // integer scale (and min) steps tried either side of the current one

// Searches row r's sub-blocks in place: params/codes/deq describe the row's current rounding,
// g = H e its output-error gradient. Returns whether anything changed.
bool refine_row_pass(const float* x, std::vector<quant::SubBlockParams>& params, std::vector<int>& codes,
                     std::vector<float>& deq, std::vector<float>& g, const std::vector<float>& hf, uint64_t cols, uint64_t bs) {
  const uint64_t len = params[0].len;
  std::vector<float> delta(len), best_delta(len);
  std::vector<int> cand(len), best_codes(len);
  bool changed = false;
  for (uint64_t b = 0; b < params.size(); ++b) {
    quant::SubBlockParams& p = params[b];
    for (int j = 0; j < p.n_sub; ++j) {
      const uint64_t c0 = b * bs + j * len;
      double best = 0;
      int best_sc = p.sc[j], best_mn = p.mn[j];
      for (int sc = std::max(p.sc[j] - kReach, p.sc_lo); sc <= std::min(p.sc[j] + kReach, p.sc_hi); ++sc)
        for (int mn = std::max(p.mn[j] - kReach, 0); mn <= std::min(p.mn[j] + kReach, p.mn_hi); ++mn) {
          if (sc == p.sc[j] && mn == p.mn[j]) continue;
          for (uint64_t i = 0; i < len; ++i) {  // δ = e_new − e_old = deq_old − deq_new
            cand[i] = p.nearest(sc, mn, x[c0 + i]);
            delta[i] = deq[c0 + i] - p.value(sc, mn, cand[i]);
          }
          double d_err = 0;
          for (uint64_t i = 0; i < len; ++i) {
            const float* hr = &hf[(c0 + i) * cols + c0];
            float acc = 0;
            for (uint64_t k = 0; k < len; ++k) acc += hr[k] * delta[k];
            d_err += static_cast<double>(delta[i]) * (2 * g[c0 + i] + acc);
          }
          if (d_err < best) best = d_err, best_sc = sc, best_mn = mn, best_delta = delta, best_codes = cand;
        }
      if (best_sc == p.sc[j] && best_mn == p.mn[j]) continue;
      changed = true;
      p.sc[j] = best_sc;
      p.mn[j] = best_mn;
      for (uint64_t i = 0; i < len; ++i) {
        codes[c0 + i] = best_codes[i];
        deq[c0 + i] -= best_delta[i];
        if (best_delta[i] == 0) continue;
        const float* hr = &hf[(c0 + i) * cols];  // H is symmetric: column c0+i = row c0+i
        const float di = best_delta[i];
        for (uint64_t k = 0; k < cols; ++k) g[k] += hr[k] * di;
      }
    }
  }
  return changed;
}

}  // namespace

bool awq_refine_sub_scales(DType type, const float* w, uint64_t rows, uint64_t cols, const std::vector<double>& h, int passes,
                           int n_threads, uint8_t* q) {
  const auto& tr = traits(type);
  const quant::BlockCodec* codec = quant::block_codec(type);
  quant::SubBlockParams probe;
  const std::vector<uint8_t> zero(tr.type_size);
  if (!codec || !quant::read_sub_params(type, zero.data(), &probe)) return false;
  if (cols % tr.block_size) fail(ErrorKind::Argument, "AWQ sub-block search: {} columns is not a multiple of {}'s block", cols, tr.name);
  if (h.size() != cols * cols) fail(ErrorKind::Argument, "AWQ sub-block search: H has {} values, expected {}²", h.size(), cols);
  if (passes <= 0 || rows == 0) return true;
  const uint64_t bs = tr.block_size, n_blocks = cols / bs, row_bytes = n_blocks * tr.type_size;
  const std::vector<float> hf(h.begin(), h.end());

  // The starting rounding, re-read as sub-block parameters and nearest codes; G = E·H (H symmetric).
  std::vector<float> deq(rows * cols), G(rows * cols);
  std::vector<int> codes(rows * cols);
  std::vector<std::vector<quant::SubBlockParams>> params(rows, std::vector<quant::SubBlockParams>(n_blocks));
  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r)
      for (uint64_t b = 0; b < n_blocks; ++b) {
        quant::SubBlockParams& p = params[r][b];
        quant::read_sub_params(type, q + r * row_bytes + b * tr.type_size, &p);
        for (uint64_t i = 0; i < bs; ++i) {
          const uint64_t c = r * cols + b * bs + i;
          const int j = static_cast<int>(i) / p.len;
          codes[c] = p.nearest(p.sc[j], p.mn[j], w[c]);
          deq[c] = p.value(p.sc[j], p.mn[j], codes[c]);
          G[c] = w[c] - deq[c];  // E for now
        }
      }
  });
  {
    std::vector<float> E = G;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), static_cast<int>(cols),
                static_cast<int>(cols), 1.0f, E.data(), static_cast<int>(cols), hf.data(), static_cast<int>(cols), 0.0f,
                G.data(), static_cast<int>(cols));
  }

  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    std::vector<int> row_codes(cols);
    std::vector<float> row_deq(cols), g(cols);
    for (uint64_t r = r0; r < r1; ++r) {
      const uint64_t o = r * cols;
      std::copy_n(&codes[o], cols, row_codes.begin());
      std::copy_n(&deq[o], cols, row_deq.begin());
      std::copy_n(&G[o], cols, g.begin());
      for (int pass = 0; pass < passes; ++pass)
        if (!refine_row_pass(w + o, params[r], row_codes, row_deq, g, hf, cols, bs)) break;
      uint8_t* row = q + r * row_bytes;
      for (uint64_t b = 0; b < n_blocks; ++b) {
        quant::write_sub_params(type, params[r][b], row + b * tr.type_size);
        codec->set_codes(row_codes.data() + b * bs, row + b * tr.type_size);
      }
    }
  });
  return true;
}

}  // namespace lowbit

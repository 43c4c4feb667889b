// AWQ's weight-clip search (lowbit/awq.h).

#include <algorithm>
#include <cmath>
#include <cstring>

#include "core/parallel.h"
#include "lowbit/awq.h"
#include "lowbit/error.h"
#include "quant/block_codecs.h"

namespace lowbit {

void awq_clip_quantize_rows(DType type, const float* w, uint64_t rows, uint64_t cols,
                            const std::vector<double>& h, const AwqClipOptions& o, int n_threads,
                            uint8_t* out) {
  const auto& tr = traits(type);
  const quant::BlockCodec* codec = quant::block_codec(type);
  if (!codec)
    fail(ErrorKind::Unsupported, "AWQ clip search: no block quantizer for type {}", tr.name);
  if (cols % tr.block_size)
    fail(ErrorKind::Argument, "AWQ clip search: {} columns is not a multiple of {}'s block", cols,
         tr.name);
  if (h.size() != cols * cols)
    fail(ErrorKind::Argument, "AWQ clip search: H has {} values, expected {}²", h.size(), cols);
  const uint64_t bs = tr.block_size, n_blocks = cols / bs;
  // H's diagonal blocks in f32, [n_blocks, bs, bs], and its diagonal (the importance vector).
  std::vector<float> hb(n_blocks * bs * bs), diag(cols);
  for (uint64_t b = 0; b < n_blocks; ++b)
    for (uint64_t i = 0; i < bs; ++i)
      for (uint64_t j = 0; j < bs; ++j)
        hb[(b * bs + i) * bs + j] = static_cast<float>(h[(b * bs + i) * cols + b * bs + j]);
  for (uint64_t j = 0; j < cols; ++j) diag[j] = static_cast<float>(h[j * cols + j]);

  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    std::vector<float> clipped(bs), deq(bs), e(bs);
    std::vector<uint8_t> cand(tr.type_size);
    std::vector<float> g(cols), best_e(bs);  // g = H[:, decided blocks] · their errors
    for (uint64_t r = r0; r < r1; ++r) {
      std::fill(g.begin(), g.end(), 0.0f);
      for (uint64_t b = 0; b < n_blocks; ++b) {
        const float* x = w + r * cols + b * bs;
        const float* hbb = hb.data() + b * bs * bs;
        uint8_t* dst = out + (r * n_blocks + b) * tr.type_size;
        float amax = 0;
        for (uint64_t i = 0; i < bs; ++i) amax = std::max(amax, std::fabs(x[i]));
        double best = INFINITY;
        for (int k = 0; k <= o.steps; ++k) {
          const float lim = amax * (1.0f - o.step * k);
          for (uint64_t i = 0; i < bs; ++i) clipped[i] = std::clamp(x[i], -lim, lim);
          for (int weighted = 0; weighted <= (o.try_importance ? 1 : 0); ++weighted) {
            codec->quantize(clipped.data(), weighted ? diag.data() + b * bs : nullptr, cand.data());
            codec->dequantize(cand.data(), deq.data());
            for (uint64_t i = 0; i < bs; ++i) e[i] = x[i] - deq[i];
            double err = 0;  // eᵀ H_bb e + 2 eᵀ H_b,earlier e_earlier
            for (uint64_t i = 0; i < bs; ++i) {
              float acc = 0;
              for (uint64_t j = 0; j < bs; ++j) acc += hbb[i * bs + j] * e[j];
              err += static_cast<double>(e[i]) * (acc + 2 * g[b * bs + i]);
            }
            if (err < best) { best = err; std::memcpy(dst, cand.data(), tr.type_size); best_e = e; }
          }
          if (amax == 0) break;
        }
        for (uint64_t i = (b + 1) * bs; i < cols; ++i) {  // only later blocks read g
          float acc = 0;
          for (uint64_t j = 0; j < bs; ++j)
            acc += static_cast<float>(h[i * cols + b * bs + j]) * best_e[j];
          g[i] += acc;
        }
      }
    }
  });
}

}  // namespace lowbit

// Weights repacked in 16-row panels for batched products (layout in lowbit/kernels.h), the
// scalar reference product on them, and the choice of kernel.
#include <hwy/targets.h>

#include <algorithm>
#include <atomic>
#include <cmath>

#include "kernels/block_ints.h"
#include "kernels/packed_layout.h"
#include "lowbit/error.h"
#include "lowbit/kernels.h"

namespace lowbit::kernels {
namespace {

void store_i32(uint8_t* p, int32_t v) {
  std::memcpy(p, &v, 4);
}
void store_f32(uint8_t* p, float v) {
  std::memcpy(p, &v, 4);
}

// One row's block `blk` into lane `lane` of the record at `rec`.
void pack_block(DType t, const uint8_t* blk, const RecordLayout& l, int block, uint8_t* rec,
                size_t lane) {
  BlockHeader h;
  int16_t v[256];
  block_header(t, blk, h);
  block_values(t, blk, v);
  for (int e = 0; e < block; ++e)
    rec[(e / 4) * 4 * PackedRows::kPanel + lane * 4 + e % 4] =
        static_cast<uint8_t>(static_cast<int8_t>(v[e]));
  int64_t corr = 0;
  for (int s = 0; s < h.n_sub; ++s) {
    int64_t sum = 0;
    for (int e = s * h.sub; e < (s + 1) * h.sub; ++e) sum += v[e];
    corr += 128 * sum * h.scale[s];
    if (h.n_sub > 1) store_i32(rec + l.scale + (s * PackedRows::kPanel + lane) * 4, h.scale[s]);
  }
  for (int g = 0; h.has_min && g < block / 16; ++g) {  // min of values 16g .. 16g + 15
    const auto m = static_cast<int16_t>(h.min[g * 16 / h.sub]);
    std::memcpy(rec + l.min + ((g / 2) * PackedRows::kPanel + lane) * 4 + (g % 2) * 2, &m, 2);
  }
  store_f32(rec + l.d + lane * 4, h.d);
  if (h.has_min) store_f32(rec + l.dmin + lane * 4, h.dmin);
  store_i32(rec + l.corr + lane * 4, static_cast<int32_t>(corr));  // |corr| < 2^31: see below
}

void check_product(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a) {
  if (p0 > p1 || p1 > w.n_panels())
    fail(ErrorKind::Argument, "packed_gemm: panels [{}, {}) of {}", p0, p1, w.n_panels());
  if (a.row_len != w.cols || a.block != static_cast<uint32_t>(w.block) ||
      a.u8.size() != a.q.size() || a.sum16_i16.size() != a.sum16.size())
    fail(ErrorKind::Argument,
         "packed_gemm: activations of {} values in blocks of {} for {} x {} {}", a.row_len, a.block,
         w.rows, w.cols, dtype_name(w.type));
}

}  // namespace

bool has_packed_kernel(DType t) {
  return has_kernel(t) && !traits(t).is_float;
}

PackedRows pack_rows(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len) {
  if (!has_packed_kernel(t))
    fail(ErrorKind::Unsupported, "pack_rows: no packed kernel for {}", dtype_name(t));
  const DTypeTraits& tr = traits(t);
  if (row_len % tr.block_size || row_bytes < row_len / tr.block_size * tr.type_size)
    fail(ErrorKind::Argument, "pack_rows: rows of {} values in {} bytes as {}", row_len, row_bytes,
         dtype_name(t));
  PackedRows p;
  p.type = t, p.rows = n_rows, p.cols = row_len, p.block = static_cast<int>(tr.block_size);
  BlockHeader h;
  block_header(t, w, h);  // the structure (sub, n_sub, has_min) is the type's, not the block's
  p.sub = h.sub, p.n_sub = h.n_sub, p.scaled = h.n_sub > 1, p.has_min = h.has_min;
  // Bounds: |v| ≤ 128, |scale| ≤ 128 and 256 values give |corr| ≤ 2^30; the kernel's int32
  // sums Σ (q + 128)·v·scale stay below 2^31 likewise (and wrap consistently if not).
  const RecordLayout l = record_layout(p);
  const size_t n_blocks = row_len / tr.block_size;
  p.record_bytes = l.bytes, p.panel_bytes = n_blocks * l.bytes;
  p.bytes.assign(p.n_panels() * p.panel_bytes, 0);
  for (size_t r = 0; r < n_rows; ++r) {
    uint8_t* panel = p.bytes.data() + (r / PackedRows::kPanel) * p.panel_bytes;
    for (size_t b = 0; b < n_blocks; ++b)
      pack_block(t, w + r * row_bytes + b * tr.type_size, l, p.block, panel + b * l.bytes,
                 r % PackedRows::kPanel);
  }
  return p;
}

void packed_gemm_reference(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a,
                           float* y, size_t ld_y) {
  check_product(w, p0, p1, a);
  const RecordLayout l = record_layout(w);
  const size_t n_blocks = w.cols / w.block;
  constexpr size_t kPanel = PackedRows::kPanel;
  for (size_t p = p0; p < p1; ++p)
    for (size_t t = 0; t < a.n_rows; ++t)
      for (size_t lane = 0; lane < kPanel && p * kPanel + lane < w.rows; ++lane) {
        float acc = 0;
        for (size_t b = 0; b < n_blocks; ++b) {
          const uint8_t* rec = w.bytes.data() + p * w.panel_bytes + b * w.record_bytes;
          const uint8_t* u = a.u8.data() + t * w.cols + b * w.block;
          int64_t isum = 0, msum = 0;
          for (int s = 0; s < w.n_sub; ++s) {
            int64_t part = 0;
            for (int e = s * w.sub; e < (s + 1) * w.sub; ++e)
              part +=
                  int64_t{u[e]} * static_cast<int8_t>(rec[(e / 4) * 4 * kPanel + lane * 4 + e % 4]);
            isum += part * (w.scaled ? load_i32(rec + l.scale + (s * kPanel + lane) * 4) : 1);
          }
          for (int g = 0; w.has_min && g < w.block / 16; ++g) {
            int16_t m;
            std::memcpy(&m, rec + l.min + ((g / 2) * kPanel + lane) * 4 + (g % 2) * 2, 2);
            msum += int64_t{m} * a.sum16_i16[(t * w.cols + b * w.block) / 16 + g];
          }
          isum -= load_i32(rec + l.corr + lane * 4);
          const float ad = a.d[t * n_blocks + b];
          acc = std::fma(static_cast<float>(static_cast<int32_t>(isum)),
                         load_f32(rec + l.d + lane * 4) * ad, acc);
          if (w.has_min)
            acc = std::fma(-static_cast<float>(static_cast<int32_t>(msum)),
                           load_f32(rec + l.dmin + lane * 4) * ad, acc);
        }
        y[t * ld_y + p * kPanel + lane] = acc;
      }
}

namespace {
// Whether dispatch allows AVX-512 (restrict_isa may forbid it): asked of Highway once per
// restriction, since hwy::SupportedTargets() costs more than a small product.
std::atomic<int> g_avx3_allowed{-1};
// Every Highway target with AVX-512 (this Highway may know more than AVX3 and AVX3_DL).
constexpr int64_t kAvx512Targets = HWY_AVX3 | HWY_AVX3_DL
#ifdef HWY_AVX3_ZEN4
                                   | HWY_AVX3_ZEN4
#endif
#ifdef HWY_AVX3_SPR
                                   | HWY_AVX3_SPR
#endif
    ;
}  // namespace

void refresh_packed_dispatch() {
  g_avx3_allowed = -1;
}

bool packed_gemm_is_fast() {
  if (scalar_forced() || !vnni_available()) return false;
  int allowed = g_avx3_allowed.load(std::memory_order_relaxed);
  if (allowed < 0) g_avx3_allowed = allowed = (hwy::SupportedTargets() & kAvx512Targets) != 0;
  return allowed;
}

void packed_gemm(const PackedRows& w, size_t p0, size_t p1, const QuantizedActs& a, float* y,
                 size_t ld_y) {
  if (!packed_gemm_is_fast()) return packed_gemm_reference(w, p0, p1, a, y, ld_y);
  check_product(w, p0, p1, a);
  packed_gemm_vnni(w, p0, p1, a, y, ld_y);
}

}  // namespace lowbit::kernels

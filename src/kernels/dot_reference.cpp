// Scalar reference kernels, activation quantization and the choice between the reference
// and the SIMD kernels (dot_simd.cpp).
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "kernels/block_ints.h"
#include "kernels/dot_simd.h"
#include "kernels/matvec_vnni.h"
#include "lowbit/error.h"
#include "lowbit/kernels.h"

namespace lowbit::kernels {
namespace {

bool g_force_scalar = [] {
  const char* env = std::getenv("LOWBIT_FORCE_SCALAR");
  return env && *env && std::string(env) != "0";
}();

float float_weight(DType t, const uint8_t* w, size_t i) {
  switch (t) {
    case DType::F32: return reinterpret_cast<const float*>(w)[i];
    case DType::F16: return f16_to_f32(reinterpret_cast<const uint16_t*>(w)[i]);
    default: return bf16_to_f32(reinterpret_cast<const uint16_t*>(w)[i]);
  }
}

// Σ over one row of blocks: integer sums per sub-block, scaled by d·d_act and dmin·d_act.
float dot_row_blocks(DType t, const uint8_t* w, size_t row_len, const ActRow& a) {
  const DTypeTraits& tr = traits(t);
  BlockHeader h;
  int16_t v[256];
  double y = 0;
  for (size_t b = 0; b < row_len / tr.block_size; ++b) {
    const uint8_t* blk = w + b * tr.type_size;
    const int16_t* q = a.q + b * tr.block_size;
    block_header(t, blk, h);
    block_values(t, blk, v);
    int64_t isum = 0, msum = 0;
    for (int s = 0; s < h.n_sub; ++s) {
      int64_t part = 0;
      for (int e = s * h.sub; e < (s + 1) * h.sub; ++e) part += int64_t{v[e]} * q[e];
      isum += part * h.scale[s];
      if (h.has_min) {
        int64_t qsum = 0;
        for (int k = 0; k < h.sub / 16; ++k)
          qsum += a.sum16[(b * tr.block_size + s * h.sub) / 16 + k];
        msum += qsum * h.min[s];
      }
    }
    const float ad = a.d[b];  // activation blocks are the weight's block size
    y += static_cast<double>(h.d * ad) * isum - static_cast<double>(h.dmin * ad) * msum;
  }
  return static_cast<float>(y);
}

}  // namespace

ActRow act_row(const QuantizedActs& a, size_t row) {
  ActRow r{a.q.data() + row * a.row_len, a.d.data() + row * (a.row_len / a.block),
           a.sum16.data() + row * (a.row_len / 16), nullptr};
  if (!a.u8.empty()) {
    r.u8 = a.u8.data() + row * a.row_len;
    r.sum16_i16 = a.sum16_i16.data() + row * (a.row_len / 16);
  }
  return r;
}

bool has_kernel(DType t) {
  if (quant::is_codebook(t)) return true;
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::IQ4_NL:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
    case DType::IQ4_XS:
    case DType::TQ1_0:
    case DType::TQ2_0:
    case DType::Q8_0_S24:
    case DType::Q4_0_S24:
      return true;
    default: return false;
  }
}

uint32_t act_block(DType t) {
  if (!has_kernel(t))
    fail(ErrorKind::Unsupported, "kernels: no dot product for {} weights", dtype_name(t));
  return traits(t).is_float ? 0 : traits(t).block_size;
}

namespace {

float max_abs(const float* x, size_t n) {
  float amax = 0;
  for (size_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return amax;
}

// u8 = q + 128 and the sums of every 16 codes, for the n codes of `out` from `first` on.
void sum_codes(QuantizedActs& out, size_t first, size_t n) {
  for (size_t g = first / 16; g < (first + n) / 16; ++g) {
    int32_t s = 0;
    for (size_t i = 16 * g; i < 16 * g + 16; ++i) {
      s += out.q[i];
      out.u8[i] = static_cast<uint8_t>(out.q[i] + 128);
    }
    out.sum16[g] = s;
    out.sum16_i16[g] = static_cast<int16_t>(s);
  }
}

float act_code(float x, float step, int bits) {
  return std::clamp(std::nearbyint(x / step), -act_qmax(bits), act_qmax(bits));
}

void resize_acts(QuantizedActs& out, size_t n_rows, size_t row_len, uint32_t block,
                 const char* what) {
  if (block != 32 && block != 256)
    fail(ErrorKind::Argument, "{}: block {} (32 or 256)", what, block);
  if (row_len % block)
    fail(ErrorKind::Argument, "{}: row of {} values is not a multiple of {}", what, row_len, block);
  out.block = block, out.n_rows = n_rows, out.row_len = row_len;
  out.q.resize(n_rows * row_len);
  out.d.resize(n_rows * row_len / block);
  out.sum16.resize(n_rows * row_len / 16);
  out.u8.resize(n_rows * row_len);
  out.sum16_i16.resize(n_rows * row_len / 16);
}

}  // namespace

void quantize_act_blocks_reference(const float* x, size_t b0, size_t b1, uint32_t block,
                                   QuantizedActs& out) {
  for (size_t b = b0; b < b1; ++b) {
    const float* xb = x + b * block;
    const float amax = max_abs(xb, block);
    const float d = amax / 127.0f, id = inverse_scale(d);
    out.d[b] = d;
    int16_t* q = out.q.data() + b * block;
    for (uint32_t i = 0; i < block; ++i) q[i] = static_cast<int16_t>(std::lrintf(xb[i] * id));
    sum_codes(out, b * block, block);
  }
}

void round_acts_to_range(float* x, size_t n, int bits, float clip, float range) {
  const float s = act_step(bits, clip, range);
  if (s == 0) return;
  for (size_t i = 0; i < n; ++i) x[i] = act_code(x[i], s, bits) * s;
}

void round_acts_per_token(float* x, size_t rows, size_t cols, int bits, float clip) {
  for (size_t t = 0; t < rows; ++t) {
    float* row = x + t * cols;
    const float amax = max_abs(row, cols);
    round_acts_to_range(row, cols, bits, clip, amax);
  }
}

void quantize_acts(const float* x, size_t n_rows, size_t row_len, uint32_t block,
                   QuantizedActs& out) {
  resize_acts(out, n_rows, row_len, block, "quantize_acts");
  quantize_act_rows(x, 0, n_rows, out);
}

void resize_acts(QuantizedActs& out, size_t n_rows, size_t row_len, uint32_t block) {
  resize_acts(out, n_rows, row_len, block, "resize_acts");
}

void quantize_act_rows(const float* x, size_t r0, size_t r1, QuantizedActs& out) {
  if (out.block == 0) fail(ErrorKind::Argument, "quantize_act_rows: activations not sized");
  if (r0 > r1 || r1 > out.n_rows)
    fail(ErrorKind::Argument, "quantize_act_rows: rows [{}, {}) of {}", r0, r1, out.n_rows);
  const size_t per_row = out.row_len / out.block, b0 = r0 * per_row, b1 = r1 * per_row;
  if (g_force_scalar) return quantize_act_blocks_reference(x, b0, b1, out.block, out);
  quantize_act_blocks_simd(x, b0, b1, out.block, out);
}

void round_act_rows_reference(const float* x, size_t n_rows, size_t row_len, int bits, float clip,
                              const float* range, QuantizedActs& out) {
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * row_len;
    const float s = act_step(bits, clip, range ? *range : max_abs(xr, row_len));
    int16_t* q = out.q.data() + r * row_len;
    for (size_t i = 0; i < row_len; ++i)
      q[i] = s == 0 ? 0 : static_cast<int16_t>(act_code(xr[i], s, bits));
    std::fill_n(out.d.data() + r * (row_len / out.block), row_len / out.block, s);
  }
  sum_codes(out, 0, n_rows * row_len);
}

void quantize_acts_rounded(const float* x, size_t n_rows, size_t row_len, uint32_t block, int bits,
                           float clip, const float* range, QuantizedActs& out) {
  if (bits < 2 || bits > 8)
    fail(ErrorKind::Argument, "quantize_acts_rounded: {} bits (2..8)", bits);
  if (range && act_step(bits, clip, *range) == 0)
    fail(ErrorKind::Argument, "quantize_acts_rounded: static range {}", *range);
  resize_acts(out, n_rows, row_len, block, "quantize_acts_rounded");
  if (g_force_scalar) return round_act_rows_reference(x, n_rows, row_len, bits, clip, range, out);
  round_act_rows_simd(x, n_rows, row_len, bits, clip, range, out);
}

void dot_rows_reference(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                        const ActRow& a, float* y) {
  for (size_t r = 0; r < n_rows; ++r) {
    const uint8_t* row = w + r * row_bytes;
    if (traits(t).is_float) {
      double s = 0;
      for (size_t i = 0; i < row_len; ++i)
        s += static_cast<double>(float_weight(t, row, i)) * a.x[i];
      y[r] = static_cast<float>(s);
    } else {
      y[r] = dot_row_blocks(t, row, row_len, a);
    }
  }
}

void dot_rows(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
              const ActRow& a, float* y) {
  if (g_force_scalar) return dot_rows_reference(t, w, row_bytes, n_rows, row_len, a, y);
  if (is_sparse_2of4(t)) return dot_rows_2of4_simd(t, w, row_bytes, n_rows, row_len, &a, 1, y, 0);
  if (a.u8 && has_matvec_vnni(t) && packed_gemm_is_fast())
    return matvec_vnni(t, w, row_bytes, n_rows, row_len, a, y);
  dot_rows_simd(t, w, row_bytes, n_rows, row_len, a, y);
}

void gemm_i8_reference(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
                       int32_t* out, size_t ld_out) {
  for (size_t t = 0; t < n_tok; ++t)
    for (size_t r = 0; r < n_rows; ++r) {
      int32_t s = 0;
      for (size_t i = 0; i < cols; ++i) s += int32_t{w[r * cols + i]} * x[t * cols + i];
      out[t * ld_out + r] = s;
    }
}

void gemm_i8(const int8_t* w, size_t n_rows, size_t cols, const int8_t* x, size_t n_tok,
             int32_t* out, size_t ld_out) {
  if (g_force_scalar) return gemm_i8_reference(w, n_rows, cols, x, n_tok, out, ld_out);
  gemm_i8_simd(w, n_rows, cols, x, n_tok, out, ld_out);
}

void quantize_acts_i8(const float* x, size_t n_rows, size_t cols, float static_scale, int8_t* q,
                      float* scales) {
  for (size_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * cols;
    float s = static_scale;
    if (s == 0) s = max_abs(xr, cols) / 127.0f;
    scales[r] = s;
    const float inv = s > 0 ? 1.0f / s : 0.0f;
    for (size_t i = 0; i < cols; ++i)
      q[r * cols + i] = static_cast<int8_t>(std::clamp(std::lrintf(xr[i] * inv), -127L, 127L));
  }
}

void dot_rows_multi(DType t, const uint8_t* w, size_t row_bytes, size_t n_rows, size_t row_len,
                    const ActRow* acts, size_t n_acts, float* y, size_t ld_y) {
  if (!g_force_scalar && is_sparse_2of4(t))
    return dot_rows_2of4_simd(t, w, row_bytes, n_rows, row_len, acts, n_acts, y, ld_y);
  // One VNNI pass per token: as fast per value as the multi-token kernels, and each token
  // then sums in generation's order (a batch and token-by-token steps agree).
  const bool all_u8 =
      std::all_of(acts, acts + n_acts, [](const ActRow& a) { return a.u8 != nullptr; });
  if (n_acts && all_u8 && has_matvec_vnni(t) && packed_gemm_is_fast()) {
    for (size_t i = 0; i < n_acts; ++i)
      matvec_vnni(t, w, row_bytes, n_rows, row_len, acts[i], y + i * ld_y);
    return;
  }
  if (!g_force_scalar)
    return dot_rows_multi_simd(t, w, row_bytes, n_rows, row_len, acts, n_acts, y, ld_y);
  for (size_t i = 0; i < n_acts; ++i)
    dot_rows_reference(t, w, row_bytes, n_rows, row_len, acts[i], y + i * ld_y);
}

void force_scalar(bool on) { g_force_scalar = on; }
bool scalar_forced() { return g_force_scalar; }
std::string active_isa() { return g_force_scalar ? "scalar (forced)" : simd_target_name(); }

}  // namespace lowbit::kernels

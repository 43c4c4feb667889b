// The registry of block codecs and the row-level entry points of lowbit/quant.h.
#include <array>
#include <cstring>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "lowbit/tensor.h"
#include "quant/block_codecs.h"

namespace lowbit {
namespace quant {

const BlockCodec* block_codec(DType t) {
  static constexpr std::array<BlockCodec, 12> kCodecs = {{
      {DType::Q4_0, quantize_q4_0, dequantize_q4_0},
      {DType::Q4_1, quantize_q4_1, dequantize_q4_1},
      {DType::Q5_0, quantize_q5_0, dequantize_q5_0},
      {DType::Q5_1, quantize_q5_1, dequantize_q5_1},
      {DType::Q8_0, quantize_q8_0, dequantize_q8_0},
      {DType::IQ4_NL, quantize_iq4_nl, dequantize_iq4_nl},
      {DType::Q2_K, quantize_q2_k, dequantize_q2_k},
      {DType::Q3_K, quantize_q3_k, dequantize_q3_k},
      {DType::Q4_K, quantize_q4_k, dequantize_q4_k},
      {DType::Q5_K, quantize_q5_k, dequantize_q5_k},
      {DType::Q6_K, quantize_q6_k, dequantize_q6_k},
      {DType::IQ4_XS, quantize_iq4_xs, dequantize_iq4_xs},
  }};
  for (const auto& c : kCodecs)
    if (c.type == t) return &c;
  return nullptr;
}

}  // namespace quant

bool can_quantize_to(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || quant::block_codec(t) != nullptr;
}

bool can_dequantize(DType t) { return traits(t).is_float || quant::block_codec(t) != nullptr; }

void quantize_rows(DType t, const float* x, uint64_t n_rows, uint64_t row_len, const float* importance, uint8_t* out) {
  const auto& tr = traits(t);
  if (row_len % tr.block_size != 0)
    fail(ErrorKind::Argument, "cannot quantize rows of {} values to {}: not a multiple of its block size {}", row_len,
         tr.name, tr.block_size);
  const quant::BlockCodec* codec = quant::block_codec(t);
  if (!codec) {
    if (!tr.is_float) fail(ErrorKind::Unsupported, "no quantizer for type {}", tr.name);
    auto bytes = from_f32(x, n_rows * row_len, t);
    std::memcpy(out, bytes.data(), bytes.size());
    return;
  }
  const uint64_t blocks_per_row = row_len / tr.block_size;
  for (uint64_t r = 0; r < n_rows; ++r)
    for (uint64_t b = 0; b < blocks_per_row; ++b) {
      const uint64_t col = b * tr.block_size;
      codec->quantize(x + r * row_len + col, importance ? importance + col : nullptr,
                      out + (r * blocks_per_row + b) * tr.type_size);
    }
}

void dequantize_values(DType t, const uint8_t* in, uint64_t n, float* out) {
  const auto& tr = traits(t);
  const quant::BlockCodec* codec = quant::block_codec(t);
  if (!codec) {
    TensorView v;
    v.dtype = t;
    v.shape = {n};
    v.data = in;
    v.nbytes = n * tr.type_size;
    to_f32(v, out);
    return;
  }
  for (uint64_t b = 0; b < n / tr.block_size; ++b) codec->dequantize(in + b * tr.type_size, out + b * tr.block_size);
}

}  // namespace lowbit

// lowbit's codes, scales and zeros packed into the GPTQ, AWQ and compressed-tensors layouts
// (hf_formats.h).
#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "quant/hf_formats.h"
#include "quant/packed_words.h"

namespace lowbit::quant {
namespace {

using Parts = std::vector<std::vector<uint8_t>>;

std::vector<uint8_t> f16_bytes(const std::vector<float>& v) {
  return from_f32(v.data(), v.size(), DType::F16);
}

// Every row's codes, unpacked: [rows, cols].
std::vector<uint8_t> all_codes(const AffineTensor& t, int bits, uint64_t rows, uint64_t cols) {
  const uint64_t row_bytes = packed_row_bytes(cols, bits);
  std::vector<uint8_t> q(rows * cols);
  for (uint64_t j = 0; j < rows; ++j)
    unpack_bits(&t.codes[j * row_bytes], cols, bits, &q[j * cols]);
  return q;
}

Parts pack_gptq(const AffineTensor& t, const AffineSpec& spec, uint64_t rows, uint64_t cols) {
  const uint64_t groups = spec.groups_per_row(cols);
  const uint64_t glen = static_cast<uint64_t>(spec.group_len(cols));
  const uint64_t row_bytes = packed_row_bytes(cols, spec.bits);
  // Row j's codes are already a little-endian bit stream along the inputs: its words go to
  // column j.
  const uint64_t words = cols * spec.bits / 32;
  std::vector<int32_t> qweight(words * rows);
  for (uint64_t j = 0; j < rows; ++j)
    for (uint64_t w = 0; w < words; ++w)
      std::memcpy(&qweight[w * rows + j], &t.codes[j * row_bytes + w * 4], 4);
  const int mask = (1 << spec.bits) - 1, zero_shift = gptq_zeros_minus_one(spec) ? 1 : 0;
  std::vector<int32_t> qzeros;
  std::vector<uint8_t> z(rows);
  for (uint64_t g = 0; g < groups; ++g) {
    for (uint64_t j = 0; j < rows; ++j)
      z[j] = static_cast<uint8_t>((t.zeros[j * groups + g] - zero_shift) & mask);
    const std::vector<int32_t> w = stream_words(z.data(), rows, spec.bits);
    qzeros.insert(qzeros.end(), w.begin(), w.end());
  }
  std::vector<int32_t> g_idx(cols);
  for (uint64_t i = 0; i < cols; ++i) g_idx[i] = static_cast<int32_t>(i / glen);
  return {bytes_of(qweight), bytes_of(qzeros), f16_bytes(transposed(t.scales, rows, groups)),
          bytes_of(g_idx)};
}

// For each input i, outputs 8b..8b+7 in one word, in kAwqOrder.
Parts pack_awq(const AffineTensor& t, const AffineSpec& spec, uint64_t rows, uint64_t cols) {
  const uint64_t groups = spec.groups_per_row(cols);
  const std::vector<uint8_t> q = all_codes(t, 4, rows, cols);
  auto word = [](auto nibble_of) {
    uint32_t v = 0;
    for (int k = 0; k < 8; ++k) v |= static_cast<uint32_t>(nibble_of(kAwqOrder[k]) & 15) << (4 * k);
    return static_cast<int32_t>(v);
  };
  std::vector<int32_t> qweight(cols * rows / 8), qzeros(groups * rows / 8);
  for (uint64_t i = 0; i < cols; ++i)
    for (uint64_t b = 0; b < rows / 8; ++b)
      qweight[i * (rows / 8) + b] = word([&](int k) { return q[(8 * b + k) * cols + i]; });
  for (uint64_t g = 0; g < groups; ++g)
    for (uint64_t b = 0; b < rows / 8; ++b)
      qzeros[g * (rows / 8) + b] = word([&](int k) { return t.zeros[(8 * b + k) * groups + g]; });
  return {bytes_of(qweight), bytes_of(qzeros), f16_bytes(transposed(t.scales, rows, groups))};
}

// weight_packed [rows, words]: each row's codes in whole words; weight_zero_point
// [words of rows, groups]: each group's zeros packed down the outputs.
// W8A8 as int-quantized: signed codes, one scale per row, the static input scale.
Parts pack_int8_weights(const AffineTensor& t, uint64_t rows, uint64_t cols,
                        const W8A8Activations& acts, const std::string& tensor) {
  std::vector<uint8_t> codes(rows * cols);
  for (uint64_t j = 0; j < rows; ++j)
    for (uint64_t i = 0; i < cols; ++i)
      codes[j * cols + i] =
          static_cast<uint8_t>(static_cast<int8_t>(int{t.codes[j * cols + i]} - int{t.zeros[j]}));
  Parts parts = {codes, f16_bytes(t.scales)};
  if (acts.static_scales) {
    auto it = acts.input_scales.find(tensor);
    if (it == acts.input_scales.end())
      fail(ErrorKind::Argument, "tensor '{}' has no static input scale", tensor);
    parts.push_back(from_f32(&it->second, 1, DType::F32));
  }
  return parts;
}

Parts pack_compressed_tensors(const AffineTensor& t, const AffineSpec& spec, uint64_t rows,
                              uint64_t cols) {
  const int bits = spec.bits;
  const uint64_t groups = spec.groups_per_row(cols), row_words = word_count(cols, bits);
  const std::vector<uint8_t> q = all_codes(t, bits, rows, cols);
  std::vector<int32_t> packed(rows * row_words);
  for (uint64_t j = 0; j < rows; ++j) pack_words(&q[j * cols], cols, bits, &packed[j * row_words]);
  const std::vector<int64_t> shape = {static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
  std::vector<uint8_t> shape_bytes(16);
  std::memcpy(shape_bytes.data(), shape.data(), 16);
  Parts parts = {bytes_of(packed), f16_bytes(t.scales)};
  if (!spec.symmetric) {
    std::vector<int32_t> zp(word_count(rows, bits) * groups);
    std::vector<uint8_t> z(rows);
    for (uint64_t g = 0; g < groups; ++g) {
      for (uint64_t j = 0; j < rows; ++j) z[j] = t.zeros[j * groups + g];
      pack_words(z.data(), rows, bits, &zp[g], groups);
    }
    parts.push_back(bytes_of(zp));
  }
  parts.push_back(shape_bytes);
  return parts;
}

}  // namespace

std::vector<std::vector<uint8_t>> pack_affine(AffineFormat format, const AffineTensor& t,
                                              const AffineSpec& spec, uint64_t rows, uint64_t cols,
                                              const W8A8Activations* acts,
                                              const std::string& tensor) {
  if (format == AffineFormat::CompressedTensors && acts)
    return pack_int8_weights(t, rows, cols, *acts, tensor);
  switch (format) {
    case AffineFormat::Gptq:
      return pack_gptq(t, spec, rows, cols);
    case AffineFormat::Awq:
      return pack_awq(t, spec, rows, cols);
    case AffineFormat::CompressedTensors:
      return pack_compressed_tensors(t, spec, rows, cols);
    default:
      fail(ErrorKind::Argument, "layout {} has no packed parts", affine_format_name(format));
  }
}

}  // namespace lowbit::quant

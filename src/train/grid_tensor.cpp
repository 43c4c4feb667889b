// Fixed grids of quantized weights (grid_tensor.h).
#include "train/grid_tensor.h"

#include <algorithm>
#include <cmath>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"

namespace lowbit::train {

GridTensor::GridTensor(DType type, std::vector<uint8_t> bytes, uint64_t rows, uint64_t cols)
    : type_(type), bytes_(std::move(bytes)) {
  const quant::BlockCodec* codec = quant::block_codec(type);
  if (!codec || !codec->choose)
    fail(ErrorKind::Unsupported, "learned rounding: {} is not a block type with a grid per value",
         dtype_name(type));
  const auto& tr = traits(type);
  const uint64_t blen = tr.block_size, n_blocks = rows * cols / blen;
  if (cols % blen || bytes_.size() != n_blocks * tr.type_size)
    fail(ErrorKind::Argument, "learned rounding: {} bytes are not {}x{} values of {}",
         bytes_.size(), rows, cols, tr.name);
  {  // the code range and levels: any block's grid says them
    std::vector<float> ramp(blen);
    for (uint64_t e = 0; e < blen; ++e) ramp[e] = float(e) - float(blen) / 2;
    std::vector<uint8_t> scratch(tr.type_size);
    quant::BlockGrid g;
    codec->choose(ramp.data(), nullptr, scratch.data(), &g);
    n_codes_ = g.n_codes, level_bias_ = g.level_bias, table_ = g.table;
  }
  // Each element's scale and offset from decoding its block with every code 0, then 1.
  scale_.resize(rows * cols), offset_.resize(rows * cols);
  std::vector<uint8_t> block(tr.type_size);
  std::vector<int> codes(blen);
  std::vector<float> v0(blen), v1(blen);
  const float l0 = level(0), l1 = level(1);
  for (uint64_t b = 0; b < n_blocks; ++b) {
    std::copy_n(bytes_.data() + b * tr.type_size, tr.type_size, block.data());
    for (int c : {0, 1}) {
      std::fill(codes.begin(), codes.end(), c);
      codec->set_codes(codes.data(), block.data());
      codec->dequantize(block.data(), c == 0 ? v0.data() : v1.data());
    }
    for (uint64_t e = 0; e < blen; ++e) {
      const float s = (v1[e] - v0[e]) / (l1 - l0);
      scale_[b * blen + e] = s;
      offset_[b * blen + e] = v0[e] - s * l0;
    }
  }
}

float GridTensor::level(float code) const {
  if (!table_) return code - float(level_bias_);
  const int k = std::clamp(int(std::floor(code)), 0, n_codes_ - 2);
  return table_[k] + (code - float(k)) * float(table_[k + 1] - table_[k]);
}

float GridTensor::slope(uint64_t i, float code) const {
  if (!table_) return scale_[i];
  const int k = std::clamp(int(std::floor(code)), 0, n_codes_ - 2);
  return scale_[i] * float(table_[k + 1] - table_[k]);
}

float GridTensor::position(uint64_t i, float x) const {
  if (scale_[i] == 0) return 0;
  const float y = (x - offset_[i]) / scale_[i];
  const float top = float(n_codes_ - 1);
  if (!table_) return std::clamp(y + float(level_bias_), 0.0f, top);
  if (y <= table_[0]) return 0;
  if (y >= table_[n_codes_ - 1]) return top;
  const int k = int(std::upper_bound(table_, table_ + n_codes_, y) - table_) -
                1;  // table[k] <= y < table[k+1]
  return float(k) + (y - table_[k]) / float(table_[k + 1] - table_[k]);
}

std::vector<int> GridTensor::start_codes() const {
  std::vector<float> x(size());
  dequantize_values(type_, bytes_.data(), size(), x.data());
  std::vector<int> codes(size());
  for (uint64_t i = 0; i < size(); ++i) codes[i] = int(std::lround(position(i, x[i])));
  return codes;
}

std::vector<uint8_t> GridTensor::encode(const std::vector<int>& codes) const {
  const quant::BlockCodec* codec = quant::block_codec(type_);
  const auto& tr = traits(type_);
  if (codes.size() != size())
    fail(ErrorKind::Argument, "learned rounding: {} codes for {} values", codes.size(), size());
  std::vector<uint8_t> out = bytes_;
  for (uint64_t b = 0; b < size() / tr.block_size; ++b)
    codec->set_codes(codes.data() + b * tr.block_size, out.data() + b * tr.type_size);
  return out;
}

std::vector<float> GridTensor::decode(const std::vector<int>& codes) const {
  const std::vector<uint8_t> bytes = encode(codes);
  std::vector<float> x(size());
  dequantize_values(type_, bytes.data(), size(), x.data());
  return x;
}

}  // namespace lowbit::train

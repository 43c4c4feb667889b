// Trained f16 scale fields of quantized tensors (scale_training.h).
#include "train/scale_training.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/quant.h"
#include "quant/block_layouts.h"

namespace lowbit::train {
namespace {

uint16_t field_at(const uint8_t* block, size_t offset) {
  uint16_t v;
  std::memcpy(&v, block + offset, sizeof v);
  return v;
}

void set_field(uint8_t* block, size_t offset, uint16_t v) {
  std::memcpy(block + offset, &v, sizeof v);
}

}  // namespace

TrainedScales::TrainedScales(std::string name, DType t, std::vector<uint8_t> bytes, size_t n_values)
    : name_(std::move(name)),
      type_(t),
      offsets_(quant::f16_scale_offsets(t)),
      bytes_(std::move(bytes)) {
  if (offsets_.empty())
    fail(ErrorKind::Argument, "'{}': {} has no block scales to train", name_, dtype_name(t));
  block_bytes_ = traits(t).type_size, block_values_ = traits(t).block_size;
  n_blocks_ = n_values / block_values_;
  if (n_values % block_values_ || bytes_.size() != n_blocks_ * block_bytes_)
    fail(ErrorKind::Argument, "'{}': {} bytes do not hold {} values of {}", name_, bytes_.size(),
         n_values, dtype_name(t));
  const size_t F = offsets_.size();
  f0_.resize(n_blocks_ * F), theta_.assign(n_blocks_ * F, 0.0f);
  for (size_t b = 0; b < n_blocks_; ++b)
    for (size_t f = 0; f < F; ++f)
      f0_[b * F + f] = f16_to_f32(field_at(&bytes_[b * block_bytes_], offsets_[f]));
  for (size_t f = 0; f < F; ++f) {  // field f at 1, the others at 0, in every block
    std::vector<uint8_t> unit = bytes_;
    for (size_t b = 0; b < n_blocks_; ++b)
      for (size_t g = 0; g < F; ++g)
        set_field(&unit[b * block_bytes_], offsets_[g], f32_to_f16(g == f ? 1.0f : 0.0f));
    unit_.emplace_back(n_values);
    dequantize_values(t, unit.data(), n_values, unit_.back().data());
  }
}

std::vector<uint8_t> TrainedScales::bytes() const {
  std::vector<uint8_t> out = bytes_;
  const size_t F = offsets_.size();
  for (size_t b = 0; b < n_blocks_; ++b)
    for (size_t f = 0; f < F; ++f)
      set_field(&out[b * block_bytes_], offsets_[f],
                f32_to_f16(f0_[b * F + f] * (1.0f + theta_[b * F + f])));
  return out;
}

void TrainedScales::decode(std::vector<float>& w) const {
  const std::vector<uint8_t> now = bytes();
  w.resize(n_blocks_ * block_values_);
  dequantize_values(type_, now.data(), w.size(), w.data());
}

void TrainedScales::backward(const std::vector<float>& dw, std::vector<float>& dtheta) const {
  const size_t F = offsets_.size();
  dtheta.assign(theta_.size(), 0.0f);
  for (size_t b = 0; b < n_blocks_; ++b)
    for (size_t f = 0; f < F; ++f) {
      const float* unit = unit_[f].data() + b * block_values_;
      const float* g = dw.data() + b * block_values_;
      double sum = 0;
      for (size_t i = 0; i < block_values_; ++i) sum += double(g[i]) * unit[i];
      dtheta[b * F + f] = float(f0_[b * F + f] * sum);
    }
}

Model with_trained_scales(const Model& m, const std::map<std::string, TrainedScales>& scales) {
  Model out = m;
  for (TensorView& t : out.tensors) {
    const auto it = scales.find(t.name);
    if (it == scales.end()) continue;
    auto bytes = std::make_shared<std::vector<uint8_t>>(it->second.bytes());
    t = view_of_bytes(t, it->second.type(), *bytes);
    out.storage.push_back(bytes);
  }
  out.index();
  return out;
}

std::vector<float>* linear_of(ModelWeights<float>& w, const std::string& name) {
  unsigned layer = 0;
  char rest[64] = {};
  if (std::sscanf(name.c_str(), "blk.%u.%63[^.].weight", &layer, rest) != 2 ||
      layer >= w.blocks.size())
    return nullptr;
  for (int i = 0; i < 7; ++i)
    if (name == "blk." + std::to_string(layer) + "." + kLinearNames[i] + ".weight")
      return w.blocks[layer].linear(i);
  return nullptr;
}

std::map<std::string, TrainedScales> trained_scales(const Model& student,
                                                    const std::map<std::string, DType>& types,
                                                    const ModelWeights<float>& w, int n_threads) {
  std::map<std::string, TrainedScales> out;
  auto& weights = const_cast<ModelWeights<float>&>(w);  // (read only)
  for (const auto& [name, type] : types) {
    const TensorView& t = student.tensor(name);
    std::vector<uint8_t> bytes;
    if (t.dtype == type) {
      bytes.assign(t.data, t.data + t.nbytes);
    } else {
      const std::vector<float>* v = linear_of(weights, name);
      if (!v) fail(ErrorKind::Argument, "'{}' is not a block linear", name);
      uint64_t n = 0;
      if (!tensor_bytes(type, t.row_len(), v->size(), &n))
        fail(ErrorKind::Argument, "'{}': rows of {} cannot be {}", name, t.row_len(),
             dtype_name(type));
      bytes.resize(n);
      quantize_rows(type, v->data(), t.n_rows(), t.row_len(), nullptr, n_threads, bytes.data());
    }
    out.emplace(name, TrainedScales(name, type, std::move(bytes), t.n_values()));
  }
  return out;
}

}  // namespace lowbit::train

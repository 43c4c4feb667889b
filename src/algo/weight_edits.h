// f32 copies of the tensors an algorithm changes (SmoothQuant, rotations), by GGUF name,
// decoded from the model's type when first touched; commit() puts them into a copy of the
// model as tensors it owns.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "lowbit/error.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"

namespace lowbit {

// Tensor `name` of `m` decoded to f32 (any float or block type); Unsupported naming the
// tensor otherwise.
inline std::vector<float> decoded_f32(const Model& m, const std::string& name) {
  const TensorView& t = m.tensor(name);
  if (!can_dequantize(t.dtype))
    fail(ErrorKind::Unsupported, "{}: tensor '{}' of type {} cannot be decoded to f32", m.source,
         name, dtype_name(t.dtype));
  std::vector<float> v(t.n_values());
  dequantize_values(t.dtype, t.data, v.size(), v.data());
  return v;
}

struct WeightEdits {
  const Model& m;
  std::map<std::string, std::vector<float>> values;

  std::vector<float>& get(const std::string& name) {
    auto it = values.find(name);
    if (it == values.end()) it = values.emplace(name, decoded_f32(m, name)).first;
    return it->second;
  }
  uint64_t rows(const std::string& name) const { return m.tensor(name).shape[0]; }
  // m with every touched tensor replaced by its f32 values.
  Model commit() && {
    Model out = m;
    for (auto& [name, v] : values) out.set_f32(name, std::move(v));
    return out;
  }
};

}  // namespace lowbit

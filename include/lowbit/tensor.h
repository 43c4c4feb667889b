// Tensor descriptions and non-owning views of tensor bytes.
// Shapes are listed outermost first (numpy / Hugging Face order): a linear layer's weight
// is [out_features, in_features] and its rows are contiguous. GGUF lists dimensions the
// other way round (ne[0] innermost); the GGUF code reverses them at the file boundary.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<uint64_t> shape;

  uint64_t n_values() const {
    uint64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
  uint64_t row_len() const { return shape.empty() ? 1 : shape.back(); }
  uint64_t n_rows() const { return row_len() ? n_values() / row_len() : 0; }
};

struct TensorView : TensorInfo {
  const uint8_t* data = nullptr;
  uint64_t nbytes = 0;
};

// A tensor to be written: its description and a callback that produces its bytes when
// the writer reaches it, so writers hold one tensor in memory at a time.
struct OutputTensor {
  TensorInfo info;
  uint64_t nbytes = 0;
  std::function<void(std::vector<uint8_t>& bytes)> produce;
};

std::string shape_string(const std::vector<uint64_t>& shape);

// `info` (name, shape) read as `type` from `bytes`, which must outlive the view: a tensor
// quantized in memory, e.g. to swap into an Engine with replace_weight.
TensorView view_of_bytes(const TensorInfo& info, DType type, const std::vector<uint8_t>& bytes);
// Rows [r0, r1) of a matrix `t` (any type whose rows are whole blocks), as a view.
TensorView row_slice(const TensorView& t, uint64_t r0, uint64_t r1);

// Converts plain float tensors (F32/F16/BF16/F64/F8) to f32. Quantized types are
// handled by the quant library. Throws Unsupported for integer types.
void to_f32(const TensorView& t, float* out);
std::vector<float> to_f32(const TensorView& t);
// Encodes f32 values as a plain float dtype (F32/F16/BF16/F8_*).
std::vector<uint8_t> from_f32(const float* x, uint64_t n, DType dtype);

}  // namespace lowbit

namespace lowbit {
// Dequantizes rows [row0, row0 + n_rows) of a 2-D (or 1-D) tensor into f32 `out`
// ([n_rows, row_len]). Plain float types here; block-quantized types through the quant
// library's traits.
void dequantize_rows(const TensorView& t, uint64_t row0, uint64_t n_rows, float* out);
}  // namespace lowbit

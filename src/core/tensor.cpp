#include "lowbit/tensor.h"

#include <cstring>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/quant.h"

namespace lowbit {

TensorView view_of_bytes(const TensorInfo& info, DType type, const std::vector<uint8_t>& bytes) {
  TensorView v;
  static_cast<TensorInfo&>(v) = info;
  v.dtype = type;
  v.data = bytes.data();
  v.nbytes = bytes.size();
  return v;
}

std::string shape_string(const std::vector<uint64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

void to_f32(const TensorView& t, float* out) {
  const uint64_t n = t.n_values();
  // An empty tensor's output may be null, and memcpy(nullptr, p, 0) is undefined (UBSan, found
  // by fuzz_imatrix on a GGUF tensor with a zero dimension).
  if (n == 0) return;
  const uint8_t* p = t.data;
  switch (t.dtype) {
    case DType::F32:
      std::memcpy(out, p, n * 4);
      return;
    case DType::F16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = f16_to_f32(h);
      }
      return;
    case DType::BF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, p + 2 * i, 2);
        out[i] = bf16_to_f32(h);
      }
      return;
    case DType::F64:
      for (uint64_t i = 0; i < n; ++i) {
        double d;
        std::memcpy(&d, p + 8 * i, 8);
        out[i] = static_cast<float>(d);
      }
      return;
    case DType::F8_E4M3:
      for (uint64_t i = 0; i < n; ++i) out[i] = e4m3_to_f32(p[i]);
      return;
    case DType::F8_E5M2:
      for (uint64_t i = 0; i < n; ++i) out[i] = e5m2_to_f32(p[i]);
      return;
    default:
      if (can_dequantize(t.dtype)) {
        dequantize_values(t.dtype, p, n, out);
        return;
      }
      fail(ErrorKind::Unsupported, "tensor '{}': cannot convert dtype {} to f32", t.name,
           dtype_name(t.dtype));
  }
}

std::vector<float> to_f32(const TensorView& t) {
  std::vector<float> out(t.n_values());
  to_f32(t, out.data());
  return out;
}

std::vector<uint8_t> from_f32(const float* x, uint64_t n, DType dtype) {
  std::vector<uint8_t> out(n * traits(dtype).type_size);
  uint8_t* p = out.data();
  switch (dtype) {
    case DType::F32:
      std::memcpy(p, x, n * 4);
      break;
    case DType::F16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_f16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::BF16:
      for (uint64_t i = 0; i < n; ++i) {
        uint16_t h = f32_to_bf16(x[i]);
        std::memcpy(p + 2 * i, &h, 2);
      }
      break;
    case DType::F8_E4M3:
      for (uint64_t i = 0; i < n; ++i) p[i] = f32_to_e4m3(x[i]);
      break;
    case DType::F8_E5M2:
      for (uint64_t i = 0; i < n; ++i) p[i] = f32_to_e5m2(x[i]);
      break;
    default:
      fail(ErrorKind::Unsupported, "cannot encode f32 values as {}", dtype_name(dtype));
  }
  return out;
}

}  // namespace lowbit

namespace lowbit {

void dequantize_rows(const TensorView& t, uint64_t row0, uint64_t n_rows, float* out) {
  const uint64_t row_len = t.row_len();
  const auto& tr = traits(t.dtype);
  if (!can_dequantize(t.dtype))
    fail(ErrorKind::Unsupported, "tensor '{}': cannot dequantize dtype {}", t.name, tr.name);
  const uint64_t row_bytes = row_len / tr.block_size * tr.type_size;
  dequantize_values(t.dtype, t.data + row0 * row_bytes, n_rows * row_len, out);
}

TensorView row_slice(const TensorView& t, uint64_t r0, uint64_t r1) {
  const uint64_t bytes_per_row = t.nbytes / t.n_rows();
  TensorView v = t;
  v.shape = {r1 - r0, t.row_len()};
  v.data = t.data + r0 * bytes_per_row;
  v.nbytes = (r1 - r0) * bytes_per_row;
  return v;
}

}  // namespace lowbit

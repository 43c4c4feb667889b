// bitsandbytes 4-bit and 8-bit linears read back to f32 (bnb_format.h).
#include "quant/bnb_format.h"

#include <nlohmann/json.hpp>

#include "core/names.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"

namespace lowbit::quant {
namespace {

struct BnbParts {
  const std::vector<const TensorView*>& all;
  const std::string& base;
  const std::string& source;

  const TensorView* find(const std::string& suffix, bool needed) const {
    for (const TensorView* t : all)
      if (t->name == base + suffix) return t;
    if (needed) fail(ErrorKind::Format, "{}: tensor '{}{}' is missing", source, base, suffix);
    return nullptr;
  }
  // A float tensor of exactly n values.
  std::vector<float> floats(const TensorView* t, uint64_t n) const {
    if (t->dtype != DType::F32 && t->dtype != DType::F16 && t->dtype != DType::BF16)
      fail(ErrorKind::Format, "{}: tensor '{}' is {}, expected F32", source, t->name,
           dtype_name(t->dtype));
    if (t->n_values() != n)
      fail(ErrorKind::Format, "{}: tensor '{}' has {} values, expected {}", source, t->name,
           t->n_values(), n);
    return to_f32(*t);
  }
};

std::vector<float> dequantize_4bit(const BnbParts& p, const TensorView* w, uint64_t* rows,
                                   uint64_t* cols) {
  const TensorView* state = nullptr;
  for (const char* type : {"nf4", "fp4"})
    if (!state) state = p.find(std::string(".weight.quant_state.bitsandbytes__") + type, false);
  if (!state)
    fail(ErrorKind::Format,
         "{}: tensor '{}.weight.quant_state.bitsandbytes__nf4' (or __fp4) is "
         "missing",
         p.source, p.base);
  nlohmann::json s;
  uint64_t blocksize = 0, nested_blocksize = 0;
  float nested_offset = 0;
  bool nested = false;
  try {
    s = nlohmann::json::parse(
        std::string(reinterpret_cast<const char*>(state->data), state->nbytes));
    const auto& shape = s.at("shape");
    if (!shape.is_array() || shape.size() != 2)
      fail(ErrorKind::Format, "{}: '{}': key 'shape' must be [rows, cols], got {}", p.source,
           state->name, shape.dump());
    const int64_t r = shape[0].get<int64_t>(), c = shape[1].get<int64_t>();
    if (r <= 0 || c <= 0 || r > (int64_t{1} << 24) || c > (int64_t{1} << 24))
      fail(ErrorKind::Format, "{}: '{}': key 'shape' {} is not a weight shape", p.source,
           state->name, shape.dump());
    *rows = static_cast<uint64_t>(r), *cols = static_cast<uint64_t>(c);
    blocksize = s.at("blocksize").get<uint64_t>();
    nested = s.contains("nested_blocksize");
    if (nested) {
      nested_blocksize = s.at("nested_blocksize").get<uint64_t>();
      nested_offset = s.at("nested_offset").get<float>();
    }
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: '{}' is not a bitsandbytes quant state: {}", p.source, state->name,
         e.what());
  }
  if (blocksize < 32 || blocksize > 4096 || (blocksize & (blocksize - 1)) != 0)
    fail(ErrorKind::Format, "{}: '{}': blocksize {} is not a power of 2 in 32..4096", p.source,
         state->name, blocksize);
  if (nested && nested_blocksize == 0)
    fail(ErrorKind::Format, "{}: '{}': nested_blocksize is 0", p.source, state->name);
  const uint64_t n = *rows * *cols, blocks = (n + blocksize - 1) / blocksize;
  if (w->dtype != DType::U8 || w->nbytes < (n + 1) / 2)
    fail(ErrorKind::Format, "{}: tensor '{}' ({}, {} bytes) cannot hold {} 4-bit codes", p.source,
         w->name, dtype_name(w->dtype), w->nbytes, n);
  const std::vector<float> table = p.floats(p.find(".weight.quant_map", true), 16);
  const TensorView* am = p.find(".weight.absmax", true);
  std::vector<float> absmax;
  if (nested) {  // u8 codes of (absmax - offset), blockwise over runs of nested_blocksize
    if (am->dtype != DType::U8 || am->n_values() != blocks)
      fail(ErrorKind::Format, "{}: tensor '{}' must be U8 [{}] with double quantization", p.source,
           am->name, blocks);
    const std::vector<float> map = p.floats(p.find(".weight.nested_quant_map", true), 256);
    const std::vector<float> nabs = p.floats(p.find(".weight.nested_absmax", true),
                                             (blocks + nested_blocksize - 1) / nested_blocksize);
    absmax.resize(blocks);
    for (uint64_t b = 0; b < blocks; ++b)
      absmax[b] = map[am->data[b]] * nabs[b / nested_blocksize] + nested_offset;
  } else {
    absmax = p.floats(am, blocks);
  }
  std::vector<float> out(n);
  for (uint64_t k = 0; k < n; ++k) {
    const uint8_t byte = w->data[k / 2];
    const int code = k % 2 == 0 ? byte >> 4 : byte & 15;
    out[k] = table[code] * absmax[k / blocksize];
  }
  return out;
}

std::vector<float> dequantize_8bit(const BnbParts& p, const TensorView* w, uint64_t* rows,
                                   uint64_t* cols) {
  if (w->shape.size() != 2)
    fail(ErrorKind::Format, "{}: tensor '{}' must be a matrix, not {}", p.source, w->name,
         shape_string(w->shape));
  *rows = w->shape[0], *cols = w->shape[1];
  if (const TensorView* f = p.find(".weight_format", false))
    if (f->nbytes < 1 || f->data[0] != 0)
      fail(ErrorKind::Unsupported, "{}: tensor '{}': only the row-major format (0) is read",
           p.source, f->name);
  const std::vector<float> scb = p.floats(p.find(".SCB", true), *rows);
  const auto* q = reinterpret_cast<const int8_t*>(w->data);
  std::vector<float> out(*rows * *cols);
  for (uint64_t r = 0; r < *rows; ++r)
    for (uint64_t i = 0; i < *cols; ++i)  // bitsandbytes multiplies by 1/127 in f32
      out[r * *cols + i] = static_cast<float>(q[r * *cols + i]) * (scb[r] * 7.874015718698502e-3f);
  return out;
}

}  // namespace

std::string bnb_linear_of(const std::string& name) {
  if (const size_t at = name.rfind(".weight."); at != std::string::npos) return name.substr(0, at);
  for (const char* suffix : {".SCB", ".weight_format"})
    if (has_suffix(name, suffix)) return name.substr(0, name.size() - std::string(suffix).size());
  return "";
}

std::vector<float> dequantize_bnb_linear(const std::string& base,
                                         const std::vector<const TensorView*>& parts,
                                         const std::string& source, uint64_t* rows,
                                         uint64_t* cols) {
  const BnbParts p{parts, base, source};
  const TensorView* w = p.find(".weight", true);
  if (w->dtype == DType::I8) return dequantize_8bit(p, w, rows, cols);
  return dequantize_4bit(p, w, rows, cols);
}

}  // namespace lowbit::quant

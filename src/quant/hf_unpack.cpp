// GPTQ, AWQ and compressed-tensors linears read back into codes, zeros and scales, checked
// part by part, then dequantized (hf_formats.h).
#include <algorithm>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "quant/hf_formats.h"
#include "quant/packed_words.h"

namespace lowbit::quant {
namespace {

// One linear in lowbit's terms; zeros are the true zero points (GPTQ v1's z - 1 undone).
struct Decoded {
  uint64_t rows = 0, cols = 0, groups = 0;
  std::vector<uint8_t> q;      // [rows, cols]
  std::vector<int> z;          // [rows, groups]
  std::vector<float> s;        // [rows, groups]
  std::vector<int32_t> g_idx;  // [cols], empty: consecutive groups of group_size
};

// The parts of linear `base`, looked up and checked with messages naming them.
struct Parts {
  const std::vector<const TensorView*>& all;
  const std::string& base;
  const std::string& source;

  const TensorView* find(const char* suffix, bool needed) const {
    for (const TensorView* t : all)
      if (t->name == base + suffix) return t;
    if (needed) fail(ErrorKind::Format, "{}: tensor '{}{}' is missing", source, base, suffix);
    return nullptr;
  }
  void dtype(const TensorView* t, std::initializer_list<DType> allowed) const {
    for (DType d : allowed)
      if (t->dtype == d) return;
    fail(ErrorKind::Format, "{}: tensor '{}' is {}, expected {}", source, t->name,
         dtype_name(t->dtype), dtype_name(*allowed.begin()));
  }
  void shape(const TensorView* t, const std::vector<uint64_t>& want) const {
    if (t->shape != want)
      fail(ErrorKind::Format, "{}: tensor '{}' has shape {}, expected {}", source, t->name,
           shape_string(t->shape), shape_string(want));
  }
  void expect(const TensorView* t, DType dt, const std::vector<uint64_t>& want) const {
    dtype(t, {dt});
    shape(t, want);
  }
  void matrix(const TensorView* t) const {
    if (t->shape.size() != 2)
      fail(ErrorKind::Format, "{}: tensor '{}' must be a matrix, not {}", source, t->name,
           shape_string(t->shape));
  }
  std::vector<int32_t> g_idx(const TensorView* t, uint64_t cols) const {
    expect(t, DType::I32, {cols});
    std::vector<int32_t> g(cols);
    std::memcpy(g.data(), t->data, cols * 4);
    return g;
  }
};

const int32_t* words_of(const TensorView* t) {
  return reinterpret_cast<const int32_t*>(t->data);
}

Decoded decode_gptq(const HfQuantConfig& c, const Parts& p) {
  const TensorView* qw = p.find(".qweight", true);
  const TensorView* qz = p.find(".qzeros", true);
  const TensorView* sc = p.find(".scales", true);
  p.matrix(qw), p.matrix(sc);
  const int bits = c.bits;
  Decoded d;
  d.rows = sc->shape[1], d.groups = sc->shape[0];
  // The inputs: g_idx's length when there is one, else what qweight's rows hold.
  const TensorView* gi = p.find(".g_idx", false);
  if (gi && (gi->dtype != DType::I32 || gi->shape.size() != 1))
    fail(ErrorKind::Format, "{}: tensor '{}' must be a vector of I32, not {} {}", p.source,
         gi->name, dtype_name(gi->dtype), shape_string(gi->shape));
  if (!gi && qw->shape[0] * 32 % bits != 0)
    fail(ErrorKind::Format, "{}: tensor '{}.qweight' has {} rows: not whole {}-bit codes", p.source,
         p.base, qw->shape[0], bits);
  d.cols = gi ? gi->shape[0] : qw->shape[0] * 32 / bits;
  if (d.cols * bits % 32 != 0 || d.rows * bits % 32 != 0)
    fail(ErrorKind::Format, "{}: '{}' [{}, {}]: not whole 32-bit words of {}-bit codes", p.source,
         p.base, d.rows, d.cols, bits);
  p.expect(sc, DType::F16, {d.groups, d.rows});
  p.expect(qw, DType::I32, {d.cols * bits / 32, d.rows});
  p.expect(qz, DType::I32, {d.groups, d.rows * bits / 32});
  if (gi) d.g_idx = p.g_idx(gi, d.cols);
  d.s = transposed(to_f32(*sc), d.groups, d.rows);
  d.q.resize(d.rows * d.cols);
  std::vector<int32_t> column(d.cols * bits / 32);
  for (uint64_t j = 0; j < d.rows; ++j) {
    for (uint64_t w = 0; w < column.size(); ++w) column[w] = words_of(qw)[w * d.rows + j];
    unstream_words(column.data(), d.cols, bits, &d.q[j * d.cols]);
  }
  std::vector<uint8_t> z(d.groups * d.rows);
  for (uint64_t g = 0; g < d.groups; ++g)
    unstream_words(words_of(qz) + g * (d.rows * bits / 32), d.rows, bits, &z[g * d.rows]);
  d.z.resize(z.size());
  const int shift = c.zeros_minus_one ? 1 : 0;
  for (uint64_t j = 0; j < d.rows; ++j)
    for (uint64_t g = 0; g < d.groups; ++g)  // v1: z - 1 per field, so 2^bits - 1 means 0
      d.z[j * d.groups + g] = (z[g * d.rows + j] + shift) & ((1 << bits) - 1);
  return d;
}

Decoded decode_awq(const Parts& p) {
  const TensorView* qw = p.find(".qweight", true);
  const TensorView* qz = p.find(".qzeros", true);
  const TensorView* sc = p.find(".scales", true);
  p.matrix(qw), p.matrix(sc);
  Decoded d;
  d.rows = sc->shape[1], d.groups = sc->shape[0], d.cols = qw->shape[0];
  if (d.rows % 8 != 0)
    fail(ErrorKind::Format, "{}: tensor '{}.scales' has {} outputs, not a multiple of 8", p.source,
         p.base, d.rows);
  p.expect(sc, DType::F16, {d.groups, d.rows});
  p.expect(qw, DType::I32, {d.cols, d.rows / 8});
  p.expect(qz, DType::I32, {d.groups, d.rows / 8});
  d.s = transposed(to_f32(*sc), d.groups, d.rows);
  d.q.resize(d.rows * d.cols);
  d.z.resize(d.rows * d.groups);
  auto nibbles = [](int32_t word, auto&& put) {
    for (int k = 0; k < 8; ++k) put(kAwqOrder[k], (static_cast<uint32_t>(word) >> (4 * k)) & 15);
  };
  for (uint64_t i = 0; i < d.cols; ++i)
    for (uint64_t b = 0; b < d.rows / 8; ++b)
      nibbles(words_of(qw)[i * (d.rows / 8) + b],
              [&](int k, uint32_t v) { d.q[(8 * b + k) * d.cols + i] = static_cast<uint8_t>(v); });
  for (uint64_t g = 0; g < d.groups; ++g)
    for (uint64_t b = 0; b < d.rows / 8; ++b)
      nibbles(words_of(qz)[g * (d.rows / 8) + b],
              [&](int k, uint32_t v) { d.z[(8 * b + k) * d.groups + g] = static_cast<int>(v); });
  return d;
}

Decoded decode_compressed_tensors(const HfQuantConfig& c, const Parts& p) {
  const TensorView* packed = p.find(".weight_packed", true);
  const TensorView* sc = p.find(".weight_scale", true);
  const TensorView* shape = p.find(".weight_shape", true);
  p.matrix(packed), p.matrix(sc);
  p.dtype(shape, {DType::I64, DType::I32});
  if (shape->shape != std::vector<uint64_t>{2})
    fail(ErrorKind::Format, "{}: tensor '{}' must hold [outputs, inputs], not shape {}", p.source,
         shape->name, shape_string(shape->shape));
  int64_t dims[2];
  for (int k = 0; k < 2; ++k)
    dims[k] = shape->dtype == DType::I64 ? reinterpret_cast<const int64_t*>(shape->data)[k]
                                         : reinterpret_cast<const int32_t*>(shape->data)[k];
  if (dims[0] <= 0 || dims[1] <= 0 || dims[0] > (int64_t{1} << 24) || dims[1] > (int64_t{1} << 24))
    fail(ErrorKind::Format, "{}: tensor '{}' = [{}, {}] is not a weight shape", p.source,
         shape->name, dims[0], dims[1]);
  const int bits = c.bits;
  Decoded d;
  d.rows = static_cast<uint64_t>(dims[0]), d.cols = static_cast<uint64_t>(dims[1]);
  d.groups = sc->shape[1];
  p.expect(packed, DType::I32, {d.rows, word_count(d.cols, bits)});
  p.dtype(sc, {DType::F16, DType::BF16, DType::F32});
  p.shape(sc, {d.rows, d.groups});
  d.s = to_f32(*sc);
  d.q.resize(d.rows * d.cols);
  for (uint64_t j = 0; j < d.rows; ++j)
    unpack_words(words_of(packed) + j * word_count(d.cols, bits), d.cols, bits, &d.q[j * d.cols]);
  d.z.assign(d.rows * d.groups, 1 << (bits - 1));  // symmetric: signed codes, no zero point
  if (const TensorView* zp = p.find(".weight_zero_point", !c.symmetric)) {
    if (zp->dtype == DType::I8) {  // before compressed-tensors 0.9.4: signed, unpacked
      p.shape(zp, {d.rows, d.groups});
      for (uint64_t k = 0; k < d.z.size(); ++k)
        d.z[k] = reinterpret_cast<const int8_t*>(zp->data)[k] + (1 << (bits - 1));
    } else {  // packed down the outputs, unsigned
      p.expect(zp, DType::I32, {word_count(d.rows, bits), d.groups});
      std::vector<uint8_t> z(d.rows);
      for (uint64_t g = 0; g < d.groups; ++g) {
        unpack_words(words_of(zp) + g, d.rows, bits, z.data(), d.groups);
        for (uint64_t j = 0; j < d.rows; ++j) d.z[j * d.groups + g] = z[j];
      }
    }
  }
  if (const TensorView* gi = p.find(".weight_g_idx", false)) d.g_idx = p.g_idx(gi, d.cols);
  return d;
}

// A weight_scale of shape [rows, groups], [rows, 1] or ([1] or [1, 1]) per tensor, as
// [rows, groups] f32 values.
std::vector<float> scales_per_group(const TensorView* sc, uint64_t rows, uint64_t groups,
                                    bool per_tensor, const Parts& p) {
  p.dtype(sc, {DType::F16, DType::BF16, DType::F32});
  if (per_tensor) {
    if (sc->n_values() != 1)
      fail(ErrorKind::Format, "{}: tensor '{}' has shape {}, expected one scale per tensor",
           p.source, sc->name, shape_string(sc->shape));
    return std::vector<float>(rows * groups, to_f32(*sc)[0]);
  }
  p.shape(sc, {rows, groups});
  return to_f32(*sc);
}

// int-quantized / naive-quantized: signed codes, one int8 per weight, in "<linear>.weight".
Decoded decode_int8_codes(const HfQuantConfig& c, const Parts& p) {
  const TensorView* w = p.find(".weight", true);
  const TensorView* sc = p.find(".weight_scale", true);
  p.matrix(w);
  p.dtype(w, {DType::I8});
  Decoded d;
  d.rows = w->shape[0], d.cols = w->shape[1];
  const uint64_t glen = c.group_size > 0 ? static_cast<uint64_t>(c.group_size) : d.cols;
  d.groups = (d.cols + glen - 1) / glen;
  d.s = scales_per_group(sc, d.rows, d.groups, c.per_tensor, p);
  const int offset = 1 << (c.bits - 1);
  const auto* codes = reinterpret_cast<const int8_t*>(w->data);
  d.q.resize(d.rows * d.cols);
  for (uint64_t k = 0; k < d.q.size(); ++k) {
    if (codes[k] < -offset || codes[k] >= offset)
      fail(ErrorKind::Format, "{}: tensor '{}' holds {} at {}, outside {}-bit codes", p.source,
           w->name, int{codes[k]}, k, c.bits);
    d.q[k] = static_cast<uint8_t>(codes[k] + offset);
  }
  d.z.assign(d.rows * d.groups, offset);
  if (const TensorView* zp = p.find(".weight_zero_point", !c.symmetric)) {
    p.dtype(zp, {DType::I8});
    if (c.per_tensor ? zp->n_values() != 1 : zp->shape != std::vector<uint64_t>{d.rows, d.groups})
      fail(ErrorKind::Format, "{}: tensor '{}' has shape {}, expected that of its scales", p.source,
           zp->name, shape_string(zp->shape));
    const auto* z = reinterpret_cast<const int8_t*>(zp->data);
    for (uint64_t k = 0; k < d.z.size(); ++k) d.z[k] = offset + z[c.per_tensor ? 0 : k];
  }
  if (const TensorView* gi = p.find(".weight_g_idx", false)) d.g_idx = p.g_idx(gi, d.cols);
  return d;
}

// Checks the groups against the config and g_idx: each group holds group_size inputs (the
// last one the rest), in any order when the checkpoint was made in act order.
void check_groups(const Decoded& d, uint64_t glen, const Parts& p, const char* scales_suffix,
                  const char* g_idx_suffix) {
  const uint64_t expected = (d.cols + glen - 1) / glen;
  if (d.groups != expected)
    fail(ErrorKind::Format, "{}: tensor '{}{}' has {} groups; {} inputs in groups of {} make {}",
         p.source, p.base, scales_suffix, d.groups, d.cols, glen, expected);
  if (d.g_idx.empty()) return;
  std::vector<uint64_t> members(d.groups, 0);
  for (uint64_t i = 0; i < d.cols; ++i) {
    if (d.g_idx[i] < 0 || static_cast<uint64_t>(d.g_idx[i]) >= d.groups)
      fail(ErrorKind::Format, "{}: tensor '{}{}'[{}] = {} is outside its {} groups", p.source,
           p.base, g_idx_suffix, i, d.g_idx[i], d.groups);
    ++members[d.g_idx[i]];
  }
  for (uint64_t g = 0; g < d.groups; ++g)
    if (members[g] != std::min(glen, d.cols - g * glen))
      fail(ErrorKind::Format, "{}: tensor '{}{}' puts {} inputs in group {}, not {}", p.source,
           p.base, g_idx_suffix, members[g], g, std::min(glen, d.cols - g * glen));
}

}  // namespace

std::vector<float> dequantize_hf_linear(const HfQuantConfig& c, const std::string& base,
                                        const std::vector<const TensorView*>& parts,
                                        const std::string& source, uint64_t* rows_out,
                                        uint64_t* cols_out, AffineWeight* grid) {
  const Parts p{parts, base, source};
  const bool ct = c.format == AffineFormat::CompressedTensors;
  const bool int8_codes = ct && c.storage == HfQuantConfig::Storage::Int8;
  const Decoded d = c.format == AffineFormat::Gptq ? decode_gptq(c, p)
                    : !ct                          ? decode_awq(p)
                    : int8_codes                   ? decode_int8_codes(c, p)
                                                   : decode_compressed_tensors(c, p);
  for (const int z : d.z)
    if (z < 0 || z > (1 << c.bits))
      fail(ErrorKind::Format, "{}: '{}' has a zero point of {}, outside its {}-bit codes", source,
           base, z, c.bits);
  const uint64_t glen = c.group_size > 0 ? static_cast<uint64_t>(c.group_size) : d.cols;
  check_groups(d, glen, p, ct ? ".weight_scale" : ".scales", ct ? ".weight_g_idx" : ".g_idx");
  auto group_of = [&](uint64_t i) {
    return d.g_idx.empty() ? i / glen : static_cast<uint64_t>(d.g_idx[i]);
  };
  std::vector<float> w(d.rows * d.cols);
  for (uint64_t j = 0; j < d.rows; ++j)
    for (uint64_t i = 0; i < d.cols; ++i) {
      const uint64_t k = j * d.groups + group_of(i);
      w[j * d.cols + i] = d.s[k] * static_cast<float>(int{d.q[j * d.cols + i]} - d.z[k]);
    }
  *rows_out = d.rows;
  *cols_out = d.cols;
  bool consecutive = true;
  for (uint64_t i = 0; i < d.cols && consecutive; ++i) consecutive = group_of(i) == i / glen;
  // The grid as lowbit's layout holds it.
  if (grid && consecutive) {
    grid->spec.bits = c.bits;
    grid->spec.group = c.group_size > 0 ? c.group_size : 0;
    grid->spec.symmetric =
        std::all_of(d.z.begin(), d.z.end(), [&](int z) { return z == 1 << (c.bits - 1); });
    AffineTensor& t = grid->t;
    const uint64_t row_bytes = packed_row_bytes(d.cols, c.bits);
    t.codes.assign(d.rows * row_bytes, 0);
    for (uint64_t j = 0; j < d.rows; ++j)
      pack_bits(&d.q[j * d.cols], d.cols, c.bits, &t.codes[j * row_bytes]);
    t.scales = d.s;
    t.zeros.assign(d.z.begin(), d.z.end());
    grid->rows = d.rows, grid->cols = d.cols;
  }
  return w;
}

std::vector<float> dequantize_fp8_linear(const HfQuantConfig& c, const std::string& base,
                                         const std::vector<const TensorView*>& parts,
                                         const std::string& source, uint64_t* rows_out,
                                         uint64_t* cols_out) {
  const Parts p{parts, base, source};
  const TensorView* w = p.find(".weight", true);
  const TensorView* sc = p.find(".weight_scale", true);
  p.matrix(w);
  p.dtype(w, {DType::F8_E4M3});
  const uint64_t rows = w->shape[0], cols = w->shape[1];
  std::vector<float> x = to_f32(*w);
  if (c.block_rows) {  // one scale per [block_rows, block_cols] tile
    const uint64_t br = c.block_rows, bc = c.block_cols;
    p.dtype(sc, {DType::F16, DType::BF16, DType::F32});
    p.shape(sc, {(rows + br - 1) / br, (cols + bc - 1) / bc});
    const std::vector<float> s = to_f32(*sc);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t i = 0; i < cols; ++i) x[r * cols + i] *= s[(r / br) * sc->shape[1] + i / bc];
  } else {
    const std::vector<float> s = scales_per_group(sc, rows, 1, c.per_tensor, p);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t i = 0; i < cols; ++i) x[r * cols + i] *= s[r];
  }
  *rows_out = rows;
  *cols_out = cols;
  return x;
}

}  // namespace lowbit::quant

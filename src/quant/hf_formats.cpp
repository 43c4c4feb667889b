// GPTQ and AWQ checkpoint layouts of the affine int layout (hf_formats.h).
#include "quant/hf_formats.h"

#include <algorithm>
#include <cstring>
#include <map>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/model.h"

namespace lowbit::quant {
namespace {

std::vector<uint8_t> bytes_of(const std::vector<int32_t>& v) {
  std::vector<uint8_t> b(v.size() * 4);
  std::memcpy(b.data(), v.data(), b.size());
  return b;
}

// n codes of `bits` bits as a little-endian bit stream in 32-bit words (n*bits % 32 == 0).
std::vector<int32_t> stream_words(const std::vector<uint8_t>& codes, int bits) {
  std::vector<uint8_t> packed(codes.size() * bits / 8);
  pack_bits(codes.data(), codes.size(), bits, packed.data());
  std::vector<int32_t> words(packed.size() / 4);
  std::memcpy(words.data(), packed.data(), packed.size());
  return words;
}

void unstream_words(const int32_t* words, uint64_t n, int bits, uint8_t* codes) {
  unpack_bits(reinterpret_cast<const uint8_t*>(words), n, bits, codes);
}

uint64_t group_len_of(const AffineSpec& s, uint64_t cols) {
  return static_cast<uint64_t>(s.group_len(cols));
}

}  // namespace

bool gptq_zeros_minus_one(const AffineSpec& spec) {
  return spec.symmetric;
}

std::vector<PackedPart> packed_parts(AffineFormat format, const AffineSpec& spec, uint64_t rows,
                                     uint64_t cols, const std::string& tensor) {
  const char* name = affine_format_name(format);
  if (spec.group < 0)
    fail(ErrorKind::Argument, "{} has no per-tensor scale: use a group size or per channel (0)",
         name);
  if (spec.group > 0 && cols % spec.group != 0)
    fail(ErrorKind::Argument, "tensor '{}': {} inputs do not divide into {} groups of {}", tensor,
         cols, name, spec.group);
  const uint64_t groups = spec.groups_per_row(cols);
  if (format == AffineFormat::Gptq) {
    if (spec.bits != 2 && spec.bits != 3 && spec.bits != 4 && spec.bits != 8)
      fail(ErrorKind::Argument, "GPTQ stores 2, 3, 4 or 8 bits, not {}", spec.bits);
    if (cols * spec.bits % 32 != 0 || rows * spec.bits % 32 != 0)
      fail(ErrorKind::Argument,
           "tensor '{}' [{}, {}]: GPTQ packs {}-bit codes in 32-bit words along both dimensions",
           tensor, rows, cols, spec.bits);
    return {{".qweight", DType::I32, {cols * spec.bits / 32, rows}},
            {".qzeros", DType::I32, {groups, rows * spec.bits / 32}},
            {".scales", DType::F16, {groups, rows}},
            {".g_idx", DType::I32, {cols}}};
  }
  if (format == AffineFormat::Awq) {
    if (spec.bits != 4) fail(ErrorKind::Argument, "AWQ stores 4 bits, not {}", spec.bits);
    if (rows % 8 != 0)
      fail(ErrorKind::Argument, "tensor '{}': AWQ packs 8 outputs per word; {} is not a multiple",
           tensor, rows);
    return {{".qweight", DType::I32, {cols, rows / 8}},
            {".qzeros", DType::I32, {groups, rows / 8}},
            {".scales", DType::F16, {groups, rows}}};
  }
  fail(ErrorKind::Argument, "layout {} has no packed parts", name);
}

nlohmann::json hf_quantization_config(AffineFormat format, const AffineSpec& spec,
                                      const std::string& method) {
  const int64_t group = spec.group > 0 ? spec.group : -1;
  if (format == AffineFormat::Awq)
    return {{"quant_method", "awq"},
            {"bits", spec.bits},
            {"group_size", group},
            {"zero_point", true},
            {"version", "gemm"},
            {"modules_to_not_convert", nullptr},
            {"meta", {{"quantizer", {"lowbit"}}, {"method", method}}}};
  return {{"quant_method", "gptq"},
          {"bits", spec.bits},
          {"group_size", group},
          {"desc_act", false},
          {"sym", spec.symmetric},
          {"checkpoint_format", gptq_zeros_minus_one(spec) ? "gptq" : "gptq_v2"},
          {"static_groups", false},
          {"true_sequential", true},
          {"damp_percent", 0.01},
          {"lm_head", false},
          {"meta", {{"quantizer", {"lowbit"}}, {"method", method}}}};
}

std::vector<std::vector<uint8_t>> pack_affine(AffineFormat format, const AffineTensor& t,
                                              const AffineSpec& spec, uint64_t rows,
                                              uint64_t cols) {
  const uint64_t groups = spec.groups_per_row(cols), glen = group_len_of(spec, cols);
  const uint64_t row_bytes = packed_row_bytes(cols, spec.bits);
  std::vector<float> scales_t(groups * rows);  // [groups, rows]
  for (uint64_t j = 0; j < rows; ++j)
    for (uint64_t g = 0; g < groups; ++g) scales_t[g * rows + j] = t.scales[j * groups + g];
  std::vector<uint8_t> scales = from_f32(scales_t.data(), scales_t.size(), DType::F16);
  if (format == AffineFormat::Gptq) {
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
      const std::vector<int32_t> w = stream_words(z, spec.bits);
      qzeros.insert(qzeros.end(), w.begin(), w.end());
    }
    std::vector<int32_t> g_idx(cols);
    for (uint64_t i = 0; i < cols; ++i) g_idx[i] = static_cast<int32_t>(i / glen);
    return {bytes_of(qweight), bytes_of(qzeros), scales, bytes_of(g_idx)};
  }
  // AWQ: for each input i, outputs 8b..8b+7 in one word.
  std::vector<uint8_t> q(rows * cols);
  for (uint64_t j = 0; j < rows; ++j) unpack_bits(&t.codes[j * row_bytes], cols, 4, &q[j * cols]);
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
  return {bytes_of(qweight), bytes_of(qzeros), scales};
}

std::optional<HfQuantConfig> read_hf_quant_config(const std::string& text,
                                                  const std::string& source) {
  nlohmann::json cfg;
  try {
    cfg = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON: {}", source, e.what());
  }
  if (!cfg.is_object() || !cfg.contains("quantization_config")) return std::nullopt;
  const nlohmann::json& q = cfg["quantization_config"];
  if (!q.is_object() || !q.contains("quant_method")) return std::nullopt;
  HfQuantConfig c;
  try {
    const std::string method = q.at("quant_method").get<std::string>();
    if (method == "gptq") {
      c.format = AffineFormat::Gptq;
      const std::string fmt = q.value("checkpoint_format", std::string("gptq"));
      if (fmt != "gptq" && fmt != "gptq_v2")
        fail(ErrorKind::Unsupported,
             "{}: quantization_config.checkpoint_format '{}' is not read "
             "(gptq, gptq_v2)",
             source, fmt);
      c.zeros_minus_one = fmt == "gptq";
    } else if (method == "awq") {
      c.format = AffineFormat::Awq;
      const std::string version = q.value("version", std::string("gemm"));
      if (version != "gemm" && version != "GEMM")
        fail(ErrorKind::Unsupported, "{}: quantization_config.version '{}' is not read (gemm)",
             source, version);
      if (!q.value("zero_point", true))
        fail(ErrorKind::Unsupported, "{}: AWQ without zero points is not read", source);
      c.zeros_minus_one = false;
    } else if (method == "lowbit-affine") {
      return std::nullopt;  // lowbit's own layout: the safetensors metadata describes it
    } else {
      fail(ErrorKind::Unsupported,
           "{}: quantization_config.quant_method '{}' is not read (gptq, awq)", source, method);
    }
    c.bits =
        q.at(c.format == AffineFormat::Gptq ? "bits" : (q.contains("w_bit") ? "w_bit" : "bits"))
            .get<int>();
    c.group_size = q.at(q.contains("q_group_size") ? "q_group_size" : "group_size").get<int64_t>();
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: quantization_config: {}", source, e.what());
  }
  const bool bits_ok = c.format == AffineFormat::Gptq
                           ? (c.bits == 2 || c.bits == 3 || c.bits == 4 || c.bits == 8)
                           : c.bits == 4;
  if (!bits_ok)
    fail(ErrorKind::Format, "{}: quantization_config.bits {} is not a {} width", source, c.bits,
         affine_format_name(c.format));
  if (c.group_size == 0 || c.group_size < -1)
    fail(ErrorKind::Format, "{}: quantization_config.group_size {} (positive, or -1)", source,
         c.group_size);
  return c;
}

std::vector<float> dequantize_hf_linear(const HfQuantConfig& c, const std::string& base,
                                        const std::vector<const TensorView*>& parts,
                                        const std::string& source, uint64_t* rows_out,
                                        uint64_t* cols_out, AffineWeight* grid) {
  auto find = [&](const char* suffix, bool needed) -> const TensorView* {
    for (const TensorView* t : parts)
      if (t->name == base + suffix) return t;
    if (needed) fail(ErrorKind::Format, "{}: tensor '{}{}' is missing", source, base, suffix);
    return nullptr;
  };
  auto expect = [&](const TensorView* t, DType dt, std::vector<uint64_t> shape) {
    if (t->dtype != dt)
      fail(ErrorKind::Format, "{}: tensor '{}' is {}, expected {}", source, t->name,
           dtype_name(t->dtype), dtype_name(dt));
    if (t->shape != shape)
      fail(ErrorKind::Format, "{}: tensor '{}' has shape {}, expected {}", source, t->name,
           shape_string(t->shape), shape_string(shape));
  };
  const TensorView* qw = find(".qweight", true);
  const TensorView* qz = find(".qzeros", true);
  const TensorView* sc = find(".scales", true);
  if (qw->shape.size() != 2 || sc->shape.size() != 2)
    fail(ErrorKind::Format, "{}: tensors '{}.qweight' and '.scales' must be matrices", source,
         base);
  const int bits = c.bits, mask = (1 << bits) - 1;
  const bool gptq = c.format == AffineFormat::Gptq;
  const uint64_t rows = sc->shape[1], groups = sc->shape[0];
  // The inputs: g_idx's length when there is one (GPTQ), else what qweight's rows hold.
  const TensorView* gi = gptq ? find(".g_idx", false) : nullptr;
  if (gi && (gi->dtype != DType::I32 || gi->shape.size() != 1))
    fail(ErrorKind::Format, "{}: tensor '{}' must be a vector of I32, not {} {}", source, gi->name,
         dtype_name(gi->dtype), shape_string(gi->shape));
  if (gptq && !gi && qw->shape[0] * 32 % bits != 0)
    fail(ErrorKind::Format, "{}: tensor '{}.qweight' has {} rows: not whole {}-bit codes", source,
         base, qw->shape[0], bits);
  const uint64_t cols = gi ? gi->shape[0] : gptq ? qw->shape[0] * 32 / bits : qw->shape[0];
  if (gptq && cols * bits % 32 != 0)
    fail(ErrorKind::Format,
         "{}: tensor '{}.g_idx' has {} inputs: not whole 32-bit words of {}-bit "
         "codes",
         source, base, cols, bits);
  expect(sc, DType::F16, {groups, rows});
  expect(
      qw, DType::I32,
      gptq ? std::vector<uint64_t>{cols * bits / 32, rows} : std::vector<uint64_t>{cols, rows / 8});
  expect(qz, DType::I32,
         gptq ? std::vector<uint64_t>{groups, rows * bits / 32}
              : std::vector<uint64_t>{groups, rows / 8});
  if (!gptq && rows % 8 != 0)
    fail(ErrorKind::Format, "{}: tensor '{}.scales' has {} outputs, not a multiple of 8", source,
         base, rows);
  // The group of each input: g_idx when present (GPTQ), else consecutive runs.
  const uint64_t glen = c.group_size > 0 ? static_cast<uint64_t>(c.group_size) : cols;
  std::vector<int32_t> g_idx(cols);
  if (gi) {
    std::memcpy(g_idx.data(), gi->data, cols * 4);
  } else {
    for (uint64_t i = 0; i < cols; ++i) g_idx[i] = static_cast<int32_t>(i / glen);
  }
  const uint64_t expected_groups = (cols + glen - 1) / glen;
  if (groups != expected_groups)
    fail(ErrorKind::Format,
         "{}: tensor '{}.scales' has {} groups; {} inputs in groups of {} make {}", source, base,
         groups, cols, glen, expected_groups);
  // Each group holds glen inputs (the last one the rest), in any order when desc_act.
  std::vector<uint64_t> members(groups, 0);
  for (uint64_t i = 0; i < cols; ++i) {
    if (g_idx[i] < 0 || static_cast<uint64_t>(g_idx[i]) >= groups)
      fail(ErrorKind::Format, "{}: tensor '{}.g_idx'[{}] = {} is outside its {} groups", source,
           base, i, g_idx[i], groups);
    ++members[g_idx[i]];
  }
  for (uint64_t g = 0; g < groups; ++g)
    if (members[g] != std::min(glen, cols - g * glen))
      fail(ErrorKind::Format, "{}: tensor '{}.g_idx' puts {} inputs in group {}, not {}", source,
           base, members[g], g, std::min(glen, cols - g * glen));
  const std::vector<float> s = to_f32(*sc);
  std::vector<uint8_t> q(rows * cols), z(groups * rows);  // q [rows, cols], z [groups, rows]
  const auto* qwords = reinterpret_cast<const int32_t*>(qw->data);
  const auto* zwords = reinterpret_cast<const int32_t*>(qz->data);
  if (gptq) {
    std::vector<int32_t> col(cols * bits / 32);
    for (uint64_t j = 0; j < rows; ++j) {
      for (uint64_t w = 0; w < col.size(); ++w) std::memcpy(&col[w], &qwords[w * rows + j], 4);
      unstream_words(col.data(), cols, bits, &q[j * cols]);
    }
    for (uint64_t g = 0; g < groups; ++g)
      unstream_words(zwords + g * (rows * bits / 32), rows, bits, &z[g * rows]);
  } else {
    for (uint64_t i = 0; i < cols; ++i)
      for (uint64_t b = 0; b < rows / 8; ++b) {
        uint32_t v;
        std::memcpy(&v, &qwords[i * (rows / 8) + b], 4);
        for (int k = 0; k < 8; ++k) q[(8 * b + kAwqOrder[k]) * cols + i] = (v >> (4 * k)) & 15;
      }
    for (uint64_t g = 0; g < groups; ++g)
      for (uint64_t b = 0; b < rows / 8; ++b) {
        uint32_t v;
        std::memcpy(&v, &zwords[g * (rows / 8) + b], 4);
        for (int k = 0; k < 8; ++k) z[g * rows + 8 * b + kAwqOrder[k]] = (v >> (4 * k)) & 15;
      }
  }
  std::vector<float> w(rows * cols);
  const int zero_shift = c.zeros_minus_one ? 1 : 0;
  for (uint64_t j = 0; j < rows; ++j)
    for (uint64_t i = 0; i < cols; ++i) {
      const uint64_t g = static_cast<uint64_t>(g_idx[i]);
      const int zero = ((z[g * rows + j] + zero_shift) & (mask | (mask + 1)));
      w[j * cols + i] = s[g * rows + j] * static_cast<float>(int{q[j * cols + i]} - zero);
    }
  *rows_out = rows;
  *cols_out = cols;
  bool consecutive = true;
  for (uint64_t i = 0; i < cols && consecutive; ++i)
    consecutive = static_cast<uint64_t>(g_idx[i]) == i / glen;
  if (grid && consecutive) {  // the grid as lowbit's layout holds it
    AffineSpec& spec = grid->spec;
    spec.bits = bits;
    spec.group = c.group_size > 0 ? c.group_size : 0;
    spec.symmetric = true;
    AffineTensor& t = grid->t;
    const uint64_t row_bytes = packed_row_bytes(cols, bits);
    t.codes.assign(rows * row_bytes, 0);
    t.scales.resize(rows * groups);
    t.zeros.resize(rows * groups);
    for (uint64_t j = 0; j < rows; ++j) {
      pack_bits(&q[j * cols], cols, bits, &t.codes[j * row_bytes]);
      for (uint64_t g = 0; g < groups; ++g) {
        const uint8_t zero = static_cast<uint8_t>((z[g * rows + j] + zero_shift) & (2 * mask + 1));
        t.scales[j * groups + g] = s[g * rows + j];
        t.zeros[j * groups + g] = zero;
        spec.symmetric = spec.symmetric && zero == (mask + 1) / 2;
      }
    }
    grid->rows = rows, grid->cols = cols;
  }
  return w;
}

}  // namespace lowbit::quant

namespace lowbit {

bool has_hf_quantized_linears(const std::string& config_json, const std::string& source) {
  return quant::read_hf_quant_config(config_json, source).has_value();
}

void load_hf_quantized_tensors(Model& m, const std::vector<TensorView>& raw,
                               const std::string& config_json, const std::string& source) {
  const std::optional<quant::HfQuantConfig> c = quant::read_hf_quant_config(config_json, source);
  if (!c) fail(ErrorKind::Format, "{}: no GPTQ or AWQ quantization_config", source);
  // The parts of each linear, by the name before ".qweight", ".qzeros", ...
  std::map<std::string, std::vector<const TensorView*>> by_base;
  for (const TensorView& t : raw) by_base[t.name.substr(0, t.name.rfind('.'))].push_back(&t);
  for (const auto& [base, parts] : by_base) {
    uint64_t rows = 0, cols = 0;
    auto grid = std::make_shared<AffineWeight>();
    auto buf = std::make_shared<std::vector<float>>(
        quant::dequantize_hf_linear(*c, base, parts, m.source, &rows, &cols, grid.get()));
    TensorView v;
    v.name = hf_to_gguf_name(base + ".weight");
    if (v.name.empty())
      fail(ErrorKind::Format, "{}: '{}' is not a weight of the model", m.source, base);
    v.dtype = DType::F32;
    v.shape = {rows, cols};
    v.data = reinterpret_cast<const uint8_t*>(buf->data());
    v.nbytes = buf->size() * 4;
    m.storage.push_back(buf);
    m.tensors.push_back(v);
    if (grid->rows) m.affine_weights[v.name] = grid;
  }
}

}  // namespace lowbit

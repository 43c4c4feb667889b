// The Hugging Face layouts of the affine int layout: their parts and configs (hf_formats.h).
#include "quant/hf_formats.h"

#include <algorithm>
#include <map>
#include <set>

#include "core/names.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/model.h"
#include "quant/bnb_format.h"
#include "quant/loaded_linear.h"
#include "quant/packed_words.h"

namespace lowbit::quant {

bool gptq_zeros_minus_one(const AffineSpec& spec) {
  return spec.symmetric;
}

std::vector<PackedPart> packed_parts(AffineFormat format, const AffineSpec& spec, uint64_t rows,
                                     uint64_t cols, const std::string& tensor,
                                     const W8A8Activations* acts) {
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
  if (format == AffineFormat::CompressedTensors && acts) {
    std::vector<PackedPart> parts = {{".weight", DType::I8, {rows, cols}},
                                     {".weight_scale", DType::F16, {rows, 1}}};
    if (acts->static_scales) parts.push_back({".input_scale", DType::F32, {1}});
    return parts;
  }
  if (format == AffineFormat::CompressedTensors) {
    std::vector<PackedPart> parts = {
        {".weight_packed", DType::I32, {rows, word_count(cols, spec.bits)}},
        {".weight_scale", DType::F16, {rows, groups}}};
    if (!spec.symmetric)
      parts.push_back({".weight_zero_point", DType::I32, {word_count(rows, spec.bits), groups}});
    parts.push_back({".weight_shape", DType::I64, {2}});
    return parts;
  }
  fail(ErrorKind::Argument, "layout {} has no packed parts", name);
}

nlohmann::json quantization_args(const char* type, int bits, bool symmetric, const char* strategy,
                                 const nlohmann::json& group_size, bool dynamic,
                                 const nlohmann::json& observer) {
  return {{"num_bits", bits},         {"type", type},
          {"symmetric", symmetric},   {"strategy", strategy},
          {"group_size", group_size}, {"block_structure", nullptr},
          {"dynamic", dynamic},       {"actorder", nullptr},
          {"observer", observer},     {"observer_kwargs", nlohmann::json::object()}};
}

nlohmann::json compressed_tensors_config(const char* storage, const nlohmann::json& weights,
                                         const nlohmann::json& activations) {
  return {{"quant_method", "compressed-tensors"},
          {"format", storage},
          {"quantization_status", "compressed"},
          {"config_groups",
           {{"group_0",
             {{"targets", {"Linear"}},
              {"weights", weights},
              {"input_activations", activations},
              {"output_activations", nullptr},
              {"format", storage}}}}},
          {"ignore", {"lm_head"}},
          {"kv_cache_scheme", nullptr},
          {"global_compression_ratio", nullptr},
          {"sparsity_config", nlohmann::json::object()},
          {"transform_config", nlohmann::json::object()}};
}

nlohmann::json hf_quantization_config(AffineFormat format, const AffineSpec& spec,
                                      const std::string& method, const W8A8Activations* acts) {
  const int64_t group = spec.group > 0 ? spec.group : -1;
  if (format == AffineFormat::CompressedTensors) {
    // Weights, and with W8A8 int8 activations per token (dynamic) or one static scale per
    // tensor. compressed-tensors forbids keys it does not know: no lowbit notes here.
    const nlohmann::json weights = quantization_args(
        "int", spec.bits, spec.symmetric, spec.group > 0 ? "group" : "channel",
        spec.group > 0 ? nlohmann::json(spec.group) : nlohmann::json(nullptr), false, "minmax");
    const nlohmann::json activations =
        acts ? quantization_args("int", 8, true, acts->static_scales ? "tensor" : "token", nullptr,
                                 !acts->static_scales,
                                 acts->static_scales ? nlohmann::json("minmax") : nlohmann::json())
             : nlohmann::json(nullptr);
    return compressed_tensors_config(acts ? "int-quantized" : "pack-quantized", weights,
                                     activations);
  }
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

namespace {

// compressed-tensors: every config group must store its weights the same way (one format
// of pack-quantized, int-quantized, naive-quantized, float-quantized).
void read_compressed_tensors(const nlohmann::json& q, const std::string& source, HfQuantConfig& c) {
  using Storage = HfQuantConfig::Storage;
  const std::map<std::string, Storage> storages = {{"pack-quantized", Storage::Packed},
                                                   {"int-quantized", Storage::Int8},
                                                   {"naive-quantized", Storage::Int8},
                                                   {"float-quantized", Storage::Fp8}};
  auto storage_of = [&](const nlohmann::json& f, const std::string& key) {
    const std::string name = f.is_string() ? f.get<std::string>() : f.dump();
    auto it = storages.find(name);
    if (it == storages.end())
      fail(ErrorKind::Unsupported,
           "{}: {} '{}' is not read (pack-quantized, int-quantized, naive-quantized, "
           "float-quantized)",
           source, key, name);
    return it->second;
  };
  std::optional<Storage> storage;
  if (q.contains("format") && q["format"] != "mixed-precision")
    storage = storage_of(q["format"], "quantization_config.format");
  const nlohmann::json& groups = q.at("config_groups");
  if (!groups.is_object() || groups.empty())
    fail(ErrorKind::Format, "{}: quantization_config.config_groups holds no group", source);
  std::optional<nlohmann::json> first;
  for (const auto& [name, g] : groups.items()) {
    const std::string key = "quantization_config.config_groups." + name;
    if (g.contains("format") && !g["format"].is_null()) {
      const Storage s = storage_of(g["format"], key + ".format");
      if (storage && s != *storage)
        fail(ErrorKind::Unsupported, "{}: {}.format differs from the others", source, key);
      storage = s;
    }
    if (g.contains("input_activations") && !g["input_activations"].is_null()) {
      c.quantized_activations = true;
      const nlohmann::json& a = g["input_activations"];
      const bool int8 = a.value("num_bits", 8) == 8 &&
                        a.value("type", std::string("int")) == "int" && a.value("symmetric", true);
      const std::string strategy = a.value("strategy", std::string());
      const bool dynamic = a.contains("dynamic") && a["dynamic"] == true;
      c.int8_acts = !int8                              ? HfQuantConfig::Int8Acts::None
                    : strategy == "token" && dynamic   ? HfQuantConfig::Int8Acts::PerToken
                    : strategy == "tensor" && !dynamic ? HfQuantConfig::Int8Acts::Static
                                                       : HfQuantConfig::Int8Acts::None;
    }
    const nlohmann::json& w = g.at("weights");
    if (first && w != *first)
      fail(ErrorKind::Unsupported, "{}: {}: groups whose weights differ are not read", source, key);
    first = w;
  }
  const nlohmann::json& w = *first;
  c.storage = storage.value_or(Storage::Packed);
  const std::string type = w.value("type", std::string("int"));
  if (type != (c.storage == Storage::Fp8 ? "float" : "int"))
    fail(ErrorKind::Unsupported, "{}: weights.type '{}' is not read with this format", source,
         type);
  c.bits = w.value("num_bits", 8);
  c.symmetric = w.value("symmetric", true);
  const nlohmann::json gs = w.contains("group_size") ? w["group_size"] : nlohmann::json(nullptr);
  const std::string strategy = w.contains("strategy") && w["strategy"].is_string()
                                   ? w["strategy"].get<std::string>()
                               : gs.is_null()          ? "tensor"
                               : gs.get<int64_t>() > 0 ? "group"
                                                       : "channel";
  c.group_size = -1;
  if (strategy == "group") {
    c.group_size = gs.get<int64_t>();
  } else if (strategy == "tensor") {
    c.per_tensor = true;
  } else if (strategy == "block" && c.storage == Storage::Fp8) {
    const nlohmann::json& b = w.at("block_structure");
    c.block_rows = b.at(0).get<uint64_t>(), c.block_cols = b.at(1).get<uint64_t>();
    if (c.block_rows == 0 || c.block_cols == 0)
      fail(ErrorKind::Format, "{}: weights.block_structure {} has an empty side", source, b.dump());
  } else if (strategy != "channel") {
    fail(ErrorKind::Unsupported, "{}: weights.strategy '{}' is not read (group, channel, tensor{})",
         source, strategy, c.storage == Storage::Fp8 ? ", block" : "");
  }
  if (c.storage == Storage::Packed && c.per_tensor)
    fail(ErrorKind::Unsupported,
         "{}: pack-quantized weights with one scale per tensor are not read", source);
  if (c.storage == Storage::Fp8 && (c.bits != 8 || !c.symmetric))
    fail(ErrorKind::Unsupported, "{}: float weights must be 8-bit symmetric (E4M3)", source);
}

}  // namespace

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
    if (method == "lowbit-affine") return std::nullopt;  // described by the safetensors metadata
    if (method == "bitsandbytes") {  // bnb_format.h: each linear's quant state describes it
      c.bnb = true;
      if (!q.value("load_in_4bit", false) && !q.value("load_in_8bit", false))
        fail(ErrorKind::Format,
             "{}: quantization_config: bitsandbytes with neither load_in_4bit "
             "nor load_in_8bit",
             source);
      const std::string storage = q.value("bnb_4bit_quant_storage", std::string("uint8"));
      if (storage != "uint8")
        fail(ErrorKind::Unsupported,
             "{}: quantization_config.bnb_4bit_quant_storage '{}' is not read (uint8)", source,
             storage);
      return c;
    }
    if (!parse_affine_format(method, &c.format) || c.format == AffineFormat::Lowbit)
      fail(ErrorKind::Unsupported,
           "{}: quantization_config.quant_method '{}' is not read (gptq, awq, "
           "compressed-tensors, bitsandbytes)",
           source, method);
    if (c.format == AffineFormat::Gptq) {
      const std::string fmt = q.value("checkpoint_format", std::string("gptq"));
      if (fmt != "gptq" && fmt != "gptq_v2")
        fail(ErrorKind::Unsupported,
             "{}: quantization_config.checkpoint_format '{}' is not read (gptq, gptq_v2)", source,
             fmt);
      c.zeros_minus_one = fmt == "gptq";
      c.bits = q.at("bits").get<int>();
      c.group_size = q.at("group_size").get<int64_t>();
    } else if (c.format == AffineFormat::Awq) {
      const std::string version = q.value("version", std::string("gemm"));
      if (version != "gemm" && version != "GEMM")
        fail(ErrorKind::Unsupported, "{}: quantization_config.version '{}' is not read (gemm)",
             source, version);
      if (!q.value("zero_point", true))
        fail(ErrorKind::Unsupported, "{}: AWQ without zero points is not read", source);
      c.zeros_minus_one = false;
      c.bits = q.at(q.contains("w_bit") ? "w_bit" : "bits").get<int>();
      c.group_size =
          q.at(q.contains("q_group_size") ? "q_group_size" : "group_size").get<int64_t>();
    } else {
      c.zeros_minus_one = false;
      read_compressed_tensors(q, source, c);
    }
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: quantization_config: {}", source, e.what());
  }
  const bool bits_ok = c.format == AffineFormat::Gptq
                           ? (c.bits == 2 || c.bits == 3 || c.bits == 4 || c.bits == 8)
                       : c.format == AffineFormat::Awq ? c.bits == 4
                                                       : (c.bits >= 2 && c.bits <= 8);
  if (!bits_ok)
    fail(ErrorKind::Format, "{}: quantization_config.bits {} is not a {} width", source, c.bits,
         affine_format_name(c.format));
  if (c.group_size == 0 || c.group_size < -1)
    fail(ErrorKind::Format, "{}: quantization_config.group_size {} (positive, or -1)", source,
         c.group_size);
  return c;
}

}  // namespace lowbit::quant

namespace lowbit {

bool has_hf_quantized_linears(const std::string& config_json, const std::string& source) {
  return quant::read_hf_quant_config(config_json, source).has_value();
}

namespace {

// The suffixes of a quantized linear's parts. Activation and KV-cache scales are read as
// parts too and not used: the engine does not simulate those quantizations.
const std::vector<std::string>& part_suffixes(AffineFormat f) {
  static const std::vector<std::string> gptq = {".qweight", ".qzeros", ".scales", ".g_idx"};
  static const std::vector<std::string> ct = {
      ".weight_packed", ".weight_scale", ".weight_zero_point", ".weight_shape",
      ".weight_g_idx",  ".input_scale",  ".input_zero_point",  ".k_scale",
      ".v_scale",       ".output_scale"};
  return f == AffineFormat::CompressedTensors ? ct : gptq;
}

bool is_unused_scale(const std::string& name) {
  for (const char* s :
       {".input_scale", ".input_zero_point", ".k_scale", ".v_scale", ".output_scale"})
    if (has_suffix(name, s)) return true;
  return false;
}

// W8A8 checkpoints whose scheme the engine runs (int8 per-channel symmetric weights, int8
// symmetric activations per token or with one static scale): the int8 codes for the
// engine, as lowbit's own W8A8 layout gives them.
void add_int8_weight(Model& m, const std::string& name, const AffineWeight& w,
                     const quant::HfQuantConfig& c, const std::vector<const TensorView*>& parts) {
  using Acts = quant::HfQuantConfig::Int8Acts;
  if (c.int8_acts == Acts::None || w.spec.bits != 8 || w.spec.group > 0 || !w.spec.symmetric)
    return;
  Int8Weight& q8 = m.int8_weights[name] = quant::int8_weight_of(w);  // one group per row
  if (c.int8_acts == Acts::Static) {
    std::optional<float> s;
    for (const TensorView* t : parts)
      if (has_suffix(t->name, ".input_scale") && t->n_values() == 1) s = to_f32(*t)[0];
    q8.input_scale = quant::positive_input_scale(s, m.source, name);
  }
}

}  // namespace

std::vector<TensorView> load_hf_quantized_tensors(Model& m, const std::vector<TensorView>& all,
                                                  const std::string& config_json,
                                                  const std::string& source) {
  const std::optional<quant::HfQuantConfig> c = quant::read_hf_quant_config(config_json, source);
  if (!c)
    fail(ErrorKind::Format, "{}: no GPTQ, AWQ or compressed-tensors quantization_config", source);
  // int-quantized and float-quantized keep the codes in "<linear>.weight", beside a
  // "<linear>.weight_scale"; the other parts are known by their suffixes.
  std::set<std::string> scaled;
  for (const TensorView& t : all)
    if (has_suffix(t.name, ".weight_scale")) scaled.insert(t.name.substr(0, t.name.size() - 13));
  const bool codes_in_weight = c->storage != quant::HfQuantConfig::Storage::Packed;
  std::map<std::string, std::vector<const TensorView*>> by_base;  // the parts of each linear
  std::vector<TensorView> rest;
  // bitsandbytes: "<linear>.weight" beside "<linear>.weight.absmax", "<linear>.SCB", ...
  std::vector<std::string> bnb_linear(all.size());
  for (size_t i = 0; i < all.size() && c->bnb; ++i)
    if (!(bnb_linear[i] = quant::bnb_linear_of(all[i].name)).empty()) scaled.insert(bnb_linear[i]);
  for (size_t i = 0; i < all.size(); ++i) {
    const TensorView& t = all[i];
    std::string base = t.name.substr(0, t.name.rfind('.'));
    bool part = (codes_in_weight || c->bnb) && has_suffix(t.name, ".weight") && scaled.count(base);
    if (!bnb_linear[i].empty()) part = true, base = bnb_linear[i];
    for (const std::string& suffix : part_suffixes(c->format))
      part = part || (!c->bnb && has_suffix(t.name, suffix));
    if (part)
      by_base[base].push_back(&t);
    else
      rest.push_back(t);
  }
  for (const auto& [base, parts] : by_base) {
    if (std::all_of(parts.begin(), parts.end(),
                    [](const TensorView* t) { return is_unused_scale(t->name); }))
      continue;  // KV-cache scales of an attention module
    uint64_t rows = 0, cols = 0;
    auto grid = std::make_shared<AffineWeight>();
    std::vector<float> w =
        c->bnb ? quant::dequantize_bnb_linear(base, parts, m.source, &rows, &cols)
        : c->storage == quant::HfQuantConfig::Storage::Fp8
            ? quant::dequantize_fp8_linear(*c, base, parts, m.source, &rows, &cols)
            : quant::dequantize_hf_linear(*c, base, parts, m.source, &rows, &cols, grid.get());
    if (!grid->rows) grid.reset();  // no grid to keep (FP8, bitsandbytes, act-order groups)
    const std::string name = quant::add_loaded_linear(m, base, rows, cols, std::move(w), grid);
    if (grid && c->storage == quant::HfQuantConfig::Storage::Int8)
      add_int8_weight(m, name, *grid, *c, parts);
  }
  return rest;
}

}  // namespace lowbit

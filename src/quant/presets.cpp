// The preset table: llama.cpp's quantization mixes as data. Each preset has a base type,
// an output-head type and a list of rules that give some roles more bits in some layers.
// docs/QUANTIZATION.md prints this table in prose.
#include <algorithm>
#include <cctype>
#include <map>
#include <regex>

#include "lowbit/error.h"
#include "lowbit/lowrank.h"
#include "lowbit/quantize.h"
#include "lowbit/topology.h"
#include "quant/iq_shapes.h"

namespace lowbit {
namespace {

using enum DType;
using L = LayerSet;

std::vector<Preset> make_presets() {
  const PresetRule kMoreBitsV{"attn_v", L::MoreBits, Q6_K},
      kMoreBitsDown{"ffn_down", L::MoreBits, Q6_K};
  // The 1- and 2-bit presets: attn_v (Q4_K with 4+ query heads per KV head) and the first
  // ffn_down raised to IQ3_S (IQ2_S, IQ2_M) or Q2_K (IQ2_XS, IQ2_XXS, IQ1_*); attn_output
  // raised to IQ3_S (IQ2_S, IQ2_M) or IQ2_XXS (IQ1_*).
  const auto low_bit = [](DType raised, DType attn_output) {
    std::vector<PresetRule> rules = {{"attn_v", L::All, Q4_K, true},
                                     {"attn_v", L::All, raised},
                                     {"ffn_down", L::FirstEighth, raised}};
    if (attn_output != Count) rules.push_back({"attn_output", L::All, attn_output});
    return rules;
  };
  return {
      {"Q2_K",
       10,
       Q2_K,
       Q6_K,
       {{"attn_v", L::All, Q4_K, true},
        {"attn_v", L::All, Q3_K},
        {"ffn_down", L::All, Q3_K},
        {"attn_output", L::All, Q3_K}}},
      {"Q3_K_S", 11, Q3_K, Q6_K, {}},
      {"Q3_K_M",
       12,
       Q3_K,
       Q6_K,
       {{"attn_v", L::FirstTwo, Q5_K},
        {"attn_v", L::All, Q4_K},
        {"ffn_down", L::FirstSixteenth, Q5_K},
        {"ffn_down", L::All, Q4_K},
        {"attn_output", L::All, Q4_K}}},
      {"Q3_K_L",
       13,
       Q3_K,
       Q6_K,
       {{"attn_v", L::All, Q5_K}, {"ffn_down", L::All, Q5_K}, {"attn_output", L::All, Q5_K}}},
      {"Q4_0", 2, Q4_0, Q6_K, {}},
      {"Q4_1", 3, Q4_1, Q6_K, {}},
      {"Q4_K_S",
       14,
       Q4_K,
       Q6_K,
       {{"attn_v", L::FirstFour, Q5_K}, {"ffn_down", L::FirstEighth, Q5_K}}},
      {"Q4_K_M", 15, Q4_K, Q6_K, {kMoreBitsV, kMoreBitsDown}},
      {"Q5_0", 8, Q5_0, Q6_K, {}},
      {"Q5_1", 9, Q5_1, Q6_K, {}},
      {"Q5_K_S", 16, Q5_K, Q6_K, {}},
      {"Q5_K_M", 17, Q5_K, Q6_K, {kMoreBitsV, kMoreBitsDown}},
      {"Q6_K", 18, Q6_K, Q6_K, {}},
      {"Q8_0", 7, Q8_0, Q8_0, {}},
      {"IQ4_NL",
       25,
       IQ4_NL,
       Q6_K,
       {{"attn_v", L::All, Q5_K, true}, {"ffn_down", L::FirstEighth, Q5_K, false, true}}},
      {"IQ4_XS",
       30,
       IQ4_XS,
       Q6_K,
       {{"attn_v", L::All, Q5_K, true}, {"ffn_down", L::FirstEighth, Q5_K, false, true}}},
      {"IQ3_XS",
       22,
       IQ3_S,
       Q6_K,
       {{"attn_v", L::All, Q4_K, true},
        {"attn_k", L::All, IQ3_XXS},
        {"attn_q", L::All, IQ3_XXS},
        {"ffn_gate", L::Middle, IQ3_XXS},
        {"ffn_up", L::Middle, IQ3_XXS}}},
      {"IQ3_S", 26, IQ3_S, Q6_K, {{"attn_v", L::All, Q4_K, true}}},
      {"IQ3_M",
       27,
       IQ3_S,
       Q6_K,
       {{"attn_v", L::All, Q4_K},
        {"ffn_down", L::FirstEighth, Q4_K},
        {"attn_output", L::All, Q4_K}}},
      // Below 3.1 bits llama.cpp keeps the head at Q5_K and raises the untied embedding;
      // the 2-bit presets also raise attn_v and the first ffn_down, and IQ3_XXS does so
      // (every ffn_down) only without an importance vector.
      {"IQ3_XXS",
       23,
       IQ3_XXS,
       Q5_K,
       {{"attn_v", L::All, Q4_K, true},
        {"attn_v", L::All, IQ3_S, false, true},
        {"attn_k", L::All, IQ2_S},
        {"attn_q", L::All, IQ2_S},
        {"ffn_down", L::FirstEighth, Q4_K, false, true},
        {"ffn_down", L::All, Q3_K, false, true},
        {"attn_output", L::All, IQ3_S}},
       IQ3_S},
      {"IQ2_M", 29, IQ2_S, Q5_K, low_bit(IQ3_S, IQ3_S), IQ3_S},
      // mostly GGML's IQ2_XS, as llama.cpp's
      {"IQ2_S", 28, IQ2_XS, Q5_K, low_bit(IQ3_S, IQ3_S), IQ3_S},
      {"IQ2_XS", 20, IQ2_XS, Q5_K, low_bit(Q2_K, Count), Q2_K},
      {"IQ2_XXS", 19, IQ2_XXS, Q5_K, low_bit(Q2_K, Count), Q2_K},
      {"IQ1_M", 31, IQ1_M, Q5_K, low_bit(Q2_K, IQ2_XXS), Q2_K},
      {"IQ1_S", 24, IQ1_S, Q5_K, low_bit(Q2_K, IQ2_XXS), Q2_K},
      // Ternary: llama.cpp keeps the untied embedding at Q4_K
      {"TQ1_0", 36, TQ1_0, Q6_K, {}, Q4_K},
      {"TQ2_0", 37, TQ2_0, Q6_K, {}, Q4_K},
      {"F16", 1, F16, F16, {}},
      {"BF16", 32, BF16, BF16, {}},
  };
}

bool iequal(const std::string& a, const char* b) {
  size_t i = 0;
  for (; i < a.size() && b[i]; ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  return i == a.size() && !b[i];
}

// "blk.3.attn_v.weight" -> layer 3, role "attn_v"; other names -> no layer, role = name
// without ".weight".
struct NameParts { int layer = -1; std::string role; };
NameParts split_name(const std::string& name) {
  NameParts p;
  std::string rest = name;
  if (rest.rfind("blk.", 0) == 0) {
    const size_t dot = rest.find('.', 4);
    p.layer = std::stoi(rest.substr(4, dot - 4));
    rest = rest.substr(dot + 1);
  }
  const std::string suffix = ".weight";
  if (rest.size() > suffix.size() &&
      rest.compare(rest.size() - suffix.size(), suffix.size(), suffix) == 0)
    rest.resize(rest.size() - suffix.size());
  p.role = rest;
  return p;
}

}  // namespace

const std::vector<Preset>& presets() {
  static const std::vector<Preset> kPresets = make_presets();
  return kPresets;
}

const Preset* find_preset(const std::string& name) {
  for (const Preset& p : presets())
    if (iequal(name, p.name)) return &p;
  return nullptr;
}

bool layer_selected(LayerSet s, uint32_t i, uint32_t n) {
  switch (s) {
    case LayerSet::All: return true;
    case LayerSet::FirstEighth: return i < n / 8;
    case LayerSet::FirstSixteenth: return i < n / 16;
    case LayerSet::FirstTwo: return i < 2;
    case LayerSet::FirstFour: return i < 4;
    case LayerSet::MoreBits:
      return i < n / 8 || i >= 7 * n / 8 || (i >= n / 8 && (i - n / 8) % 3 == 2);
    case LayerSet::Middle:
      return i >= n / 8 && i < 7 * n / 8;
  }
  return false;
}

DType fallback_type(DType t, uint64_t row_len) {
  auto fits = [&](DType d) { return row_len % traits(d).block_size == 0; };
  while (!fits(t)) {
    if (quant::is_codebook(t)) {
      t = DType::IQ4_NL;
      continue;
    }
    switch (t) {
      case DType::Q2_K:
      case DType::Q3_K:
      case DType::IQ4_XS:
        t = DType::IQ4_NL;
        break;
      case DType::Q4_K: t = DType::Q5_0; break;
      case DType::Q5_K: t = DType::Q5_1; break;
      case DType::Q6_K: t = DType::Q8_0; break;
      case DType::TQ1_0:
      case DType::TQ2_0:
        t = DType::Q4_0;
        break;
      default: return DType::F16;
    }
  }
  return t;
}

const Preset& require_preset(const std::string& name) {
  if (const Preset* p = find_preset(name)) return *p;
  std::string names;
  for (const Preset& p : presets()) names += std::string(names.empty() ? "" : ", ") + p.name;
  fail(ErrorKind::Argument, "unknown quantization type '{}' (expected one of {})", name, names);
}

std::vector<TensorPlan> plan_quantization(const Model& m, const QuantizePlanOptions& o) {
  const Preset& preset = require_preset(o.preset);
  std::vector<std::regex> patterns;
  std::vector<bool> pattern_used(o.tensor_types.size(), false);
  for (const TypeOverride& t : o.tensor_types) {
    try {
      patterns.emplace_back(t.pattern);
    } catch (const std::regex_error& e) {
      fail(ErrorKind::Argument, "tensor type pattern '{}': not a valid regular expression ({})",
           t.pattern, e.what());
    }
  }
  const bool has_output = m.find("output.weight") != nullptr;
  const uint32_t n_layer = m.config.n_layer;
  const uint32_t gqa = m.config.n_head_kv ? m.config.n_head / m.config.n_head_kv : 1;

  for (const auto& [name, type] : o.recipe) {
    const TensorView* t = m.find(name);
    if (!t) fail(ErrorKind::Argument, "recipe: the model {} has no tensor '{}'", m.source, name);
    if (t->shape.size() < 2 && type != DType::F32)  // not silently ignored below
      fail(ErrorKind::Argument,
           "recipe: tensor '{}' is a vector (a norm or a bias), which stays F32, not {}", name,
           dtype_name(type));
  }
  std::vector<TensorPlan> plan;
  for (const TensorView& t : m.tensors) {
    TensorPlan p{t.name, DType::F32, "", PlanReason::Exact};
    if (t.shape.size() < 2) {  // norms and biases stay exact
      plan.push_back(p);
      continue;
    }
    const NameParts parts = split_name(t.name);
    const bool is_output =
        t.name == "output.weight" || (!has_output && t.name == "token_embd.weight");
    p.type = preset.base;
    p.reason = PlanReason::Base;
    if (!o.pure) {
      if (is_output) {
        p.type = preset.output;
        if (p.type != preset.base) p.note = "output head", p.reason = PlanReason::Mix;
      } else if (t.name == "token_embd.weight" && preset.embedding != DType::Count) {
        p.type = preset.embedding;
        p.note = std::string(preset.name) + " mix", p.reason = PlanReason::Mix;
      } else if (parts.layer >= 0) {
        for (const PresetRule& r : preset.rules) {
          if (parts.role != r.role || !layer_selected(r.layers, parts.layer, n_layer)) continue;
          if (r.needs_gqa4 && gqa < 4) continue;
          if (r.without_importance && o.has_importance) continue;
          p.type = r.type;
          p.note = std::string(preset.name) + " mix";
          p.reason = PlanReason::Mix;
          break;
        }
      }
    }
    if (auto r = o.recipe.find(t.name); r != o.recipe.end())
      p = {t.name, r->second, "recipe", PlanReason::Recipe};
    if (is_output && o.output_type)
      p = {t.name, *o.output_type, "output tensor type", PlanReason::Chosen};
    if (t.name == "token_embd.weight" && o.token_embedding_type)
      p = {t.name, *o.token_embedding_type, "token embedding type", PlanReason::Chosen};
    for (size_t i = 0; i < patterns.size(); ++i) {
      if (!std::regex_match(t.name, patterns[i])) continue;
      pattern_used[i] = true;
      p = {t.name, o.tensor_types[i].type, "tensor type " + o.tensor_types[i].pattern,
           PlanReason::Chosen};
      break;
    }
    // The residual was formed against f16 factors: they stay F16 (or F32).
    if (is_lowrank_tensor(t.name) && p.type != DType::F32)
      p = {t.name, DType::F16, "low-rank branch", PlanReason::Chosen};
    if (const auto twin = sparse_2of4_twin(p.type);
        twin && o.sparse_2of4 && is_block_linear(t.name))
      p.type = *twin;
    if (is_sparse_2of4(p.type) && !is_block_linear(t.name))
      fail(ErrorKind::Argument,
           "tensor '{}': {} stores the 2:4-pruned linears of the blocks, and this is not one",
           t.name, dtype_name(p.type));
    const DType fb = fallback_type(p.type, t.row_len());
    if (fb != p.type) {
      p.note =
          fmt::format("fallback: rows of {} values do not fit {} blocks of {}, using {}",
                      t.row_len(), dtype_name(p.type), traits(p.type).block_size, dtype_name(fb));
      p.type = fb;
      p.reason = PlanReason::Fallback;
    }
    plan.push_back(p);
  }
  for (size_t i = 0; i < pattern_used.size(); ++i)
    if (!pattern_used[i])
      fail(ErrorKind::Argument, "tensor type pattern '{}': matches no tensor of {}",
           o.tensor_types[i].pattern, m.source);
  return plan;
}

uint32_t mix_file_type(const Model& m, const std::vector<TensorPlan>& plan) {
  constexpr uint32_t kGuessed = 1024;  // llama.cpp's LLAMA_FTYPE_GUESSED
  std::map<DType, uint64_t> weights;
  for (const TensorPlan& p : plan)
    if (m.tensor(p.name).shape.size() >= 2) weights[p.type] += m.tensor(p.name).n_values();
  if (weights.empty()) return kGuessed;
  const DType most = std::max_element(weights.begin(), weights.end(), [](auto& a, auto& b) {
                       return a.second < b.second;
                     })->first;
  // llama.cpp's guess from the majority type: the preset named after the type (IQ3_S, not
  // IQ3_M; the preset IQ2_S, mostly of the type IQ2_XS, still has the ftype llama.cpp gives
  // the type IQ2_S), else its _M preset (Q4_K -> Q4_K_M).
  const Preset* chosen = find_preset(dtype_name(most));
  if (!chosen)
    for (const Preset& p : presets())
      if (p.base == most && (!chosen || std::string_view(p.name).ends_with("_M"))) chosen = &p;
  return (chosen ? chosen->file_type : 0) | kGuessed;
}

}  // namespace lowbit

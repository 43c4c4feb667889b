// JobSettings -> QuantizeJob, and the settings by name (lowbit/job_options.h).
#include "lowbit/job_options.h"

#include <fmt/ranges.h>

#include <cctype>
#include <charconv>
#include <functional>
#include <map>

#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"

namespace lowbit {
namespace {

DType storage_type(const std::string& setting, const std::string& name) {
  auto t = dtype_from_name(name);
  if (!t || !can_quantize_to(*t))
    fail(ErrorKind::Argument,
         "{} '{}': not a tensor type lowbit can write (Q4_K, Q6_K, Q8_0, F16, ...)", setting, name);
  return *t;
}

TypeOverride type_override(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    fail(ErrorKind::Argument, "tensor type '{}': expected REGEX=TYPE, e.g. 'blk\\.0\\..*=Q8_0'",
         spec);
  return {spec.substr(0, eq), storage_type("tensor type", spec.substr(eq + 1))};
}

}  // namespace

std::vector<DType> parse_type_list(const std::string& setting, const std::string& list) {
  std::vector<DType> out;
  size_t start = 0;
  while (start <= list.size()) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string name = list.substr(start, comma - start);
    const DType t = storage_type(setting, name);
    if (traits(t).block_size == 1 || is_sparse_2of4(t))  // floats, lowbit-only 2:4 packing
      fail(ErrorKind::Argument,
           "{} '{}': a budget chooses among GGUF block types (Q2_K, IQ2_S, ...)", setting, name);
    if (std::find(out.begin(), out.end(), t) == out.end()) out.push_back(t);
    start = comma + 1;
  }
  return out;
}

int affine_type_bits(const std::string& type) {
  if (affine_type_levels(type) != AffineLevels::All) return 2;  // stored as int2 codes
  if (type.size() < 4 || type.size() > 6 ||
      (type.rfind("int", 0) != 0 && type.rfind("INT", 0) != 0))
    return 0;
  int bits = 0;
  for (size_t i = 3; i < type.size(); ++i) {
    if (type[i] < '0' || type[i] > '9') return 0;
    bits = bits * 10 + (type[i] - '0');
  }
  return bits;  // validate(AffineSpec) rejects what is outside 2..8
}

AffineLevels affine_type_levels(const std::string& type) {
  std::string lower = type;
  for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return lower == "ternary"  ? AffineLevels::Ternary
         : lower == "binary" ? AffineLevels::Binary
                             : AffineLevels::All;
}

QuantizeJob make_job(const JobSettings& s) {
  QuantizeJob j = s.job;
  j.method.gptq.act_order = s.act_order;
  const bool w8a8_name = s.method == "w8a8" || s.type == "w8a8" || s.type == "W8A8";
  if (!s.method.empty() && s.method != "w8a8") {
    const auto m = method_from_name(s.method);
    if (!m)
      fail(ErrorKind::Argument, "method '{}': not one of {}", s.method,
           fmt::join(method_names(), ", "));
    j.method.kind = *m;
  } else if (s.method == "w8a8") {
    j.method.kind = Method::Rtn;
  }
  const int bits = affine_type_bits(s.type);
  const bool fp8 = s.type == "fp8" || s.type == "FP8";
  if (w8a8_name || bits || fp8) {  // settings that only a GGUF target reads must not pass unnoticed
    const bool gguf_only = s.bpw.has_value() || !s.max_size.empty() ||
                           !s.gguf.recipe_path.empty() || !s.gguf.save_recipe.empty() ||
                           !s.tensor_types.empty() || !s.output_tensor_type.empty() ||
                           !s.token_embedding_type.empty() || s.gguf.pure;
    if (gguf_only)
      fail(ErrorKind::Argument,
           "type {}: budgets, recipes and per-tensor types apply to GGUF targets only", s.type);
  }
  if (fp8) {  // FP8 E4M3 weights: compressed-tensors float-quantized only
    if (s.format && *s.format != AffineFormat::CompressedTensors)
      fail(ErrorKind::Argument, "type fp8 is written as compressed-tensors, not format {}",
           affine_format_name(*s.format));
    if (s.asym) fail(ErrorKind::Argument, "type fp8 has symmetric scales only");
    if (s.group_given && s.group != 0 && s.group != -1)
      fail(ErrorKind::Argument,
           "type fp8 has one scale per output channel (group 0) or per tensor (-1), not group {}",
           s.group);
    j.target = Fp8Target{s.group_given && s.group == -1};
    return j;
  }
  const bool w8a8 = w8a8_name || (bits && j.method.kind == Method::SmoothQuant);
  if (s.format && *s.format != AffineFormat::Lowbit && (!bits || w8a8) &&
      !(w8a8 && *s.format == AffineFormat::CompressedTensors))
    fail(ErrorKind::Argument,
         "format {} holds int2..int8 weights (with rtn, gptq or qat), not type {}{}; W8A8 "
         "goes to lowbit or compressed-tensors",
         affine_format_name(*s.format), s.type, w8a8 ? " with W8A8" : "");
  if (w8a8_name || (bits && j.method.kind == Method::SmoothQuant)) {
    if ((bits && bits != 8) || s.asym)
      fail(ErrorKind::Argument, "{} writes int8 symmetric weights: use type int8",
           w8a8_name ? "w8a8" : "method smoothquant");
    if (s.group_given && s.group != 0)
      fail(ErrorKind::Argument,
           "W8A8 weights have one scale per output channel: group {} does not apply", s.group);
    j.target = W8A8Target{s.static_activations, s.range, s.percentile,
                          s.format.value_or(AffineFormat::Lowbit)};
    return j;
  }
  if (bits) {
    AffineSpec spec;
    spec.bits = bits;
    spec.levels = affine_type_levels(s.type);
    spec.group = s.group;
    spec.symmetric = !s.asym;
    spec.range = s.range;
    spec.percentile = s.percentile;
    j.target = AffineTarget{spec, s.format.value_or(AffineFormat::Lowbit)};
    return j;
  }
  GgufTarget g = s.gguf;
  g.type = s.type;
  for (const auto& spec : s.tensor_types) g.tensor_types.push_back(type_override(spec));
  if (!s.output_tensor_type.empty())
    g.output_type = storage_type("output tensor type", s.output_tensor_type);
  if (!s.token_embedding_type.empty())
    g.token_embedding_type = storage_type("token embedding type", s.token_embedding_type);
  if (s.bpw && !s.max_size.empty())
    fail(ErrorKind::Argument, "give a budget in bits per weight or in bytes, not both");
  if (s.bpw) {
    if (!(*s.bpw > 0 && *s.bpw <= 32))
      fail(ErrorKind::Argument, "bpw {}: a budget is a number of bits per weight above 0", *s.bpw);
    g.budget = Budget{0, *s.bpw};
  }
  if (!s.max_size.empty()) g.budget = Budget{parse_byte_size(s.max_size), 0};
  j.target = g;
  return j;
}

namespace {

template <typename T>
T number(const std::string& name, const std::string& v) {
  T out{};
  const char* end = v.data() + v.size();
  auto [p, ec] = std::from_chars(v.data(), end, out);
  if (ec != std::errc() || p != end || v.empty())
    fail(ErrorKind::Argument, "setting {}: '{}' is not a number", name, v);
  return out;
}

bool boolean(const std::string& name, const std::string& v) {
  if (v == "true" || v == "1" || v == "on") return true;
  if (v == "false" || v == "0" || v == "off") return false;
  fail(ErrorKind::Argument, "setting {}: '{}' is not true or false", name, v);
}

template <typename T>
T choice(const std::string& name, const std::string& v, const std::map<std::string, T>& choices) {
  auto it = choices.find(v);
  if (it != choices.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& [k, x] : choices) names.push_back(k);
  fail(ErrorKind::Argument, "setting {}: '{}' is not one of {}", name, v, fmt::join(names, ", "));
}

using Setter = std::function<void(JobSettings&, const std::string& name, const std::string& value)>;

const std::map<std::string, Setter>& setters() {
  using S = JobSettings;
  using V = const std::string&;
  static const std::map<std::string, Setter> all = {
      {"type", [](S& s, V, V v) { s.type = v; }},
      {"method", [](S& s, V, V v) { s.method = v; }},
      {"tokenizer", [](S& s, V, V v) { s.job.tokenizer = v; }},
      {"threads", [](S& s, V n, V v) { s.job.threads = number<int>(n, v); }},
      {"calib", [](S& s, V, V v) { s.job.calib.text = v; }},
      {"stats", [](S& s, V, V v) { s.job.calib.stats = v; }},
      {"imatrix", [](S& s, V, V v) { s.job.calib.stats = v; }},
      {"calib-samples", [](S& s, V n, V v) { s.job.calib.samples = number<size_t>(n, v); }},
      {"calib-ctx", [](S& s, V n, V v) { s.job.calib.ctx = number<size_t>(n, v); }},
      {"seed", [](S& s, V n, V v) { s.job.calib.seed = number<uint64_t>(n, v); }},
      {"calib-kernels",
       [](S& s, V n, V v) {
         s.job.calib.fast_kernels = choice<bool>(n, v, {{"fast", true}, {"reference", false}});
       }},
      {"resume", [](S& s, V n, V v) { s.job.resume = boolean(n, v); }},
      {"damp", [](S& s, V n, V v) { s.job.method.gptq.damp = number<double>(n, v); }},
      {"act-order", [](S& s, V n, V v) { s.act_order = boolean(n, v); }},
      {"fp-targets", [](S& s, V n, V v) { s.job.method.gptq.fp_targets = boolean(n, v); }},
      {"awq-grid", [](S& s, V n, V v) { s.job.method.awq.grid = number<int>(n, v); }},
      {"awq-objective",
       [](S& s, V n, V v) {
         s.job.method.awq.objective = choice<AwqObjective>(
             n, v, {{"block", AwqObjective::Block}, {"layer", AwqObjective::Layer}});
       }},
      {"awq-windows", [](S& s, V n, V v) { s.job.method.awq.windows = number<int>(n, v); }},
      {"awq-clip", [](S& s, V n, V v) { s.job.method.awq.clip = boolean(n, v); }},
      {"awq-sub-passes", [](S& s, V n, V v) { s.job.method.awq.sub_passes = number<int>(n, v); }},
      {"steps", [](S& s, V n, V v) { s.job.method.learned.steps = number<int>(n, v); }},
      {"lr", [](S& s, V n, V v) { s.job.method.learned.lr = number<double>(n, v); }},
      {"batch", [](S& s, V n, V v) { s.job.method.learned.batch = number<int>(n, v); }},
      {"adaround-reg", [](S& s, V n, V v) { s.job.method.learned.reg = number<double>(n, v); }},
      {"start",
       [](S& s, V n, V v) {
         s.job.method.learned.gptq_start = choice<bool>(n, v, {{"gptq", true}, {"rtn", false}});
       }},
      {"learn-inputs",
       [](S& s, V n, V v) {
         s.job.method.learned.teacher_inputs =
             choice<bool>(n, v, {{"quantized", false}, {"teacher", true}});
       }},
      {"rotate",
       [](S& s, V n, V v) {
         s.job.rotation.kind = choice<RotationKind>(n, v, rotation_choices());
       }},
      {"rotate-ffn-down", [](S& s, V n, V v) { s.job.rotation.ffn_down = boolean(n, v); }},
      {"rotate-seed", [](S& s, V n, V v) { s.job.rotation.seed = number<uint64_t>(n, v); }},
      {"rotate-steps",
       [](S& s, V n, V v) { s.job.rotation.learn.steps = number<int>(n, v); }},
      {"rotate-lr", [](S& s, V n, V v) { s.job.rotation.learn.lr = number<double>(n, v); }},
      {"rotate-ce", [](S& s, V n, V v) { s.job.rotation.learn.ce_weight = number<double>(n, v); }},
      {"rotate-weights",
       [](S& s, V n, V v) { s.job.rotation.learn.weights = rotation_weights_from_name(v); }},
      {"lowrank", [](S& s, V n, V v) { s.job.lowrank.rank = number<uint32_t>(n, v); }},
      {"lowrank-only", [](S& s, V, V v) { s.job.lowrank.only = v; }},
      {"lowrank-alpha", [](S& s, V n, V v) { s.job.lowrank_alpha = number<double>(n, v); }},
      {"sparsity", [](S& s, V n, V v) { s.job.sparsity.ratio = number<double>(n, v); }},
      {"owl", [](S& s, V n, V v) { s.job.sparsity.owl_lambda = number<double>(n, v); }},
      {"owl-m", [](S& s, V n, V v) { s.job.sparsity.owl_m = number<double>(n, v); }},
      {"nm",
       [](S& s, V, V v) {
         const SparsityPattern p = parse_nm(v);
         s.job.sparsity.n = p.n, s.job.sparsity.m = p.m;
       }},
      {"prune",
       [](S& s, V n, V v) {
         const auto c = prune_method_choices();
         s.job.prune = choice<PruneMethod>(n, v, {c.begin(), c.end()});
       }},
      {"prune-ffn",
       [](S& s, V n, V v) { s.job.structured.ffn_share = number<double>(n, v); }},
      {"prune-kv-groups",
       [](S& s, V n, V v) { s.job.structured.kv_groups = number<uint32_t>(n, v); }},
      {"distill-steps", [](S& s, V n, V v) { s.job.distill.steps = number<int>(n, v); }},
      {"distill-lr", [](S& s, V n, V v) { s.job.distill.lr = number<double>(n, v); }},
      {"distill-ce", [](S& s, V n, V v) { s.job.distill.ce_weight = number<double>(n, v); }},
      {"distill-checkpoint-every",
       [](S& s, V n, V v) { s.job.distill.checkpoint_every = number<int>(n, v); }},
      {"qat-start",
       [](S& s, V n, V v) {
         s.job.method.qat.start = choice<Method>(n, v, {{"rtn", Method::Rtn},
                                                        {"gptq", Method::Gptq},
                                                        {"adaround", Method::AdaRound},
                                                        {"adaquant", Method::AdaQuant},
                                                        {"autoround", Method::AutoRound}});
       }},
      {"teacher", [](S& s, V, V v) { s.job.teacher = std::string(v); }},
      {"eval-every", [](S& s, V n, V v) { s.job.distill.eval_every = number<int>(n, v); }},
      {"loss-curve", [](S& s, V, V v) { s.job.distill.loss_curve = std::string(v); }},
      {"qat-train",
       [](S& s, V n, V v) {
         s.job.method.qat.train_scales =
             choice<bool>(n, v, {{"weights", false}, {"scales", true}});
       }},
      {"teacher-top-k",
       [](S& s, V n, V v) { s.job.distill.teacher_top_k = number<int>(n, v); }},
      {"act-bits", [](S& s, V n, V v) { s.job.distill.rounding.act_bits = number<int>(n, v); }},
      {"act-clip", [](S& s, V n, V v) { s.job.distill.rounding.act_clip = number<float>(n, v); }},
      {"cache-type-k",
       [](S& s, V n, V v) { s.job.distill.rounding.cache_type_k = kv_cache_type(v, n); }},
      {"cache-type-v",
       [](S& s, V n, V v) { s.job.distill.rounding.cache_type_v = kv_cache_type(v, n); }},
      {"rotate-kv", [](S& s, V n, V v) { s.job.distill.rounding.rotate_kv = boolean(n, v); }},
      {"act-ranges",
       [](S& s, V n, V v) {
         s.job.distill.rounding.static_ranges =
             choice<bool>(n, v, {{"dynamic", false}, {"static", true}});
       }},
      {"sq-alpha", [](S& s, V n, V v) { s.job.method.smoothquant.alpha = number<double>(n, v); }},
      {"act-scheme",
       [](S& s, V n, V v) {
         s.static_activations = choice<bool>(n, v, {{"per-token", false}, {"static", true}});
       }},
      {"bpw", [](S& s, V n, V v) { s.bpw = number<double>(n, v); }},
      {"max-size", [](S& s, V, V v) { s.max_size = v; }},
      {"recipe", [](S& s, V, V v) { s.gguf.recipe_path = v; }},
      {"save-recipe", [](S& s, V, V v) { s.gguf.save_recipe = v; }},
      {"sensitivity",
       [](S& s, V n, V v) {
         s.gguf.sensitivity.mode = choice<SensitivityMode>(
             n, v, {{"proxy", SensitivityMode::Proxy}, {"measured", SensitivityMode::Measured}});
       }},
      {"sensitivity-windows",
       [](S& s, V n, V v) { s.gguf.sensitivity.windows = number<size_t>(n, v); }},
      {"sensitivity-ctx", [](S& s, V n, V v) { s.gguf.sensitivity.ctx = number<size_t>(n, v); }},
      {"mix-types",
       [](S& s, V n, V v) { s.gguf.sensitivity.candidates = parse_type_list(n, v); }},
      {"tensor-type", [](S& s, V, V v) { s.tensor_types.push_back(v); }},
      {"output-tensor-type", [](S& s, V, V v) { s.output_tensor_type = v; }},
      {"token-embedding-type", [](S& s, V, V v) { s.token_embedding_type = v; }},
      {"pure", [](S& s, V n, V v) { s.gguf.pure = boolean(n, v); }},
      {"group", [](S& s, V n, V v) { s.group = number<int64_t>(n, v), s.group_given = true; }},
      {"sym", [](S& s, V n, V v) { s.asym = !boolean(n, v); }},
      {"asym", [](S& s, V n, V v) { s.asym = boolean(n, v); }},
      {"range",
       [](S& s, V n, V v) {
         s.range = choice<RangeMethod>(n, v,
                                       {{"minmax", RangeMethod::MinMax},
                                        {"percentile", RangeMethod::Percentile},
                                        {"mse", RangeMethod::Mse}});
       }},
      {"percentile", [](S& s, V n, V v) { s.percentile = number<double>(n, v); }},
      {"format",
       [](S& s, V n, V v) {
         s.format = choice<AffineFormat>(n, v,
                                         {{"lowbit", AffineFormat::Lowbit},
                                          {"gptq", AffineFormat::Gptq},
                                          {"awq", AffineFormat::Awq},
                                          {"compressed-tensors", AffineFormat::CompressedTensors}});
       }},
  };
  return all;
}

}  // namespace

void set_job_option(JobSettings& s, const std::string& name, const std::string& value) {
  auto it = setters().find(name);
  if (it == setters().end())
    fail(ErrorKind::Argument, "unknown setting '{}' (settings: {})", name,
         fmt::join(job_option_names(), ", "));
  it->second(s, name, value);
}

std::vector<std::string> job_option_names() {
  std::vector<std::string> out;
  for (const auto& [name, setter] : setters()) out.push_back(name);
  return out;
}

}  // namespace lowbit

// The affine (int2..int8) safetensors checkpoint: writer and loader.
// The safetensors `__metadata__` key "lowbit.affine" holds JSON:
//   {"bits":4,"group_size":128,"sym":true,"range":"mse","columns":{"<weight base name>":cols,...}}
// because the packed row length alone does not determine the column count.
#include <chrono>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "formats/model_writer.h"
#include "lowbit/affine.h"
#include "lowbit/error.h"
#include "lowbit/sparsity.h"
#include "lowbit/file_io.h"
#include "lowbit/safetensors.h"
#include "quant/error_sums.h"
#include "quant/hf_dir_writer.h"
#include "quant/hf_formats.h"
#include "quant/loaded_linear.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

std::string base_of(const std::string& hf_weight_name) {
  return hf_weight_name.substr(0, hf_weight_name.size() - std::string(".weight").size());
}

// Quantizes all rows of one weight with `n_threads` threads (rows split between them).
AffineTensor quantize_parallel(const std::vector<float>& x, uint64_t rows, uint64_t cols,
                               const AffineSpec& s, int n_threads) {
  if (s.group < 0) return affine_quantize(x.data(), rows, cols, s);  // one scale for all rows
  AffineTensor out;
  const uint64_t rb = packed_row_bytes(cols, s.bits), gpr = s.groups_per_row(cols);
  out.codes.resize(rows * rb);
  out.scales.resize(rows * gpr);
  out.zeros.resize(rows * gpr);
  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    AffineTensor part = affine_quantize(x.data() + r0 * cols, r1 - r0, cols, s);
    std::copy(part.codes.begin(), part.codes.end(), out.codes.begin() + r0 * rb);
    std::copy(part.scales.begin(), part.scales.end(), out.scales.begin() + r0 * gpr);
    std::copy(part.zeros.begin(), part.zeros.end(), out.zeros.begin() + r0 * gpr);
  });
  return out;
}

bool is_w8(const AffineSpec& s) { return s.bits == 8 && s.group == 0 && s.symmetric; }

double relative_rms_error(const std::vector<float>& x, const std::vector<float>& y) {
  ErrorSums e;
  e.add(x.data(), y.data(), x.size());
  return e.relative_rms();
}

const char* range_name(RangeMethod r) {
  return r == RangeMethod::MinMax ? "minmax" : r == RangeMethod::Percentile ? "percentile" : "mse";
}

}  // namespace

QuantizeReport write_affine_model(const Model& m, const std::string& out_dir,
                                  const AffineSpec& spec, const AffineWriteOptions& o) {
  const auto& on_tensor = o.on_tensor;
  const AffineQuantizer& quantizer = o.quantizer;
  const std::string& method = o.method;
  const W8A8Activations* int8_activations = o.int8_activations;
  int n_threads = o.n_threads;
  validate(spec);
  if (int8_activations && o.format != AffineFormat::Lowbit &&
      o.format != AffineFormat::CompressedTensors)
    fail(ErrorKind::Argument,
         "W8A8 checkpoints are written in lowbit's or compressed-tensors' layout, not {}",
         affine_format_name(o.format));
  if (int8_activations && !is_w8(spec))
    fail(ErrorKind::Argument, "W8A8 needs int8 per-channel symmetric weights, not {}",
         spec.describe());
  if (m.format != ModelFormat::HfDir)
    fail(ErrorKind::Argument,
         "{}: integer (affine) output is a Hugging Face directory; the source must be one too",
         m.source);
  const auto t0 = std::chrono::steady_clock::now();
  n_threads = resolve_threads(n_threads);
  QuantizeReport report;
  report.method = method;
  report.tensors.resize(m.tensors.size());
  nlohmann::json columns = nlohmann::json::object();
  std::vector<OutputTensor> out;
  // Quantized triples are produced together: the .qweight producer fills a cache that the
  // .scales and .zeros producers (written right after it) consume.
  auto cache = std::make_shared<AffineTensor>();
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorView& src = m.tensors[i];
    const std::string hf = gguf_to_hf_name(src.name);
    TensorReport& rep = report.tensors[i];
    rep.name = src.name;
    rep.shape = src.shape;
    report.n_weights += src.n_values();
    auto done = [&report, i, n = m.tensors.size(), on_tensor] {
      if (on_tensor) on_tensor(i, n, report.tensors[i]);
    };
    if (!quant::is_layer_matrix(src)) {
      out.push_back(quant::plain_output(m, src, rep, done));
      report.total_bytes += rep.bytes;
      continue;
    }
    const uint64_t rows = src.shape[0], cols = src.shape[1];
    const uint64_t gpr = spec.groups_per_row(cols), n_params = spec.group < 0 ? 1 : rows * gpr;
    const std::vector<uint64_t> param_shape =
        spec.group < 0 ? std::vector<uint64_t>{1, 1} : std::vector<uint64_t>{rows, gpr};
    const std::string base = base_of(hf);
    columns[base] = cols;
    rep.type = DType::U8;
    rep.note = spec.describe() + (method == "rtn" ? "" : " " + method);
    const uint64_t row_bytes = packed_row_bytes(cols, spec.bits);
    // Quantizes the weight into the cache and measures what was lost.
    auto quantize_into_cache = [&m, &src, &rep, spec, n_threads, cache, rows, cols, &quantizer] {
      const auto x = load_rows(m, src, RopeLayout::Halves);
      *cache = quantizer ? quantizer(src.name, x, rows, cols)
                         : quantize_parallel(x, rows, cols, spec, n_threads);
      std::vector<float> y(x.size());
      affine_dequantize(*cache, rows, cols, spec, y.data());
      rep.rel_rms_error = relative_rms_error(x, y);
      rep.zero_share = zero_share(y.data(), y.size());  // shown when the job pruned
    };
    if (o.format != AffineFormat::Lowbit) {  // the layout's parts, all packed by the first
      const auto parts =
          quant::packed_parts(o.format, spec, rows, cols, src.name, int8_activations);
      auto packed = std::make_shared<std::vector<std::vector<uint8_t>>>();
      rep.bytes = 0;
      for (size_t k = 0; k < parts.size(); ++k) {
        uint64_t n = traits(parts[k].type).type_size;
        for (uint64_t d : parts[k].shape) n *= d;
        rep.bytes += n;
        OutputTensor t{{base + parts[k].suffix, parts[k].type, parts[k].shape}, n, {}};
        t.produce = [k, last = k + 1 == parts.size(), packed, quantize_into_cache, cache, spec,
                     rows, cols, fmt = o.format, done, int8_activations,
                     &src](std::vector<uint8_t>& bytes) {
          if (k == 0) {
            quantize_into_cache();
            *packed = quant::pack_affine(fmt, *cache, spec, rows, cols, int8_activations, src.name);
          }
          bytes = std::move((*packed)[k]);
          if (last) done();
        };
        out.push_back(std::move(t));
      }
      report.total_bytes += rep.bytes;
      continue;
    }
    rep.bytes = rows * row_bytes + n_params * 3;  // codes + f16 scales + u8 zeros
    report.total_bytes += rep.bytes;
    OutputTensor q{{base + ".qweight", DType::U8, {rows, row_bytes}}, rows * row_bytes, {}};
    q.produce = [cache, quantize_into_cache](std::vector<uint8_t>& bytes) {
      quantize_into_cache();
      bytes = cache->codes;
    };
    OutputTensor sc{{base + ".scales", DType::F16, param_shape}, n_params * 2, {}};
    sc.produce = [cache](std::vector<uint8_t>& bytes) {
      bytes = from_f32(cache->scales.data(), cache->scales.size(), DType::F16);
    };
    OutputTensor z{{base + ".zeros", DType::U8, param_shape}, n_params, {}};
    z.produce = [cache, done](std::vector<uint8_t>& bytes) {
      bytes = cache->zeros;
      done();
    };
    out.push_back(std::move(q));
    out.push_back(std::move(sc));
    out.push_back(std::move(z));
  }
  nlohmann::json meta = {{"bits", spec.bits},     {"group_size", spec.group},
                         {"sym", spec.symmetric}, {"range", range_name(spec.range)},
                         {"method", method},      {"columns", columns}};
  nlohmann::json acts_meta;
  if (int8_activations) {
    nlohmann::json scales = nlohmann::json::object();
    for (const auto& [name, s] : int8_activations->input_scales)
      scales[base_of(gguf_to_hf_name(name))] = s;
    acts_meta = {{"bits", 8},
                 {"scheme", int8_activations->static_scales ? "static" : "per-token"},
                 {"input_scales", scales}};
  }

  if (int8_activations) meta["activations"] = acts_meta;
  std::map<std::string, std::string> st_meta = {{"format", "pt"}};
  nlohmann::json qc;
  if (o.format == AffineFormat::Lowbit) {
    st_meta["lowbit.affine"] = meta.dump();
    qc = {{"quant_method", "lowbit-affine"}, {"bits", spec.bits},
          {"group_size", spec.group},        {"sym", spec.symmetric},
          {"range", range_name(spec.range)}, {"method", method}};
    if (int8_activations) qc["activations"] = acts_meta;
  } else {
    qc = quant::hf_quantization_config(o.format, spec, method, int8_activations);
  }
  std::map<std::string, std::string> extra;
  if (o.format == AffineFormat::Gptq)  // AutoGPTQ and vLLM also read this file
    extra["quantize_config.json"] = qc.dump(2) + "\n";
  quant::write_hf_dir(m, out_dir, out, st_meta, qc,
                      o.format == AffineFormat::Lowbit ? "" : "float16", extra);
  const fs::path final_dir(out_dir);
  report.file_bytes = fs::file_size(final_dir / "model.safetensors");
  report.bits_per_weight = report.n_weights ? 8.0 * report.total_bytes / report.n_weights : 0;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

void load_affine_tensors(Model& m, const std::vector<TensorView>& raw,
                         const std::string& meta_json) {
  nlohmann::json meta;
  AffineSpec spec;
  try {
    meta = nlohmann::json::parse(meta_json);
    spec.bits = meta.at("bits").get<int>();
    spec.group = meta.at("group_size").get<int64_t>();
    spec.symmetric = meta.at("sym").get<bool>();
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorKind::Format, "{}: metadata 'lowbit.affine' is not valid: {}", m.source, e.what());
  }
  validate(spec);
  // W8A8: the activation scheme, and the int8 weights kept for the engine.
  const bool w8a8 = meta.contains("activations");
  bool static_acts = false;
  nlohmann::json input_scales = nlohmann::json::object();
  if (w8a8) {
    try {
      const auto& a = meta.at("activations");
      const std::string scheme = a.at("scheme").get<std::string>();
      if (a.at("bits").get<int>() != 8 || (scheme != "per-token" && scheme != "static"))
        fail(ErrorKind::Format,
             "{}: 'lowbit.affine' activations must be 8 bits, per-token or static; got {}",
             m.source, a.dump());
      static_acts = scheme == "static";
      if (static_acts) input_scales = a.at("input_scales");
    } catch (const nlohmann::json::exception& e) {
      fail(ErrorKind::Format, "{}: metadata 'lowbit.affine' activations are not valid: {}",
           m.source, e.what());
    }
    if (!is_w8(spec))
      fail(ErrorKind::Format,
           "{}: W8A8 activations need int8 per-channel symmetric weights, not {}", m.source,
           spec.describe());
  }
  std::map<std::string, const TensorView*> by_name;
  for (const TensorView& t : raw) by_name[t.name] = &t;
  auto part = [&](const std::string& base, const char* suffix, DType dt) -> const TensorView& {
    auto it = by_name.find(base + suffix);
    if (it == by_name.end())
      fail(ErrorKind::Format, "{}: tensor '{}{}' is missing", m.source, base, suffix);
    if (it->second->dtype != dt)
      fail(ErrorKind::Format, "{}: tensor '{}{}' must be {}", m.source, base, suffix,
           dtype_name(dt));
    return *it->second;
  };
  for (auto& [base, cols_json] : meta.at("columns").items()) {
    const uint64_t cols = cols_json.get<uint64_t>();
    const TensorView& q = part(base, ".qweight", DType::U8);
    const TensorView& sc = part(base, ".scales", DType::F16);
    const TensorView& z = part(base, ".zeros", DType::U8);
    const uint64_t rows = q.shape.empty() ? 0 : q.shape[0];
    const uint64_t n_params = spec.group < 0 ? 1 : rows * spec.groups_per_row(cols);
    if (q.shape.size() != 2 || q.shape[1] != packed_row_bytes(cols, spec.bits) ||
        sc.n_values() != n_params || z.n_values() != n_params)
      fail(ErrorKind::Format, "{}: tensor '{}.qweight' {} does not match {} columns of {}",
           m.source, base, shape_string(q.shape), cols, spec.describe());
    auto grid = std::make_shared<AffineWeight>();
    grid->spec = spec, grid->rows = rows, grid->cols = cols;
    grid->t.codes.assign(q.data, q.data + q.nbytes);
    grid->t.scales = to_f32(sc);
    grid->t.zeros.assign(z.data, z.data + z.nbytes);
    std::vector<float> w(rows * cols);
    affine_dequantize(grid->t, rows, cols, spec, w.data());
    const std::string name = quant::add_loaded_linear(m, base, rows, cols, std::move(w), grid);
    if (w8a8) {
      Int8Weight& q8 = m.int8_weights[name] = quant::int8_weight_of(*grid);
      if (static_acts) {
        const auto& s = input_scales.contains(base) ? input_scales[base] : nlohmann::json();
        q8.input_scale = quant::positive_input_scale(
            s.is_number() ? std::optional<float>(s.get<float>()) : std::nullopt, m.source, base);
      }
    }
  }
}

}  // namespace lowbit

namespace lowbit::quant {

std::string add_loaded_linear(Model& m, const std::string& hf_base, uint64_t rows, uint64_t cols,
                              std::vector<float> w, std::shared_ptr<const AffineWeight> grid) {
  const std::string name = hf_to_gguf_name(hf_base + ".weight");
  if (name.empty())
    fail(ErrorKind::Format, "{}: '{}' is not a weight of the model", m.source, hf_base);
  m.add_f32(name, {rows, cols}, std::move(w));
  if (grid) m.affine_weights[name] = std::move(grid);
  return name;
}

Int8Weight int8_weight_of(const AffineWeight& w) {
  Int8Weight q8;
  q8.rows = w.rows, q8.cols = w.cols, q8.scale = w.t.scales;
  q8.q.resize(w.rows * w.cols);
  for (uint64_t r = 0; r < w.rows; ++r)
    for (uint64_t i = 0; i < w.cols; ++i)
      q8.q[r * w.cols + i] = static_cast<int8_t>(int{w.t.codes[r * w.cols + i]} - w.t.zeros[r]);
  return q8;
}

float positive_input_scale(std::optional<float> s, const std::string& source,
                           const std::string& linear) {
  if (!s || !(*s > 0))
    fail(ErrorKind::Format, "{}: static W8A8 checkpoint has no positive input scale for '{}'",
         source, linear);
  return *s;
}

}  // namespace lowbit::quant

// Streams a model into a quantized GGUF file: the writer asks for one tensor at a time,
// which is loaded as f32, quantized by all threads (rows split between them), measured
// and released. Peak memory is about one tensor in f32 plus its quantized bytes.
#include <cblas.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <mutex>

#include "core/parallel.h"
#include "formats/model_writer.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "quant/error_sums.h"
#include "quant/tensor_errors.h"

namespace lowbit {
namespace {

// Quantizes rows of x into out: GPTQ when `gptq` and H are given and the type is a block
// type, round to nearest otherwise.
void quantize_tensor(DType type, const std::vector<float>& x, uint64_t row_len, const float* importance,
                     const std::vector<double>* hessian, const GptqOptions* gptq, int n_threads, std::vector<uint8_t>& out) {
  const uint64_t n_rows = x.size() / row_len;
  const auto& tr = traits(type);
  const uint64_t row_bytes = row_len / tr.block_size * tr.type_size;
  out.resize(n_rows * row_bytes);
  if (gptq && hessian && !hessian->empty() && !tr.is_float) {
    GptqOptions g = *gptq;
    g.n_threads = n_threads;
    gptq_quantize_rows(type, x.data(), n_rows, row_len, *hessian, importance, g, out.data());
  } else {
    quantize_rows(type, x.data(), n_rows, row_len, importance, n_threads, out.data());
  }
}

// Quantized rows of `t` (model layout) with the q/k rows moved to `target` as load_rows does.
std::vector<uint8_t> rows_in_layout(const Model& m, const TensorView& t, const std::vector<uint8_t>& bytes, RopeLayout target) {
  const uint64_t rows = t.shape[0];
  std::vector<float> index(rows), moved(rows);
  for (uint64_t r = 0; r < rows; ++r) index[r] = static_cast<float>(r);
  TensorView one_column = t;
  one_column.shape = {rows};
  one_column.dtype = DType::F32;
  one_column.data = reinterpret_cast<const uint8_t*>(index.data());
  one_column.nbytes = rows * sizeof(float);
  moved = load_rows(m, one_column, target);  // moved[r] = source row of row r
  const uint64_t rb = bytes.size() / rows;
  std::vector<uint8_t> out(bytes.size());
  for (uint64_t r = 0; r < rows; ++r)
    std::copy_n(bytes.begin() + static_cast<uint64_t>(moved[r]) * rb, rb, out.begin() + r * rb);
  return out;
}

}  // namespace

QuantizeReport quantize_model_gguf(const Model& m, const std::string& path, const QuantizeOptions& o) {
  const auto t0 = std::chrono::steady_clock::now();
  QuantizePlanOptions plan_opts = o.plan;
  plan_opts.has_importance = static_cast<bool>(o.importance);
  const std::vector<TensorPlan> plan = plan_quantization(m, plan_opts);
  const Preset& preset = require_preset(plan_opts.preset);
  const int n_threads = resolve_threads(o.n_threads);

  GgufWriter w;
  set_model_metadata(m, w, preset.file_type);
  w.set("general.quantization_version", GgufValue::of_u32(2));
  w.set("lowbit.quantize.preset", GgufValue::of_string(preset.name));
  const std::string method = !o.method.empty() ? o.method : o.use_gptq && o.hessian ? "gptq" : o.importance ? "rtn-importance" : "rtn";
  w.set("lowbit.quantize.method", GgufValue::of_string(method));
  add_rope_freqs(m, w);

  QuantizeReport report;
  report.tensors.resize(plan.size());
  const RopeLayout target = gguf_rope_layout(m.config);
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorView& src = m.tensors[i];
    TensorReport& rep = report.tensors[i];
    rep = {src.name, src.shape, plan[i].type, 0, 0, 0, 0, plan[i].note};
    if (!tensor_bytes(rep.type, src.row_len(), src.n_values(), &rep.bytes))
      fail(ErrorKind::Argument, "tensor '{}': cannot store {} as {}", src.name, shape_string(src.shape), dtype_name(rep.type));
    report.total_bytes += rep.bytes;
    report.n_weights += src.n_values();
    OutputTensor t;
    t.info = src;
    t.info.dtype = rep.type;
    t.nbytes = rep.bytes;
    t.produce = [&, i, target](std::vector<uint8_t>& out) {
      const TensorView& s = m.tensors[i];
      TensorReport& r = report.tensors[i];
      const std::vector<float> x = load_rows(m, s, target);
      const std::vector<float>* imp = o.importance ? o.importance(s.name) : nullptr;
      if (imp && imp->size() != s.row_len())
        fail(ErrorKind::Argument, "importance vector for '{}' has {} values, the tensor has {} columns", s.name,
             imp->size(), s.row_len());
      const std::vector<double>* h = o.hessian ? o.hessian(s.name) : nullptr;
      if (h && !h->empty() && h->size() != s.row_len() * s.row_len())
        fail(ErrorKind::Argument, "Hessian for '{}' has {} values, the tensor needs {}x{}", s.name, h->size(), s.row_len(),
             s.row_len());
      if (const PrecomputedTensor* done = o.precomputed ? o.precomputed(s.name) : nullptr) {
        if (done->bytes.size() != r.bytes)
          fail(ErrorKind::Argument, "precomputed '{}' has {} bytes, expected {}", s.name, done->bytes.size(), r.bytes);
        out = rows_in_layout(m, s, done->bytes, target);
        r.rel_rms_error = done->rel_rms_error;
        r.rel_output_error = done->rel_output_error;
        r.rel_output_error_rtn = done->rel_output_error_rtn;
      } else {
        quantize_tensor(r.type, x, s.row_len(), imp ? imp->data() : nullptr, h, o.use_gptq ? &o.gptq : nullptr, n_threads, out);
        const std::vector<float> hf = hessian_f32(h, s.row_len());
        const TensorErrors e = measure_errors(r.type, x, s.row_len(), out, h ? &hf : nullptr, n_threads);
        r.rel_rms_error = e.weight;
        r.rel_output_error = e.output;
        if (o.use_gptq && !hf.empty() && !traits(r.type).is_float) {  // what plain rounding would have cost, for the report
          std::vector<uint8_t> rtn;
          quantize_tensor(r.type, x, s.row_len(), imp ? imp->data() : nullptr, nullptr, nullptr, n_threads, rtn);
          r.rel_output_error_rtn = measure_errors(r.type, x, s.row_len(), rtn, &hf, n_threads).output;
        }
      }
      release_mapped_pages(s.data, s.nbytes);
      if (o.on_tensor) o.on_tensor(i, plan.size(), r);
    };
    w.add_tensor(std::move(t));
  }
  w.write(path);
  report.file_bytes = std::filesystem::file_size(path);
  report.bits_per_weight = report.n_weights ? 8.0 * report.total_bytes / report.n_weights : 0;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

Model quantize_model_in_memory(const Model& m, const QuantizePlanOptions& plan, int n_threads) {
  std::map<std::string, DType> type_of;
  for (const TensorPlan& p : plan_quantization(m, plan)) type_of[p.name] = p.type;
  Model out = m;
  for (TensorView& t : out.tensors) {
    const auto it = type_of.find(t.name);
    if (it == type_of.end() || t.dtype == it->second || t.shape.size() < 2) continue;
    auto bytes = std::make_shared<std::vector<uint8_t>>();
    quantize_tensor(it->second, to_f32(t), t.row_len(), nullptr, nullptr, nullptr, resolve_threads(n_threads), *bytes);
    t = view_of_bytes(t, it->second, *bytes);
    out.storage.push_back(bytes);
  }
  out.index();
  return out;
}

QuantizePlanOptions plan_for_type_or_preset(const std::string& name) {
  QuantizePlanOptions plan;
  if (const Preset* p = find_preset(name)) {
    plan.preset = p->name;
    return plan;
  }
  const auto type = dtype_from_name(name);
  for (const Preset& p : presets())
    if (type && p.base == *type) {
      plan.preset = p.name;
      plan.pure = true;
      return plan;
    }
  std::string names;
  for (const Preset& p : presets()) names += std::string(names.empty() ? "" : ", ") + p.name;
  fail(ErrorKind::Argument, "'{}' is not a preset or a type (presets: {})", name, names);
}

}  // namespace lowbit

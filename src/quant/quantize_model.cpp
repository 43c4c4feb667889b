// Streams a model into a quantized GGUF file: the writer asks for one tensor at a time,
// which is loaded as f32, quantized by all threads (rows split between them), measured
// and released. Peak memory is about one tensor in f32 plus its quantized bytes.
#include <chrono>
#include <filesystem>
#include <mutex>

#include "core/parallel.h"
#include "formats/model_writer.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "quant/error_sums.h"

namespace lowbit {
namespace {

// Quantizes rows of x into out with all threads; returns ||x - dq(q(x))|| / ||x||.
double quantize_tensor(DType type, const std::vector<float>& x, uint64_t row_len, const float* importance,
                       int n_threads, std::vector<uint8_t>& out) {
  const uint64_t n_rows = x.size() / row_len;
  const auto& tr = traits(type);
  const uint64_t row_bytes = row_len / tr.block_size * tr.type_size;
  out.resize(n_rows * row_bytes);
  ErrorSums total;
  std::mutex mu;
  parallel_for(n_rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    quantize_rows(type, x.data() + r0 * row_len, r1 - r0, row_len, importance, out.data() + r0 * row_bytes);
    std::vector<float> y(row_len);
    ErrorSums part;
    for (uint64_t r = r0; r < r1; ++r) {
      dequantize_values(type, out.data() + r * row_bytes, row_len, y.data());
      part.add(x.data() + r * row_len, y.data(), row_len);
    }
    std::lock_guard<std::mutex> lock(mu);
    total.add(part);
  });
  return total.relative_rms();
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
  w.set("lowbit.quantize.method", GgufValue::of_string(o.importance ? "rtn-importance" : "rtn"));
  add_rope_freqs(m, w);

  QuantizeReport report;
  report.tensors.resize(plan.size());
  const RopeLayout target = gguf_rope_layout(m.config);
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorView& src = m.tensors[i];
    TensorReport& rep = report.tensors[i];
    rep = {src.name, src.shape, plan[i].type, 0, 0, plan[i].note};
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
      r.rel_rms_error = quantize_tensor(r.type, x, s.row_len(), imp ? imp->data() : nullptr, n_threads, out);
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

}  // namespace lowbit

// FP8 E4M3 checkpoints (lowbit/fp8.h).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/parallel.h"
#include "formats/model_writer.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/fp8.h"
#include "quant/error_sums.h"
#include "quant/hf_dir_writer.h"
#include "quant/hf_formats.h"

namespace lowbit {
namespace {

constexpr float kE4m3Max = 448.0f;

// The scales (one per row, or one) and the E4M3 codes of w [rows, cols].
struct Fp8Weight {
  std::vector<float> scales;
  std::vector<uint8_t> codes;
};

Fp8Weight to_fp8(const std::vector<float>& w, uint64_t rows, uint64_t cols, bool per_tensor,
                 int n_threads) {
  Fp8Weight f;
  f.scales.assign(per_tensor ? 1 : rows, 0.0f);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t i = 0; i < cols; ++i) {
      float& s = f.scales[per_tensor ? 0 : r];
      s = std::max(s, std::abs(w[r * cols + i]) / kE4m3Max);
    }
  for (float& s : f.scales)
    if (!(s > 0)) s = 1.0f;  // an all-zero row: any scale decodes to 0
  f.codes.resize(w.size());
  parallel_for(rows, n_threads, [&](uint64_t r0, uint64_t r1) {
    for (uint64_t r = r0; r < r1; ++r) {
      const float s = f.scales[per_tensor ? 0 : r];
      for (uint64_t i = 0; i < cols; ++i)  // clamped as compressed-tensors does: no NaN code
        f.codes[r * cols + i] = f32_to_e4m3(std::clamp(w[r * cols + i] / s, -kE4m3Max, kE4m3Max));
    }
  });
  return f;
}

nlohmann::json fp8_quantization_config(bool per_tensor) {
  return quant::compressed_tensors_config(
      "float-quantized",
      quant::quantization_args("float", 8, true, per_tensor ? "tensor" : "channel", nullptr, false,
                               "minmax"),
      nullptr);
}

}  // namespace

QuantizeReport write_fp8_model(const Model& m, const std::string& out_dir, bool per_tensor,
                               const AffineWriteOptions& o) {
  if (m.format != ModelFormat::HfDir)
    fail(ErrorKind::Argument,
         "{}: FP8 output is a Hugging Face directory; the source must be one too", m.source);
  const auto t0 = std::chrono::steady_clock::now();
  const int n_threads = resolve_threads(o.n_threads);
  QuantizeReport report;
  report.method = o.method;
  report.tensors.resize(m.tensors.size());
  std::vector<OutputTensor> out;
  // The .weight producer fills the cache that the .weight_scale producer (next) writes.
  auto cache = std::make_shared<Fp8Weight>();
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorView& src = m.tensors[i];
    TensorReport& rep = report.tensors[i];
    rep.name = src.name;
    rep.shape = src.shape;
    report.n_weights += src.n_values();
    auto done = [&report, i, n = m.tensors.size(), on = o.on_tensor] {
      if (on) on(i, n, report.tensors[i]);
    };
    if (!quant::is_layer_matrix(src)) {
      out.push_back(quant::plain_output(m, src, rep, done));
      report.total_bytes += rep.bytes;
      continue;
    }
    const uint64_t rows = src.shape[0], cols = src.shape[1], n_scales = per_tensor ? 1 : rows;
    const std::string hf = gguf_to_hf_name(src.name);
    rep.type = DType::F8_E4M3;
    rep.note = per_tensor ? "fp8 e4m3 per-tensor" : "fp8 e4m3 per-channel";
    rep.bytes = rows * cols + n_scales * 4;
    report.total_bytes += rep.bytes;
    OutputTensor w{{hf, DType::F8_E4M3, {rows, cols}}, rows * cols, {}};
    w.produce = [&m, &src, &rep, cache, rows, cols, per_tensor,
                 n_threads](std::vector<uint8_t>& bytes) {
      const std::vector<float> x = load_rows(m, src, RopeLayout::Halves);
      *cache = to_fp8(x, rows, cols, per_tensor, n_threads);
      std::vector<float> y = to_f32(
          TensorView{{src.name, DType::F8_E4M3, {rows, cols}}, cache->codes.data(), rows * cols});
      for (uint64_t r = 0; r < rows; ++r)
        for (uint64_t c = 0; c < cols; ++c) y[r * cols + c] *= cache->scales[per_tensor ? 0 : r];
      ErrorSums e;
      e.add(x.data(), y.data(), x.size());
      rep.rel_rms_error = e.relative_rms();
      bytes = cache->codes;
    };
    const std::vector<uint64_t> scale_shape =
        per_tensor ? std::vector<uint64_t>{1} : std::vector<uint64_t>{rows, 1};
    const std::string base = hf.substr(0, hf.size() - std::string(".weight").size());
    OutputTensor sc{{base + ".weight_scale", DType::F32, scale_shape}, n_scales * 4, {}};
    sc.produce = [cache, done](std::vector<uint8_t>& bytes) {
      bytes = from_f32(cache->scales.data(), cache->scales.size(), DType::F32);
      done();
    };
    out.push_back(std::move(w));
    out.push_back(std::move(sc));
  }
  quant::write_hf_dir(m, out_dir, out, {{"format", "pt"}}, fp8_quantization_config(per_tensor),
                      "float16");
  report.file_bytes =
      std::filesystem::file_size(std::filesystem::path(out_dir) / "model.safetensors");
  report.bits_per_weight = report.n_weights ? 8.0 * report.total_bytes / report.n_weights : 0;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

}  // namespace lowbit

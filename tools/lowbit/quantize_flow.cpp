#include "quantize_flow.h"

#include <fmt/core.h>

#include <chrono>
#include <filesystem>

#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/sequential.h"
#include "lowbit/smoothquant.h"
#include "lowbit/tokenizer.h"

namespace lowbit::cli {
namespace {

// GPTQ onto a GGUF preset, one block at a time (lowbit/sequential.h), then the usual writer
// with the quantized bytes and the Hessians (for the output-error column of the report).
QuantizeReport quantize_gguf_sequential(const Model& m, const QuantizeFlags& f, QuantizeOptions q, const GptqOptions& g,
                                        const std::string& method) {
  SequentialOptions so;
  so.awq = method == "awq" || method == "awq+gptq";
  so.awq_grid = f.awq_grid;
  so.awq_objective = f.awq_objective == "layer" ? AwqObjective::Layer : AwqObjective::Block;
  so.awq_windows = f.awq_windows;
  so.awq_clip = f.awq_clip;
  so.awq_sub_passes = f.awq_sub_passes;
  so.gptq_rounding = method != "awq";
  if (so.awq && f.fp_targets) fail(ErrorKind::Argument, "--fp-targets does not combine with AWQ");
  so.calib.n_samples = f.calib.samples;
  so.calib.n_ctx = f.calib.ctx;
  so.calib.seed = f.calib.seed;
  so.calib.n_threads = f.threads;  // 0: all cores
  so.gptq = g;
  so.fp_targets = f.fp_targets;
  if (!f.quiet)
    so.on_layer = [](uint32_t l, uint32_t n, double sec) {
      fmt::print(stderr, "\r{} block {}/{} quantized ({:.1f} s)", progress_bar(l + 1, n), l + 1, n, sec);
      if (l + 1 == n) fmt::print(stderr, "\n");
    };
  std::map<std::string, DType> types;
  for (const TensorPlan& p : plan_quantization(m, q.plan)) types[p.name] = p.type;
  const auto tokens = Tokenizer::create(m.vocab, f.model)->encode(read_text_file(f.calib.text), false);
  const auto t0 = std::chrono::steady_clock::now();
  auto res = std::make_shared<SequentialResult>(quantize_sequential(m, tokens, types, so));
  const double driver_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!f.quiet)
    fmt::print(stderr, "calibration activations kept between blocks: {:.1f} MiB ({} windows x {} tokens x {} x 4 B{})\n",
               res->activation_bytes / 1048576.0, f.calib.samples, f.calib.ctx, m.config.n_embd, f.fp_targets ? " x 2" : "");
  q.precomputed = [res](const std::string& name) -> const PrecomputedTensor* {
    auto it = res->tensors.find(name);
    return it == res->tensors.end() ? nullptr : &it->second;
  };
  if (so.awq && !f.quiet) {
    fmt::print(stderr, "AWQ alpha per group (input channels' max/min mean|x|):");
    size_t flat = 0;  // AWQ protects channels whose activations stand out; in a flat input none do
    for (const auto& [name, a] : res->awq_alpha) {
      const double spread = res->awq_input_spread.at(name);
      flat += spread < 2;
      fmt::print(stderr, " {}={:g} ({:.1f})", name.substr(0, name.size() - 7), a, spread);
    }
    fmt::print(stderr, "\n");
    if (flat)
      fmt::print(stderr, "note: {} of {} groups have no outlier input channels (max/min mean|x| < 2): AWQ has little to protect there\n",
                 flat, res->awq_alpha.size());
  }
  q.method = fmt::format("{} sequential calib={}x{}", method, f.calib.samples, f.calib.ctx);
  if (so.gptq_rounding)
    q.method += fmt::format(" damp={} act_order={}{}", g.damp, g.act_order ? 1 : 0, f.fp_targets ? " fp_targets=1" : "");
  if (so.awq) {
    q.method += fmt::format(" awq_grid={} awq_objective={}", so.awq_grid, f.awq_objective);
    if (so.awq_objective == AwqObjective::Block) q.method += fmt::format(" awq_windows={}", std::min<size_t>(so.awq_windows, f.calib.samples));
    if (so.awq_clip) q.method += " awq_clip=1";
    if (!so.gptq_rounding) q.method += fmt::format(" awq_sub_passes={}", so.awq_sub_passes);
  }
  QuantizeReport r = quantize_model_gguf(m, f.out, q);
  r.seconds += driver_seconds;
  return r;
}

}  // namespace

CalibrationStats hessian_stats(const Model& m, const QuantizeFlags& f, const std::string& what) {
  if (!f.stats.empty() && !f.calib.text.empty()) fail(ErrorKind::Argument, "give --stats or --calib, not both");
  if (f.stats.empty()) {
    if (f.calib.text.empty())
      fail(ErrorKind::Argument, "{} needs --calib TEXT or --stats FILE from `lowbit calibrate --hessian`", what);
    return calibrate_from_text(m, f.model, f.calib, f.quiet, true);
  }
  CalibrationStats s = read_calibration_stats(f.stats);
  for (const TensorView& t : m.tensors) {
    auto it = s.by_weight.find(t.name);
    if (it == s.by_weight.end()) continue;
    if (it->second.xtx.empty())
      fail(ErrorKind::Argument, "{}: {} needs the Hessian of '{}', which this file lacks (write it with `lowbit calibrate --hessian`)",
           f.stats, what, t.name);
    if (it->second.sum_sq.size() != t.row_len())
      fail(ErrorKind::Argument, "{}: statistics of '{}' have {} columns, the model's tensor has {}", f.stats, t.name,
           it->second.sum_sq.size(), t.row_len());
  }
  return s;
}

namespace {
using HessianLookup = std::function<const std::vector<double>*(const std::string& name)>;

// name -> H (the mean x xᵀ of the weight's input) as the quantizers look it up, null when
// the statistics have none. Each weight's sums are released once its H is made, so the
// Hessians are held once, not twice.
HessianLookup hessian_lookup(CalibrationStats&& stats) {
  auto h = std::make_shared<std::map<std::string, std::vector<double>>>();
  for (auto& [name, st] : stats.by_weight) {
    (*h)[name] = st.hessian();
    std::vector<double>().swap(st.xtx);
  }
  return [h](const std::string& name) -> const std::vector<double>* {
    auto it = h->find(name);
    return it == h->end() ? nullptr : &it->second;
  };
}
}  // namespace

std::vector<MixTensor> measure_mix_sensitivity(const Model& m, const QuantizeFlags& f, const QuantizePlanOptions& plan) {
  if (f.calib.text.empty()) fail(ErrorKind::Argument, "--bpw / --max-size need --calib TEXT (sensitivity is measured on it)");
  const HessianLookup hessian = hessian_lookup(hessian_stats(m, f, "--bpw / --max-size"));
  SensitivityOptions so;
  so.mode = f.sensitivity == "measured" ? SensitivityMode::Measured : SensitivityMode::Proxy;
  so.seed = f.calib.seed;
  so.n_windows = f.sensitivity_windows;
  so.n_ctx = f.sensitivity_ctx;
  so.n_threads = f.threads;
  if (!f.quiet)
    so.on_step = [](size_t i, size_t n) {
      fmt::print(stderr, "\r{} sensitivity {}/{}", progress_bar(i, n), i, n);
      if (i == n) fmt::print(stderr, "\n");
    };
  const auto tokens = Tokenizer::create(m.vocab, f.model)->encode(read_text_file(f.calib.text), false);
  return measure_sensitivity(m, tokens, plan, hessian, so);
}

namespace {
uint64_t count_weights(const Model& m) {  // every value, as the quantize report counts bits per weight
  uint64_t n = 0;
  for (const TensorView& t : m.tensors) n += t.n_values();
  return n;
}
}  // namespace

uint64_t bytes_at_bpw(const Model& m, double bpw) { return static_cast<uint64_t>(bpw * count_weights(m) / 8); }

std::map<std::string, DType> recipe_for_budget(const Model& m, const std::vector<MixTensor>& tensors, uint64_t budget,
                                               const std::string& save_path, bool quiet) {
  const uint64_t n_weights = count_weights(m);
  const MixSolution s = solve_budget(tensors, budget);
  if (!quiet)
    fmt::print(stderr, "budget {} bytes ({:.3f} bpw): mix of {} bytes, estimated KLD {:.6f}\n", budget, 8.0 * budget / n_weights,
               s.bytes, s.loss);
  if (!save_path.empty()) write_recipe(save_path, tensors, s, budget);
  std::map<std::string, DType> recipe;
  for (size_t i = 0; i < tensors.size(); ++i) recipe[tensors[i].name] = tensors[i].options[s.choice[i]].type;
  return recipe;
}

void add_sensitivity_flags(CLI::App* c, QuantizeFlags& f) {
  c->add_option("--sensitivity", f.sensitivity, "budget: proxy (KLD measured at Q3_K per tensor, scaled by the Hessian error) or measured (every type)")
      ->check(CLI::IsMember({"proxy", "measured"}))->capture_default_str();
  c->add_option("--sensitivity-windows", f.sensitivity_windows, "budget: calibration windows the KLD is measured on")->capture_default_str();
  c->add_option("--sensitivity-ctx", f.sensitivity_ctx, "budget: tokens per sensitivity window")->capture_default_str();
}

GptqOptions gptq_options(const QuantizeFlags& f, bool act_order, double damp) {
  if (f.act_order && f.no_act_order) fail(ErrorKind::Argument, "--act-order and --no-act-order exclude each other");
  GptqOptions g;
  g.act_order = f.act_order || (act_order && !f.no_act_order);
  g.damp = f.damp >= 0 ? f.damp : damp;
  g.n_threads = f.threads;
  return g;
}

QuantizeReport write_w8a8(const Model& m, const QuantizeFlags& f, const AffineSpec& spec, const std::string& method,
                          const std::function<void(size_t, size_t, const TensorReport&)>& on_tensor) {
  SmoothQuantOptions so;
  so.alpha = f.sq_alpha;
  so.smooth = method == "smoothquant";
  so.static_acts = f.act_scheme == "static";
  if (!so.smooth && !so.static_acts) {  // plain W8A8 with per-token scales: nothing to calibrate
    W8A8Activations acts;
    return write_affine_model(m, f.out, spec, f.threads, on_tensor, {}, "w8a8 per-token", &acts);
  }
  if (f.calib.text.empty())
    fail(ErrorKind::Argument, "--method {}{} needs --calib TEXT (the largest input of every channel)", method,
         so.static_acts ? " --act-scheme static" : "");
  const CalibrationStats stats = calibrate_from_text(m, f.model, f.calib, f.quiet, false);
  const SmoothQuantResult r = smooth_model(m, stats, so);
  if (!f.quiet && so.smooth) {
    double before = 0, after = 0;
    for (const auto& [name, sp] : r.spikiness) before = std::max(before, sp.first), after = std::max(after, sp.second);
    fmt::print(stderr, "smoothquant alpha={}: largest channel max / mean channel max of a linear input {:.1f} -> {:.1f}\n",
               so.alpha, before, after);
  }
  const std::string label = so.smooth ? fmt::format("smoothquant alpha={} {}", so.alpha, f.act_scheme) : "w8a8 " + f.act_scheme;
  return write_affine_model(r.model, f.out, spec, f.threads, on_tensor, {}, label, &r.acts);
}

QuantizeReport quantize_gguf(const Model& m, const QuantizeFlags& f, QuantizeOptions q) {
  const bool has_stats = !f.stats.empty() || !f.calib.text.empty();
  const std::string method = f.method.empty() ? (has_stats ? "imatrix" : "rtn") : f.method;
  if (f.awq_clip && method != "awq") fail(ErrorKind::Argument, "--awq-clip chooses a rounding to nearest: it needs --method awq, not {}", method);
  if (method == "gptq" && !f.stats.empty()) {  // static GPTQ: every layer's H from the fp32 model, saved once
    CalibrationStats stats = hessian_stats(m, f, "--method gptq");
    q.use_gptq = true;
    q.gptq = gptq_options(f, false, 0.1);
    q.method = fmt::format("gptq static stats={} calib={}x{} damp={} act_order={}", std::filesystem::path(f.stats).filename().string(),
                           stats.n_windows, stats.window_len, q.gptq.damp, q.gptq.act_order ? 1 : 0);
    q.hessian = hessian_lookup(std::move(stats));
    return quantize_model_gguf(m, f.out, q);
  }
  if (method == "gptq" || method == "awq" || method == "awq+gptq") {
    if (f.calib.text.empty())
      fail(ErrorKind::Argument, "--method {} needs --calib TEXT (statistics of every layer input){}", method,
           method == "gptq" ? ", or --stats FILE from `lowbit calibrate --hessian`" : "");
    return quantize_gguf_sequential(m, f, q, gptq_options(f, false, 0.1), method);
  }
  if (method == "imatrix" && !has_stats) fail(ErrorKind::Argument, "--method imatrix needs --imatrix FILE or --calib TEXT");
  auto importance = std::make_shared<std::map<std::string, std::vector<float>>>();
  if (method == "imatrix") {
    const CalibrationStats stats =
        f.stats.empty() ? calibrate_from_text(m, f.model, f.calib, f.quiet, false) : read_calibration_stats(f.stats);
    for (const auto& [name, st] : stats.by_weight)
      if (m.find(name)) (*importance)[name] = st.importance();
    if (importance->empty())
      fail(ErrorKind::Argument, "{}: the statistics name none of this model's weights", f.stats.empty() ? f.calib.text : f.stats);
    q.importance = [importance](const std::string& name) -> const std::vector<float>* {
      auto it = importance->find(name);
      return it == importance->end() ? nullptr : &it->second;
    };
  }
  return quantize_model_gguf(m, f.out, q);
}

}  // namespace lowbit::cli

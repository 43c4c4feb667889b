// lowbit quantize MODEL -o OUT.gguf --type Q4_K_M [--tensor-type REGEX=TYPE]...
//                [--output-tensor-type T] [--token-embedding-type T] [--pure] [-t N] [--json]
// lowbit quantize HF_DIR -o OUT_DIR --type int4 [--group 128] [--sym|--asym] [--range minmax|percentile|mse]
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "quantize_flow.h"
#include "lowbit/affine.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/gptq.h"
#include "lowbit/mixed.h"
#include "lowbit/model.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"

namespace lowbit::cli {
namespace {

DType parse_storage_type(const std::string& flag, const std::string& name) {
  auto t = dtype_from_name(name);
  if (!t || !can_quantize_to(*t))
    fail(ErrorKind::Argument, "{} '{}': not a tensor type lowbit can write (Q4_K, Q6_K, Q8_0, F16, ...)", flag, name);
  return *t;
}

TypeOverride parse_override(const std::string& spec) {
  const size_t eq = spec.rfind('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == spec.size())
    fail(ErrorKind::Argument, "--tensor-type '{}': expected REGEX=TYPE, e.g. 'blk\\.0\\..*=Q8_0'", spec);
  return {spec.substr(0, eq), parse_storage_type("--tensor-type", spec.substr(eq + 1))};
}

// Affine tensors are stored as U8 codes; show their "intN" name instead.
std::string type_label(const TensorReport& t) {
  return t.type == DType::U8 && !t.note.empty() ? t.note.substr(0, t.note.find(' ')) : dtype_name(t.type);
}

void print_summary(const QuantizeReport& r) {
  bool with_output = false, with_rtn = false;
  for (const TensorReport& t : r.tensors) with_output |= t.rel_output_error > 0, with_rtn |= t.rel_output_error_rtn > 0;
  // out.RMS: the layer's output error on the calibration inputs; rtn.out: the same for plain rounding
  fmt::print("{:<32} {:<16} {:<8} {:>7} {:>10}{}{}\n", "tensor", "shape", "type", "bpw", "rel.RMS", with_output ? "   out.RMS" : "",
             with_rtn ? "   rtn.out" : "");
  for (const TensorReport& t : r.tensors) {
    const double bpw = 8.0 * t.bytes / std::max<uint64_t>(1, TensorInfo{t.name, t.type, t.shape}.n_values());
    fmt::print("{:<32} {:<16} {:<8} {:>7.3f} {:>10.5f}{}{}\n", t.name, shape_string(t.shape), type_label(t), bpw,
               t.rel_rms_error, with_output ? fmt::format(" {:>9.5f}", t.rel_output_error) : "",
               with_rtn ? fmt::format(" {:>9.5f}", t.rel_output_error_rtn) : "",
               t.note.empty() ? "" : "  " + t.note);
  }
  fmt::print("\n{} weights, {:.2f} MiB of tensors, {:.3f} bits per weight, file {:.2f} MiB, {:.1f} s\n", r.n_weights,
             r.total_bytes / 1048576.0, r.bits_per_weight, r.file_bytes / 1048576.0, r.seconds);
}

nlohmann::json summary_json(const QuantizeReport& r, const std::string& out) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorReport& t : r.tensors)
    tensors.push_back({{"name", t.name}, {"shape", t.shape}, {"type", type_label(t)}, {"bytes", t.bytes},
                       {"rel_rms_error", t.rel_rms_error}, {"rel_output_error", t.rel_output_error},
                       {"rel_output_error_rtn", t.rel_output_error_rtn},
                       {"note", t.note}});
  return {{"output", out}, {"n_weights", r.n_weights}, {"tensor_bytes", r.total_bytes}, {"file_bytes", r.file_bytes},
          {"bits_per_weight", r.bits_per_weight}, {"seconds", r.seconds}, {"tensors", tensors}};
}

}  // namespace

Action add_quantize(CLI::App& app) {
  using Opts = QuantizeFlags;
  auto o = std::make_shared<Opts>();
  auto* c = app.add_subcommand("quantize", "Quantize a model to a GGUF file (round-to-nearest, llama.cpp presets)");
  c->add_option("model", o->model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-o,--output", o->out, "output .gguf file (a directory for int2..int8)")->required();
  c->add_option("--type", o->type, "preset: Q2_K Q3_K_S Q3_K_M Q3_K_L Q4_0 Q4_1 Q4_K_S Q4_K_M Q5_0 Q5_1 Q5_K_S Q5_K_M Q6_K Q8_0 IQ4_NL IQ4_XS F16 BF16, or int2..int8 (affine safetensors)")
      ->capture_default_str();
  c->add_option("--method", o->method, "rtn; imatrix (importance-weighted, the default when statistics are given); gptq, awq, awq+gptq (need --calib; awq: GGUF types); smoothquant, w8a8 (--type int8: int8 weights and activations)")
      ->check(CLI::IsMember({"rtn", "imatrix", "gptq", "awq", "awq+gptq", "smoothquant", "w8a8"}));
  c->add_option("--sq-alpha", o->sq_alpha, "smoothquant: migration strength (0: activations unchanged, 1: flattened)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  c->add_option("--act-scheme", o->act_scheme, "smoothquant, w8a8: int8 activation scales per token (dynamic) or one per layer from calibration (static)")
      ->capture_default_str()->check(CLI::IsMember({"per-token", "static"}));
  c->add_option("--imatrix,--stats", o->stats, "statistics from `lowbit calibrate` or llama.cpp (imatrix .gguf or .dat)");
  c->add_option("--calib", o->calib.text, "calibration text: collect statistics before quantizing");
  add_calibration_flags(c, o->calib);
  c->add_option("--damp", o->damp, "gptq: dampening as a fraction of the mean Hessian diagonal (default 0.1 for GGUF types, 0.01 for int types)");
  c->add_flag("--act-order", o->act_order, "gptq: columns by decreasing Hessian diagonal, scales fixed up front (default for int types)");
  c->add_option("--awq-grid", o->awq_grid, "awq: alpha is tried at 0, 1/N, ..., 1")->capture_default_str()->check(CLI::Range(1, 1000));
  c->add_option("--awq-objective", o->awq_objective, "awq: alpha minimises the block output error (block) or each linear's output error (layer, cheaper)")
      ->capture_default_str()
      ->check(CLI::IsMember({"block", "layer"}));
  c->add_option("--awq-windows", o->awq_windows, "awq, block objective: calibration windows the block output is scored on")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_flag("--awq-clip", o->awq_clip, "awq (rounded to nearest): choose each block's clipping by the layer output error");
  c->add_option("--awq-sub-passes", o->awq_sub_passes,
                "awq (rounded to nearest), K types: passes of the search that moves each sub-block's integer scale and min by the layer output error (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  c->add_flag("--fp-targets", o->fp_targets, "gptq, GGUF types: match the unquantized model's layer outputs from the quantized inputs (GPTAQ)");
  c->add_flag("--no-act-order", o->no_act_order, "gptq: columns left to right, each block's scales chosen when reached (default for GGUF types)");
  c->add_option("--bpw", o->bpw, "budget: the best mix at this many bits per weight (needs --calib)");
  c->add_option("--max-size", o->max_size, "budget: the best mix whose tensors fit in this size (e.g. 4.2MB, 3GiB; needs --calib)");
  add_sensitivity_flags(c, *o);
  c->add_option("--save-recipe", o->save_recipe, "budget: write the chosen mix as a JSON recipe");
  c->add_option("--recipe", o->recipe, "replay a JSON recipe (tensor -> type) instead of the preset mix");
  c->add_option("--tensor-type", o->overrides, "REGEX=TYPE: type of the tensors whose GGUF name matches (repeatable; first match wins)");
  c->add_option("--output-tensor-type", o->output_type, "type of output.weight");
  c->add_option("--token-embedding-type", o->embd_type, "type of token_embd.weight");
  c->add_flag("--pure", o->pure, "no preset mix: the base type for every matrix");
  c->add_option("-t,--threads", o->threads, "threads (0: all cores)")->capture_default_str();
  c->add_option("--tokenizer", o->tokenizer, "llama2.c tokenizer .bin");
  c->add_option("--group", o->group, "int types: values per scale group (0: per channel, -1: per tensor)")->capture_default_str();
  c->add_flag("--sym", o->sym, "int types: symmetric codes (default)");
  c->add_flag("--asym", o->asym, "int types: asymmetric codes with integer zero points");
  c->add_option("--range", o->range, "int types: range choice")->check(CLI::IsMember({"minmax", "percentile", "mse"}))->capture_default_str();
  c->add_option("--percentile", o->percentile, "int types with --range percentile: clip percentile")->capture_default_str();
  c->add_flag("--json", o->json, "print the summary as JSON on stdout");
  c->add_flag("-q,--quiet", o->quiet, "no progress or table");
  return [o, c]() {
    auto progress = [o](size_t i, size_t n, const TensorReport& t) {
      if (o->quiet) return;
      fmt::print(stderr, "\r{} {:>4}/{} {:<40}", progress_bar(i + 1, n), i + 1, n,
                 t.name + " " + (t.note.empty() ? dtype_name(t.type) : t.note));
      if (i + 1 == n) fmt::print(stderr, "\n");
    };
    auto finish = [o](const QuantizeReport& r) {
      if (o->json) fmt::print("{}\n", summary_json(r, o->out).dump(2));
      else if (!o->quiet) print_summary(r);
      return 0;
    };
    if (o->type.size() == 4 && (o->type.rfind("int", 0) == 0 || o->type.rfind("INT", 0) == 0) && std::isdigit(o->type[3])) {
      if (o->sym && o->asym) fail(ErrorKind::Argument, "--sym and --asym exclude each other");
      AffineSpec spec;
      spec.bits = o->type[3] - '0';
      spec.group = o->group;
      spec.symmetric = !o->asym;
      spec.range = o->range == "mse" ? RangeMethod::Mse : o->range == "percentile" ? RangeMethod::Percentile : RangeMethod::MinMax;
      spec.percentile = o->percentile;
      validate(spec);
      Model m = load_model(o->model, {o->tokenizer});
      const std::string method = o->method.empty() ? "rtn" : o->method;
      if (method == "imatrix") fail(ErrorKind::Argument, "--method imatrix applies to the GGUF types; int types take rtn or gptq");
      if (method == "smoothquant" || method == "w8a8") {
        if (spec.bits != 8 || !spec.symmetric) fail(ErrorKind::Argument, "--method {} writes int8 symmetric weights: use --type int8", method);
        if (c->get_option("--group")->count() && spec.group != 0)
          fail(ErrorKind::Argument, "--method {}: weights have one scale per output channel (W8A8); drop --group", method);
        spec.group = 0;
        return finish(write_w8a8(m, *o, spec, method, progress));
      }
      if (method == "rtn") return finish(write_affine_model(m, o->out, spec, o->threads, progress));
      const GptqOptions g = gptq_options(*o, true, 0.01);  // act-order with static groups wins for affine
      auto stats = std::make_shared<CalibrationStats>(hessian_stats(m, *o, "--method gptq"));
      AffineQuantizer gptq = [stats, spec, g](const std::string& name, const std::vector<float>& x, uint64_t rows, uint64_t cols) {
        auto it = stats->by_weight.find(name);
        if (it == stats->by_weight.end()) fail(ErrorKind::Argument, "GPTQ: no calibration statistics for '{}'", name);
        return gptq_quantize_affine(x.data(), rows, cols, it->second.hessian(), spec, g);
      };
      return finish(write_affine_model(m, o->out, spec, o->threads, progress, gptq, "gptq"));
    }
    QuantizeOptions q;
    q.plan.preset = o->type;
    require_preset(o->type);  // an unknown name fails before the model is loaded
    for (const auto& spec : o->overrides) q.plan.tensor_types.push_back(parse_override(spec));
    if (!o->output_type.empty()) q.plan.output_type = parse_storage_type("--output-tensor-type", o->output_type);
    if (!o->embd_type.empty()) q.plan.token_embedding_type = parse_storage_type("--token-embedding-type", o->embd_type);
    q.plan.pure = o->pure;
    q.n_threads = o->threads;
    if (o->out.size() < 5 || o->out.compare(o->out.size() - 5, 5, ".gguf") != 0)
      fail(ErrorKind::Argument, "-o '{}': the output name must end in .gguf", o->out);
    Model m = load_model(o->model, {o->tokenizer});
    q.on_tensor = progress;
    if (!o->stats.empty() && !o->calib.text.empty()) fail(ErrorKind::Argument, "give --imatrix or --calib, not both");
    if (!o->recipe.empty()) q.plan.recipe = read_recipe(o->recipe);
    if (o->bpw > 0 || !o->max_size.empty()) {
      if (!o->recipe.empty()) fail(ErrorKind::Argument, "give one of --bpw, --max-size and --recipe");
      if (o->bpw > 0 && !o->max_size.empty()) fail(ErrorKind::Argument, "give one of --bpw, --max-size and --recipe");
      const uint64_t budget = o->bpw > 0 ? bytes_at_bpw(m, o->bpw) : parse_byte_size(o->max_size);
      q.plan.recipe = recipe_for_budget(m, measure_mix_sensitivity(m, *o, q.plan), budget, o->save_recipe, o->quiet);
    }
    const QuantizeReport r = quantize_gguf(m, *o, q);
    for (const TensorReport& t : r.tensors)
      if (t.note.rfind("fallback", 0) == 0) fmt::print(stderr, "note: {}: {}\n", t.name, t.note);
    return finish(r);
  };
}

}  // namespace lowbit::cli

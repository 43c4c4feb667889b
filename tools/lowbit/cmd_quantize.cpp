// lowbit quantize MODEL -o OUT.gguf --type Q4_K_M [--method ...] [--calib TEXT] [--bpw B |
// --max-size S] lowbit quantize HF_DIR -o OUT_DIR --type int4 [--group 128] [--sym|--asym] [--range
// minmax|percentile|mse] Flags become a lowbit::QuantizeJob (quantize_flags.cpp); this file prints
// its report.
#include <fmt/core.h>

#include <nlohmann/json.hpp>

#include "commands.h"
#include "lowbit/distributed.h"
#include "lowbit/job.h"
#include "quantize_flags.h"

namespace lowbit::cli {
namespace {

// Affine tensors are stored as U8 codes; show their "intN" name instead.
std::string type_label(const TensorReport& t) {
  return t.type == DType::U8 && !t.note.empty() ? t.note.substr(0, t.note.find(' '))
                                                : dtype_name(t.type);
}

void print_table(const QuantizeReport& r) {
  bool with_output = false, with_rtn = false;
  for (const TensorReport& t : r.tensors)
    with_output |= t.rel_output_error > 0, with_rtn |= t.rel_output_error_rtn > 0;
  // out.RMS: the layer's output error on the calibration inputs; rtn.out: the same for plain
  // rounding
  // zeros: the share of the stored weights that decode to 0, with pruning
  const bool with_zeros = !r.sparsity.empty();
  fmt::print("{:<32} {:<16} {:<8} {:>7} {:>10}{}{}{}\n", "tensor", "shape", "type", "bpw",
             "rel.RMS", with_output ? "   out.RMS" : "", with_rtn ? "   rtn.out" : "",
             with_zeros ? "   zeros" : "");
  for (const TensorReport& t : r.tensors) {
    const double bpw =
        8.0 * t.bytes / std::max<uint64_t>(1, TensorInfo{t.name, t.type, t.shape}.n_values());
    fmt::print("{:<32} {:<16} {:<8} {:>7.3f} {:>10.5f}{}{}{}{}\n", t.name, shape_string(t.shape),
               type_label(t), bpw, t.rel_rms_error,
               with_output ? fmt::format(" {:>9.5f}", t.rel_output_error) : "",
               with_rtn ? fmt::format(" {:>9.5f}", t.rel_output_error_rtn) : "",
               with_zeros ? fmt::format(" {:>6.1f}%", 100 * t.zero_share) : "",
               t.note.empty() ? "" : "  " + t.note);
  }
  fmt::print(
      "\n{} weights, {:.2f} MiB of tensors, {:.3f} bits per weight, file {:.2f} MiB, {:.1f} s\n",
      r.n_weights, r.total_bytes / 1048576.0, r.bits_per_weight, r.file_bytes / 1048576.0,
      r.seconds);
}

nlohmann::json report_json(const QuantizeReport& r, const std::string& out) {
  nlohmann::json tensors = nlohmann::json::array();
  for (const TensorReport& t : r.tensors)
    tensors.push_back({{"name", t.name},
                       {"shape", t.shape},
                       {"type", type_label(t)},
                       {"bytes", t.bytes},
                       {"rel_rms_error", t.rel_rms_error},
                       {"rel_output_error", t.rel_output_error},
                       {"rel_output_error_rtn", t.rel_output_error_rtn},
                       {"zero_share", t.zero_share},
                       {"note", t.note}});
  nlohmann::json learned = nlohmann::json::array();
  for (const BlockLearnReport& b : r.learned)
    learned.push_back({{"block", b.layer},
                       {"loss_start", b.loss_start},
                       {"loss_learned", b.loss_learned},
                       {"loss_end", b.loss_end},
                       {"steps", b.steps},
                       {"kept_start", b.kept_start}});
  return {{"output", out},
          {"learned_blocks", learned},
          {"method", r.method},
          {"rotation", r.rotation},
          {"sparsity", r.sparsity},
          {"structured", r.structured},
          {"n_weights", r.n_weights},
          {"tensor_bytes", r.total_bytes},
          {"file_bytes", r.file_bytes},
          {"bits_per_weight", r.bits_per_weight},
          {"seconds", r.seconds},
          {"tensors", tensors}};
}

// What the method found along the way: the budget's mix, the activations kept, AWQ's α.
void print_findings(const QuantizeReport& r) {
  if (r.budget_bytes)
    fmt::print(
        stderr, "tensor budget {} bytes ({:.3f} bpw): mix of {} bytes, estimated KLD {:.6f}\n",
        r.budget_bytes, 8.0 * r.budget_bytes / r.n_weights, r.mix_bytes, r.mix_estimated_kld);
  if (r.activation_bytes)
    fmt::print(stderr, "calibration activations kept between blocks: {:.1f} MiB\n",
               r.activation_bytes / 1048576.0);
  if (!r.awq_alpha.empty()) {
    fmt::print(stderr, "AWQ alpha per group (input channels' max/min mean|x|):");
    size_t flat = 0;  // AWQ protects channels whose activations stand out; in a flat input none do
    for (const auto& [name, a] : r.awq_alpha) {
      const double spread = r.awq_input_spread.at(name);
      flat += spread < 2;
      fmt::print(stderr, " {}={:g} ({:.1f})", name.substr(0, name.size() - 7), a, spread);
    }
    fmt::print(stderr, "\n");
    if (flat)
      fmt::print(stderr,
                 "note: {} of {} groups have no outlier input channels (max/min mean|x| < 2): AWQ "
                 "has little to protect there\n",
                 flat, r.awq_alpha.size());
  }
  for (const BlockLearnReport& b : r.learned)
    fmt::print(stderr, "block {}: output MSE {:.4g} -> {:.4g} ({:+.1f}%){}\n", b.layer,
               b.loss_start, b.loss_end, 100.0 * (b.loss_end / b.loss_start - 1),
               b.kept_start ? fmt::format(", start kept (learned {:.4g})", b.loss_learned) : "");
  if (r.spikiness_before > 0)
    fmt::print(
        stderr,
        "smoothquant: largest channel max / mean channel max of a linear input {:.1f} -> {:.1f}\n",
        r.spikiness_before, r.spikiness_after);
}

}  // namespace

Action add_quantize(CLI::App& app) {
  auto f = std::make_shared<QuantizeFlags>();
  auto* c = app.add_subcommand(
      "quantize", "Quantize a model: GGUF presets and mixes, the affine int layout, W8A8");
  add_quantize_flags(c, *f);
  return [f]() {
    const QuantizeJob job = job_from_flags(*f);
    if (!dist::is_root()) f->quiet = true;  // under mpirun rank 0 reports
    if (!f->quiet) {
      const bool chosen = job.method.kind != Method::Default;
      fmt::print(stderr, "method: {}{}\n", method_name(resolved_method(job)),
                 chosen ? "" : " (the default for this input; --method chooses another)");
      if (const std::string r = rotation_label(job.rotation); !r.empty())
        fmt::print(stderr, "rotation: {} (fused into the weights first){}\n", r,
                   job.rotation.ffn_down ? "; the file needs lowbit's engine" : "");
      if (job.structured.active())
        fmt::print(stderr,
                   "structured pruning first: {:g}% of the FFN channels, {} KV groups per block\n",
                   100 * job.structured.ffn_share, job.structured.kv_groups);
      if (job.sparsity.active())
        fmt::print(stderr, "pruning: {} of every block linear\n",
                   sparsity_label(resolved_prune_method(job), job.sparsity));
    }
    stop_on_signals();
    const QuantizeReport report = run_quantize_job(job, progress_printer(f->quiet));
    if (dist::is_root()) print_quantize_report(report, job.output, f->json, f->quiet);
    return 0;
  };
}

void print_quantize_report(const QuantizeReport& r, const std::string& output, bool json,
                           bool quiet) {
  if (!quiet) print_findings(r);
  for (const TensorReport& t : r.tensors)
    if (t.reason == PlanReason::Fallback) fmt::print(stderr, "note: {}: {}\n", t.name, t.note);
  if (json)
    fmt::print("{}\n", report_json(r, output).dump(2));
  else if (!quiet)
    print_table(r);
}

}  // namespace lowbit::cli

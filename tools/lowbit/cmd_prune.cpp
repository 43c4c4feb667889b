// `lowbit prune`: pruning without quantization (F16 by default), the quantize job with the
// method that carries each rule: magnitude -> rtn, wanda -> imatrix, sparsegpt -> gptq.
#include <fmt/core.h>

#include "commands.h"
#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "quantize_flags.h"

namespace lowbit::cli {

namespace {

struct PruneFlags {
  JobSettings s;
  PruneMethod rule = PruneMethod::SparseGpt;
  std::string nm;
  bool json = false, quiet = false;
};

const char* method_for_rule(PruneMethod r) {
  switch (r) {
    case PruneMethod::Magnitude:
      return "rtn";
    case PruneMethod::Wanda:
      return "imatrix";
    case PruneMethod::SparseGpt:
      return "gptq";
  }
  return "rtn";
}

}  // namespace

Action add_prune(CLI::App& app) {
  auto f = std::make_shared<PruneFlags>();
  auto* c = app.add_subcommand(
      "prune", "Prune a model (unstructured, N:M or structured) and write it as GGUF");
  QuantizeJob& j = f->s.job;
  f->s.type = "F16";
  c->add_option("model", j.model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-o,--output", j.output, "output .gguf file")->required();
  auto rules = prune_method_choices();
  c->add_option("--method", f->rule,
                "magnitude (|w|, per matrix), wanda (|w|·‖x‖ per row) or sparsegpt (OBS "
                "updates; both need --calib)")
      ->transform(
          CLI::CheckedTransformer(std::map<std::string, PruneMethod>(rules.begin(), rules.end())))
      ->default_str("sparsegpt");
  c->add_option("--sparsity", j.sparsity.ratio, "share of every block linear's weights set to 0")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--nm", f->nm, "N:M sparsity: at most N non-zero in every M weights (2:4)");
  c->add_option("--prune-ffn", j.structured.ffn_share,
                "structured: share of every block's FFN channels removed")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--prune-kv-groups", j.structured.kv_groups,
                "structured: KV heads (with their query heads) removed from every block");
  add_distill_flags(c, j);
  c->add_option("--type", f->s.type,
                "F16 or BF16 (no quantization), or any quantize preset or type")
      ->capture_default_str();
  c->add_option("--calib", j.calib.text, "calibration text (wanda, sparsegpt, structured scores)");
  add_calibration_source_flags(c, j.calib);
  add_calib_kernels_flag(c, j.calib);
  add_threads_option(c, j.threads);
  c->add_option("--tokenizer", j.tokenizer, "llama2.c tokenizer .bin");
  c->add_flag("--json", f->json, "print the summary as JSON on stdout");
  c->add_flag("-q,--quiet", f->quiet, "no progress or table");
  return [f]() {
    JobSettings s = f->s;
    if (!f->nm.empty()) set_job_option(s, "nm", f->nm);
    validate(s.job.sparsity);
    if (!s.job.sparsity.active() && !s.job.structured.active())
      fail(ErrorKind::Argument,
           "nothing to prune: give --sparsity, --nm, --prune-ffn or --prune-kv-groups");
    if (f->rule != PruneMethod::Magnitude && s.job.calib.text.empty() && s.job.sparsity.active())
      fail(ErrorKind::Argument, "--method {} needs calibration text (--calib)",
           prune_method_name(f->rule));
    s.method = method_for_rule(f->rule);
    if (s.job.sparsity.active()) set_job_option(s, "prune", prune_method_name(f->rule));
    const QuantizeJob job = make_job(s);
    if (!f->quiet && job.sparsity.active())
      fmt::print(stderr, "pruning: {} of every block linear, stored as {}\n",
                 sparsity_label(*job.prune, job.sparsity), s.type);
    stop_on_signals();
    const QuantizeReport report =
        run_quantize_job(job, progress_printer(f->quiet || !dist::is_root()));
    if (dist::is_root()) print_quantize_report(report, job.output, f->json, f->quiet);
    return 0;
  };
}

}  // namespace lowbit::cli

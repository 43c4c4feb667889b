// run_quantize_job: the job's rules and defaults, the size budget, and the dispatch to the
// method's strategy object (method.h) for the job's target.
#include "lowbit/job.h"

#include <filesystem>
#include <regex>

#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/lowrank.h"
#include "lowbit/smoothquant.h"
#include "method.h"

namespace lowbit {
namespace {

const std::vector<DType>& candidates_of(const SensitivityParams& s) {
  static const std::vector<DType> kDefault = SensitivityOptions{}.candidates;
  return s.candidates.empty() ? kDefault : s.candidates;
}

// The online rotation of ffn_down's input lives in lowbit's GGUF metadata and engine; the
// methods that move scales across the up → down boundary (awq, smoothquant) or run their own
// block forward (the learned ones) do not apply the transform.
void check_online_rotation(const QuantizeJob& job, Method method) {
  if (!std::holds_alternative<GgufTarget>(job.target))
    fail(ErrorKind::Argument,
         "the online rotation of ffn_down needs lowbit's engine: the target must be GGUF");
  switch (method) {
    case Method::Awq:
    case Method::AwqGptq:
    case Method::SmoothQuant:
    case Method::AdaRound:
    case Method::AdaQuant:
    case Method::AutoRound:
      fail(ErrorKind::Argument,
           "method {} does not support the online rotation of ffn_down (rtn, imatrix, gptq and "
           "qat from rtn or gptq do)",
           method_name(method));
    case Method::Qat:  // the end-to-end pass applies it; the learned starts' passes do not
      if (job.teacher.empty() && job.method.qat.start != Method::Rtn &&
          job.method.qat.start != Method::Gptq)
        fail(ErrorKind::Argument,
             "qat from {} does not support the online rotation of ffn_down: use --qat-start "
             "gptq or rtn, or --teacher with a quantized start file",
             method_name(job.method.qat.start));
      break;
    default:
      break;
  }
}

// Low-rank branches (lowbit/lowrank.h; `what`: the flag or the source that brings them): only
// methods that run lowbit's engine on the residuals with the branches beside them.
void check_lowrank(const QuantizeJob& job, Method method, const std::string& what) {
  if (!std::holds_alternative<GgufTarget>(job.target))
    fail(ErrorKind::Argument, "{}: low-rank branches need lowbit's engine: the target must be GGUF",
         what);
  if (!job.calib.stats.empty())
    fail(ErrorKind::Argument,
         "{}: statistics file '{}' does not know the low-rank branches: give calibration text",
         what, job.calib.stats);
  if (method != Method::Rtn && method != Method::Imatrix && method != Method::Gptq)
    fail(ErrorKind::Argument,
         "{}: method {} does not support low-rank branches (rtn, imatrix and gptq do)", what,
         method_name(method));
}

void validate_gguf(const QuantizeJob& job, const GgufTarget& t) {
  plan_for_type_or_preset(t.type);  // an unknown name fails before any file is read
  if (!job.output.ends_with(".gguf"))
    fail(ErrorKind::Argument, "output '{}': a GGUF file name must end in .gguf", job.output);
  if (t.budget) {
    if (!t.recipe_path.empty() || !t.recipe.empty())
      fail(ErrorKind::Argument, "give a size budget or a recipe, not both");
    if ((t.budget->bytes > 0) == (t.budget->bpw > 0))
      fail(ErrorKind::Argument,
           "a size budget is either bytes or bits per weight (exactly one above 0)");
    if (job.calib.text.empty())
      fail(ErrorKind::Argument,
           "a size budget needs calibration text (sensitivity is measured on it)");
    if (t.sensitivity.windows == 0 || t.sensitivity.ctx < 2)
      fail(ErrorKind::Argument, "sensitivity needs at least one window of two tokens, not {} x {}",
           t.sensitivity.windows, t.sensitivity.ctx);
  } else if (!t.save_recipe.empty()) {
    fail(ErrorKind::Argument, "saving a recipe needs a size budget to solve");
  }
  if (!t.recipe_path.empty() && !t.recipe.empty())
    fail(ErrorKind::Argument, "give a recipe file or a recipe, not both");
}

// Pruning runs inside rtn, imatrix and gptq on GGUF types (sparsity.h).
void validate_sparsity(const QuantizeJob& job, Method method) {
  if (const auto* g = std::get_if<GgufTarget>(&job.target)) {
    std::optional<DType> sparse;
    if (plan_for_type_or_preset(g->type).sparse_2of4) sparse = dtype_from_name(g->type);
    for (const TypeOverride& o : g->tensor_types)
      if (is_sparse_2of4(o.type)) sparse = o.type;
    if (sparse && !(job.sparsity.n == 2 && job.sparsity.m == 4))
      fail(ErrorKind::Argument,
           "{} stores 2:4-pruned linears: prune them 2:4 (--nm 2:4, with --prune magnitude, "
           "wanda or sparsegpt)",
           dtype_name(*sparse));
  }
  if (!job.sparsity.active()) {
    if (job.prune)
      fail(ErrorKind::Argument, "pruning rule {} given without a sparsity or an N:M pattern",
           prune_method_name(*job.prune));
    return;
  }
  validate(job.sparsity);
  const auto* g = std::get_if<GgufTarget>(&job.target);
  if (!g && !std::holds_alternative<AffineTarget>(job.target))
    fail(ErrorKind::Argument,
         "pruning writes GGUF files or the int2..int8 layout, not W8A8 or FP8 checkpoints");
  if (g && g->budget)
    fail(ErrorKind::Argument,
         "pruning does not combine with a size budget (the sensitivity is measured unpruned)");
  if (method != Method::Rtn && method != Method::Imatrix && method != Method::Gptq)
    fail(ErrorKind::Argument, "method {} does not prune: use rtn, imatrix or gptq",
         method_name(method));
  if (job.method.gptq.fp_targets)
    fail(ErrorKind::Argument, "pruning does not combine with GPTQ's fp targets");
  const PruneMethod p = resolved_prune_method(job);
  if (p == PruneMethod::SparseGpt && method != Method::Gptq)
    fail(ErrorKind::Argument, "sparsegpt prunes inside GPTQ's sweep: it needs method gptq, not {}",
         method_name(method));
  if (job.sparsity.owl_lambda > 0 && job.calib.text.empty() && job.calib.stats.empty())
    fail(ErrorKind::Argument,
         "OWL weighs each block's outlier scores |w|·‖x‖: it needs calibration text or "
         "statistics");
  if (p == PruneMethod::Wanda && method == Method::Rtn)
    fail(ErrorKind::Argument,
         "wanda needs the inputs' norms: use method imatrix or gptq with calibration");
}

void validate_structured(const QuantizeJob& job) {
  const StructuredPruneOptions& o = job.structured;
  if (job.distill.steps < 0 || !(job.distill.lr >= 0))
    fail(ErrorKind::Argument, "distillation needs steps >= 0 and lr >= 0, not {} and {}",
         job.distill.steps, job.distill.lr);
  if (job.distill.steps > 0 && resolved_method(job) != Method::Qat &&
      (!o.active() || job.calib.text.empty()))
    fail(ErrorKind::Argument,
         "distillation recovers a structurally pruned model on calibration text: it needs "
         "structured pruning (ffn share or KV groups) and calibration text");
  if (!job.teacher.empty() && resolved_method(job) != Method::Qat)
    fail(ErrorKind::Argument, "a teacher model ('{}') is for --method qat", job.teacher);
  if (job.distill.rounding.any() && resolved_method(job) != Method::Qat &&
      job.rotation.learn.steps <= 0)
    fail(ErrorKind::Argument,
         "rounded activations or KV cache (act-bits, cache-type-k/v, rotate-kv) are trained "
         "for by --method qat and learned rotations (--rotate-steps); for other methods give "
         "them to perplexity, run or bench");
  if (!o.active()) return;
  validate(o);
  if (!std::holds_alternative<GgufTarget>(job.target))
    fail(ErrorKind::Argument,
         "structured pruning writes GGUF files: the target must be a GGUF type");
  if (!job.calib.stats.empty())
    fail(ErrorKind::Argument,
         "statistics file '{}' describes the unpruned model: with structured pruning give "
         "calibration text instead",
         job.calib.stats);
}

// `m` with the job's FFN channels and KV groups removed (held in `keep`), scored on
// statistics of the calibration text when there is one.
const Model& structurally_pruned(const Model& m, const QuantizeJob& job, const Observer& observer,
                                 std::optional<Model>& keep) {
  if (!job.structured.active()) return m;
  validate(job.structured, m);
  pipeline::ImportanceLookup importance = [](const std::string&) { return nullptr; };
  if (!job.calib.text.empty()) {  // the unpruned model's input norms
    const pipeline::JobRun run(m, job, observer);
    importance = pipeline::importance_lookup(run.collect_statistics(false));
  }
  keep = prune_structured(m, job.structured, importance);
  if (job.distill.steps > 0) {  // the unpruned model teaches the pruned one
    const pipeline::JobRun run(*keep, job, observer);
    keep = distill(*keep, m, run.calibration_tokens(), run.distill_options("distill"));
  }
  return *keep;
}

}  // namespace

PruneMethod resolved_prune_method(const QuantizeJob& job) {
  if (job.prune) return *job.prune;
  const Method m = resolved_method(job);
  return m == Method::Gptq      ? PruneMethod::SparseGpt
         : m == Method::Imatrix ? PruneMethod::Wanda
                                : PruneMethod::Magnitude;
}

Method resolved_method(const QuantizeJob& job) {
  if (job.method.kind != Method::Default) return job.method.kind;
  // Calibration text: GPTQ, the best measured method that is not much slower than rounding
  // (docs/QUANTIZATION.md, "Which method by default"). Saved statistics may be a llama.cpp
  // imatrix without Hessians, so they keep importance-weighted rounding.
  const bool to_gguf = std::holds_alternative<GgufTarget>(job.target);
  if (!job.calib.text.empty() && (to_gguf || std::holds_alternative<AffineTarget>(job.target)))
    return Method::Gptq;
  return to_gguf && !job.calib.stats.empty() ? Method::Imatrix : Method::Rtn;
}

namespace {

// The job's rotation with the rounding flags, which a learned rotation trains for.
RotationOptions learning_of(const QuantizeJob& job) {
  RotationOptions o = job.rotation;
  o.learn.rounding = job.distill.rounding;
  return o;
}

}  // namespace

void validate(const QuantizeJob& job) {
  if (job.model.empty()) fail(ErrorKind::Argument, "no source model given");
  if (job.output.empty()) fail(ErrorKind::Argument, "no output path given");
  if (!job.calib.stats.empty() && !job.calib.text.empty())
    fail(ErrorKind::Argument, "give saved statistics or calibration text, not both");
  if (!job.calib.text.empty() && (job.calib.samples == 0 || job.calib.ctx < 2))
    fail(ErrorKind::Argument, "calibration needs at least one window of two tokens, not {} x {}",
         job.calib.samples, job.calib.ctx);
  if (const auto d = job.method.gptq.damp; d && !(*d >= 0))
    fail(ErrorKind::Argument,
         "gptq damping {}: must be a non-negative fraction of the mean Hessian diagonal", *d);
  if (job.threads < 0)
    fail(ErrorKind::Argument, "threads {}: must be 0 (every core) or more", job.threads);
  // Every output is checked before the work: never an input, and its directory exists.
  const std::vector<std::string> inputs = {job.model, job.tokenizer, job.calib.text,
                                           job.calib.stats};
  if (std::holds_alternative<AffineTarget>(job.target) ||
      std::holds_alternative<Fp8Target>(job.target))
    check_output_directory(job.output, inputs);
  else
    check_output_path(job.output, inputs);
  if (const auto* g = std::get_if<GgufTarget>(&job.target); g && !g->save_recipe.empty())
    check_output_path(g->save_recipe, {job.model, job.output, g->recipe_path});
  if (!rotation_label(job.rotation).empty() && !job.calib.stats.empty())
    fail(ErrorKind::Argument,
         "statistics file '{}' was measured on the unrotated model: with a rotation give "
         "calibration text instead",
         job.calib.stats);
  const Method method = resolved_method(job);
  if (job.rotation.ffn_down) check_online_rotation(job, method);
  if (job.lowrank.rank) check_lowrank(job, method, "--lowrank");
  if (job.lowrank_alpha != 0 && !job.lowrank.rank)
    fail(ErrorKind::Argument, "--lowrank-alpha {} without --lowrank", job.lowrank_alpha);
  if (!job.lowrank.only.empty() && !job.lowrank.rank)
    fail(ErrorKind::Argument, "--lowrank-only '{}' without --lowrank", job.lowrank.only);
  try {
    (void)std::regex(job.lowrank.only);
  } catch (const std::regex_error& e) {
    fail(ErrorKind::Argument, "--lowrank-only '{}': {}", job.lowrank.only, e.what());
  }
  if (job.lowrank_alpha != 0 && !(job.lowrank_alpha > 0 && job.lowrank_alpha <= 1))
    fail(ErrorKind::Argument, "--lowrank-alpha {}: a migration strength in (0, 1]",
         job.lowrank_alpha);
  if (job.lowrank_alpha > 0 && job.calib.text.empty())
    fail(ErrorKind::Argument, "--lowrank-alpha needs calibration text (--calib)");
  if (job.lowrank_alpha > 0 && job.rotation.ffn_down)
    fail(ErrorKind::Argument,
         "--lowrank-alpha cannot smooth ffn_down's input behind --rotate-ffn-down's transform");
  check_learning(learning_of(job));
  if (job.rotation.learn.steps > 0 && job.calib.text.empty())
    fail(ErrorKind::Argument, "a learned rotation (--rotate-steps) needs calibration text");
  validate_sparsity(job, method);
  validate_structured(job);
  const pipeline::QuantMethod& qm = pipeline::method_for(method);
  if (job.method.awq.clip && method != Method::Awq)
    fail(ErrorKind::Argument,
         "AWQ's clipping search chooses a rounding to nearest: it needs method awq, not {}",
         method_name(method));
  if (!qm.writes(pipeline::target_kind(job.target)))
    pipeline::fail_target(method, pipeline::target_kind(job.target));
  std::visit(
      [&](const auto& t) {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, GgufTarget>) validate_gguf(job, t);
        if constexpr (std::is_same_v<T, AffineTarget>) validate(t.spec);
        if constexpr (std::is_same_v<T, Fp8Target>)
          if (!job.calib.text.empty() || !job.calib.stats.empty())
            fail(ErrorKind::Argument,
                 "type fp8 rounds each weight on its own: calibration is not used");
        if constexpr (std::is_same_v<T, W8A8Target>)
          if (job.calib.text.empty() && (t.static_activations || method == Method::SmoothQuant))
            fail(ErrorKind::Argument,
                 "{} needs calibration text (the largest input of every channel)",
                 method == Method::SmoothQuant ? "method smoothquant"
                                               : "W8A8 with static activation scales");
      },
      job.target);
  qm.check(job);
}

namespace {

// `m`, or `m` with the job's rotation fused in, held in `keep`. A learned rotation takes its
// windows from the calibration text and its rounding from the rounding flags.
const Model& rotated(const Model& m, const QuantizeJob& job, const Observer& observer,
                     std::optional<Model>& keep) {
  if (rotation_label(job.rotation).empty()) return m;
  RotationOptions o = learning_of(job);
  o.n_threads = job.threads;
  if (o.learn.steps <= 0) return keep.emplace(rotate_model(m, o));
  const pipeline::JobRun run(m, job, observer);
  const DistillOptions d = run.distill_options("rotation");
  o.learn.n_ctx = d.n_ctx, o.learn.n_windows = d.n_windows, o.learn.seed = d.seed;
  o.learn.on_step = d.on_step;
  return keep.emplace(learn_rotation(m, o, run.calibration_tokens()));
}

std::vector<MixTensor> measure_sensitivity_of(const Model& m, const QuantizeJob& job,
                                              const Observer& observer);

// SVDQuant: smoothing (with lowrank_alpha), then the branches.
const Model& with_lowrank(const Model& m, const QuantizeJob& job, const Observer& observer,
                          std::optional<Model>& keep) {
  if (!job.lowrank.rank) return m;
  if (job.lowrank_alpha == 0) return keep.emplace(add_lowrank(m, job.lowrank).model);
  if (m.config.ffn_down_hadamard)
    fail(ErrorKind::Argument,
         "{}: --lowrank-alpha cannot smooth ffn_down's input behind its "
         "online rotation",
         m.source);
  SmoothQuantOptions so;
  so.alpha = job.lowrank_alpha;
  Model smoothed =
      smooth_model(m, pipeline::JobRun(m, job, observer).collect_statistics(false), so).model;
  smoothed.config.act_ranges.clear();  // ranges of the inputs before smoothing
  return keep.emplace(add_lowrank(smoothed, job.lowrank).model);
}

uint64_t budget_bytes_of(const Model& m, const Budget& budget) {
  return budget.bytes ? budget.bytes : static_cast<uint64_t>(budget.bpw * count_weights(m) / 8);
}

// The least-loss mix under `budget` (written as a recipe to `save_path` when not empty).
MixSolution solve_mix(const Model& m, const std::vector<MixTensor>& tensors, const Budget& budget,
                      const std::string& save_path, uint64_t* budget_bytes) {
  const uint64_t bytes = budget_bytes_of(m, budget);
  const MixSolution s = solve_budget(tensors, bytes);
  if (!save_path.empty()) write_recipe(save_path, tensors, s, bytes);
  if (budget_bytes) *budget_bytes = bytes;
  return s;
}

// A budget in bytes is for the whole file: the tensors get what the header, metadata,
// tokenizer and padding leave. Bits per weight count tensor data, as llama.cpp reports them.
Budget tensor_budget(const Model& m, const QuantizePlanOptions& plan, Budget b) {
  if (b.bytes == 0) return b;
  const uint64_t overhead = gguf_overhead_bound(m, plan);
  if (b.bytes <= overhead)
    fail(ErrorKind::Argument,
         "size budget {} bytes: the file's header, metadata and tokenizer alone take up to {}",
         b.bytes, overhead);
  b.bytes -= overhead;
  return b;
}

// The target's preset or single type with its overrides, before any recipe. Every method
// but rtn sees calibration statistics, so the presets take llama.cpp's mix for a file made
// with an importance matrix (IQ3_XXS, IQ4_NL and IQ4_XS raise fewer tensors with one).
QuantizePlanOptions plan_of(const GgufTarget& t, const QuantizeJob& job) {
  QuantizePlanOptions plan = plan_for_type_or_preset(t.type);
  plan.has_importance = resolved_method(job) != Method::Rtn;
  plan.pure = plan.pure || t.pure;
  plan.tensor_types = t.tensor_types;
  plan.output_type = t.output_type;
  plan.token_embedding_type = t.token_embedding_type;
  return plan;
}

// tensor -> the type the mix chose for it.
std::map<std::string, DType> recipe_of(const std::vector<MixTensor>& tensors,
                                       const MixSolution& s) {
  std::map<std::string, DType> recipe;
  for (size_t i = 0; i < tensors.size(); ++i)
    recipe[tensors[i].name] = tensors[i].options[s.choice[i]].type;
  return recipe;
}

// Methods that quantize every tensor on its own, from the weights and saved or measured
// statistics (not from the outputs of blocks quantized before).
bool tensor_by_tensor(const QuantizeJob& job) {
  const Method method = resolved_method(job);
  return method == Method::Rtn || method == Method::Imatrix ||
         (method == Method::Gptq && !job.calib.stats.empty());
}

// The GGUF target's tensor plan: preset or single type, overrides, recipe, and the size
// budget solved on the measured sensitivity.
QuantizeReport run_gguf(pipeline::JobRun& run, const pipeline::QuantMethod& qm,
                        const GgufTarget& t, const std::string& structured) {
  const Model& m = run.model();
  const QuantizeJob& job = run.job();
  QuantizeOptions q;
  q.plan = plan_of(t, job);
  q.n_threads = job.threads;
  q.rotation = rotation_label(job.rotation);
  q.structured = structured;
  q.sparsity = run.sparsity();
  if (q.sparsity.active()) q.prune = resolved_prune_method(job);
  q.on_tensor = run.tensor_progress();
  if (tensor_by_tensor(job) && (job.resume || dist::is_distributed())) {
    // Finished tensors are kept until the file is complete; --resume takes them back.
    q.checkpoint_dir = job.output + ".lowbit-checkpoint";
    q.resume = job.resume;
    q.fingerprint = run.checkpoint_fingerprint(fmt::format(
        "{}|{}", structured, q.sparsity.active() ? sparsity_label(q.prune, q.sparsity) : ""));
  }
  q.plan.recipe = t.recipe_path.empty() ? t.recipe : read_recipe(t.recipe_path);
  MixSolution mix;
  uint64_t budget_bytes = 0;
  if (t.budget) {  // a budget no mix fits fails before the sensitivity is measured
    const Budget budget = tensor_budget(m, q.plan, *t.budget);
    check_budget_fits(mix_options(m, plan_of(t, job), candidates_of(t.sensitivity)),
                      budget_bytes_of(m, budget));
    const std::vector<MixTensor> tensors = measure_sensitivity_of(m, run.job(), run.observer());
    mix = solve_mix(m, tensors, budget, t.save_recipe, &budget_bytes);
    for (const auto& [name, type] : recipe_of(tensors, mix)) q.plan.recipe[name] = type;
  }
  QuantizeReport r = qm.gguf(run, q);
  r.budget_bytes = budget_bytes;
  r.mix_bytes = mix.bytes;
  r.mix_estimated_kld = mix.loss;
  return r;
}

// Under mpirun the ranks split the tensors of one GGUF file, which works for the methods
// that quantize every tensor on its own (docs/DISTRIBUTED.md).
void check_distributable(const QuantizeJob& job) {
  const Method method = resolved_method(job);
  const auto* g = std::get_if<GgufTarget>(&job.target);
  if (!g)
    fail(ErrorKind::Argument,
         "over several MPI ranks lowbit writes GGUF files only: run this target as one process");
  if (g->budget)
    fail(ErrorKind::Argument,
         "a size budget measures the sensitivity in one process: solve it once with "
         "--save-recipe, then run the recipe over the ranks");
  // Sequential GPTQ splits each block's windows and linears over the ranks.
  const bool sequential_gptq = method == Method::Gptq;
  if (!tensor_by_tensor(job) && !sequential_gptq)
    fail(ErrorKind::Argument,
         "method {} does not split over ranks (it scales, learns or trains with the whole "
         "calibration set in one process): run it without mpirun, or use --method gptq "
         "(block by block over the ranks, or from statistics of "
         "`mpirun lowbit calibrate --hessian`)",
         method_name(method));
  if (method == Method::Gptq && job.method.gptq.fp_targets && job.calib.stats.empty())
    fail(ErrorKind::Argument, "gptq with --fp-targets runs as one process: run it without mpirun");
}

}  // namespace

QuantizeReport run_quantize_job(const Model& source, const QuantizeJob& job,
                                const Observer& observer) {
  validate(job);
  if (dist::is_distributed()) check_distributable(job);
  if (source.config.ffn_down_hadamard) {  // a lowbit file with the online rotation already
    if (!job.calib.stats.empty())
      fail(ErrorKind::Argument,
           "{}: ffn_down reads Hadamard-transformed inputs, which statistics file '{}' does not "
           "know: give calibration text instead",
           source.source, job.calib.stats);
    check_online_rotation(job, resolved_method(job));
  }
  if (source.config.lowrank_rank) {
    const std::string what = source.source + " (a model with low-rank branches)";
    check_lowrank(job, resolved_method(job), what);
    if (job.rotation.kind != RotationKind::None || job.structured.active())
      fail(ErrorKind::Argument, "{}: a rotation or structured pruning would leave them behind",
           what);
  }
  std::optional<Model> keep, smaller;
  std::string structured = structured_label(source.config, job.structured);
  if (job.structured.active() && job.distill.steps > 0)
    structured += fmt::format(", distilled {} steps", job.distill.steps);
  std::optional<Model> branched;
  const Model& m = with_lowrank(
      structurally_pruned(rotated(source, job, observer, keep), job, observer, smaller), job,
      observer, branched);
  pipeline::JobRun run(m, job, observer);
  const pipeline::QuantMethod& qm = pipeline::method_for(run.method());
  QuantizeReport r = std::visit(
      [&](const auto& t) {
        using T = std::decay_t<decltype(t)>;
        if constexpr (std::is_same_v<T, GgufTarget>) return run_gguf(run, qm, t, structured);
        if constexpr (std::is_same_v<T, AffineTarget>) return qm.affine(run, t.spec);
        if constexpr (std::is_same_v<T, W8A8Target>) return qm.w8a8(run, t);
        if constexpr (std::is_same_v<T, Fp8Target>) return qm.fp8(run, t);
      },
      job.target);
  r.rotation = rotation_label(job.rotation);
  r.structured = structured;
  if (job.sparsity.active() && r.sparsity.empty())  // the affine layout's writer does not know
    r.sparsity = sparsity_label(resolved_prune_method(job), job.sparsity);
  return r;
}

QuantizeReport run_quantize_job(const QuantizeJob& job, const Observer& observer) {
  validate(job);
  const Model m = load_model(job.model, {job.tokenizer});
  return run_quantize_job(m, job, observer);
}

std::vector<MixTensor> measure_job_sensitivity(const Model& m, const QuantizeJob& job,
                                               const Observer& observer) {
  std::optional<Model> keep;
  return measure_sensitivity_of(rotated(m, job, observer, keep), job, observer);
}

namespace {

std::vector<MixTensor> measure_sensitivity_of(const Model& m, const QuantizeJob& job,
                                              const Observer& observer) {
  const auto* t = std::get_if<GgufTarget>(&job.target);
  if (!t)
    fail(ErrorKind::Argument, "size budgets choose among GGUF types: the target must be GGUF");
  if (job.calib.text.empty())
    fail(ErrorKind::Argument,
         "a size budget needs calibration text (sensitivity is measured on it)");
  pipeline::JobRun run(m, job, observer);
  const pipeline::HessianLookup hessian =
      pipeline::hessian_lookup(run.hessian_statistics("a size budget"));
  SensitivityOptions so;
  so.mode = t->sensitivity.mode;
  so.seed = job.calib.seed;
  so.n_windows = t->sensitivity.windows;
  so.n_ctx = t->sensitivity.ctx;
  so.candidates = candidates_of(t->sensitivity);
  so.n_threads = job.threads;
  so.on_step = [&observer](size_t i, size_t n) {
    report_progress(observer, {Stage::Sensitivity, i, n});
  };
  // The plan supplies the tensors that stay fixed (1-D, overrides); its mix does not matter.
  return measure_sensitivity(m, run.calibration_tokens(), plan_of(*t, job), hessian, so);
}

}  // namespace

std::map<std::string, DType> solve_job_budget(const Model& m, const std::vector<MixTensor>& tensors,
                                              const Budget& budget, const std::string& save_path) {
  return recipe_of(tensors, solve_mix(m, tensors, budget, save_path, nullptr));
}

uint64_t count_weights(const Model& m) {
  uint64_t n = 0;  // (low-rank factors are bytes spent on the weights, not weights)
  for (const TensorView& t : m.tensors)
    if (!is_lowrank_tensor(t.name)) n += t.n_values();
  return n;
}

}  // namespace lowbit

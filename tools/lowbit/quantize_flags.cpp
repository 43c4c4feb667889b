#include "quantize_flags.h"

#include "lowbit/distributed.h"

#include <fmt/core.h>

#include <atomic>

#include "lowbit/file_io.h"

namespace lowbit::cli {
namespace {
// A bool option spelled as one of two words; the help's default is the word for the value
// `value` holds now (the library's default).
void add_two_word_option(CLI::App* c, const std::string& flag, bool& value, const std::string& help,
                         const std::string& when_true, const std::string& when_false) {
  c->add_option(flag, value, help)
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, bool>{{when_true, true}, {when_false, false}}))
      ->default_str(value ? when_true : when_false);
}
}  // namespace

void add_sensitivity_flags(CLI::App* c, SensitivityParams& s) {
  const std::map<std::string, SensitivityMode> modes = {{"proxy", SensitivityMode::Proxy},
                                                        {"measured", SensitivityMode::Measured}};
  c->add_option("--sensitivity", s.mode,
                "budget: proxy (KLD measured at Q3_K per tensor, scaled by the Hessian error) or "
                "measured (every type)")
      ->transform(CLI::CheckedTransformer(modes))
      ->default_str("proxy");
  c->add_option("--sensitivity-windows", s.windows,
                "budget: calibration windows the KLD is measured on")
      ->capture_default_str();
  c->add_option("--sensitivity-ctx", s.ctx, "budget: tokens per sensitivity window")
      ->capture_default_str();
  std::string defaults;
  for (DType t : SensitivityOptions{}.candidates)
    defaults += std::string(defaults.empty() ? "" : ",") + dtype_name(t);
  c->add_option_function<std::string>(
      "--mix-types",
      [&s](const std::string& v) { s.candidates = parse_type_list("--mix-types", v); },
      "budget: the types to choose among, comma-separated (default " + defaults + ")");
}

void add_calibration_source_flags(CLI::App* c, CalibrationSource& s) {
  c->add_option("--calib-samples", s.samples, "calibration windows")->capture_default_str();
  c->add_option("--calib-ctx", s.ctx, "tokens per calibration window")->capture_default_str();
  c->add_option("--seed", s.seed, "seed of the window offsets")->capture_default_str();
}

void add_calib_kernels_flag(CLI::App* c, CalibrationSource& s) {
  add_two_word_option(c, "--calib-kernels", s.fast_kernels,
                      "gptq, awq, learned rounding: the forward passes through the finished "
                      "blocks on the fast kernels (8-bit activations) or the fp32 reference",
                      "fast", "reference");
}

void add_quantize_flags(CLI::App* c, QuantizeFlags& f) {
  JobSettings& s = f.s;
  QuantizeJob& j = s.job;
  AwqParams& awq = j.method.awq;
  c->add_option("model", j.model, "model directory, .gguf file or llama2.c .bin")->required();
  c->add_option("-o,--output", j.output, "output .gguf file (a directory for int2..int8, fp8)")
      ->required();
  std::string preset_names;
  for (const Preset& p : presets()) preset_names += std::string(" ") + p.name;
  c->add_option("--type", s.type,
                "preset:" + preset_names +
                    ", a type for every matrix (Q4_K), Q8_0_S24 or Q4_0_S24 (with --nm 2:4: the "
                    "linears packed 2:4, lowbit-only), int2..int8 (affine safetensors), ternary "
                    "or binary (affine safetensors with int2 codes {-1, 0, 1} or {-1, 1}), or fp8 "
                    "(E4M3 weights, compressed-tensors)")
      ->capture_default_str();
  std::vector<std::string> methods = method_names();
  methods.push_back("w8a8");
  c->add_option("--method", s.method,
                "rtn (the default without calibration); imatrix (importance-weighted, the default "
                "with --stats); gptq (the default with --calib), awq, awq+gptq (need --calib; awq: "
                "GGUF types); adaround, adaquant, autoround "
                "(learned rounding, need --calib, GGUF types); smoothquant, w8a8 (--type int8: "
                "int8 weights and activations)")
      ->check(CLI::IsMember(methods));
  c->add_option("--sq-alpha", j.method.smoothquant.alpha,
                "smoothquant: migration strength (0: activations unchanged, 1: flattened)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  add_two_word_option(c, "--act-scheme", s.static_activations,
                      "smoothquant, w8a8: int8 activation scales per token (dynamic) or one per "
                      "layer from calibration (static)",
                      "static", "per-token");
  c->add_option("--imatrix,--stats", j.calib.stats,
                "statistics from `lowbit calibrate` or llama.cpp (imatrix .gguf or .dat)");
  c->add_option("--calib", j.calib.text, "calibration text: collect statistics before quantizing");
  add_calibration_source_flags(c, j.calib);
  add_calib_kernels_flag(c, j.calib);
  c->add_option("--damp", j.method.gptq.damp,
                "gptq: dampening as a fraction of the mean Hessian diagonal (default 0.1 for GGUF "
                "types, 0.01 for int types)");
  auto* ao = c->add_flag("--act-order", f.act_order,
                         "gptq: columns by decreasing Hessian diagonal, scales fixed up front "
                         "(default for int types)");
  c->add_flag("--no-act-order", f.no_act_order,
              "gptq: columns left to right, each block's scales chosen when reached (default for "
              "GGUF types)")
      ->excludes(ao);
  LearnedParams& learned = j.method.learned;
  c->add_option("--steps", learned.steps,
                "adaround, adaquant, autoround: optimiser steps per block (default 200)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--lr", learned.lr,
                "learned rounding: learning rate (default: adaround 0.1, adaquant 0.003 of the "
                "weights' rms, autoround 1/steps)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--batch", learned.batch,
                "learned rounding: calibration windows per step (default 4)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--adaround-reg", learned.reg,
                "adaround: weight of the regulariser, relative to the block's start loss")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  add_two_word_option(c, "--start", learned.gptq_start,
                      "learned rounding: the rounding it starts from", "gptq", "rtn");
  add_two_word_option(c, "--learn-inputs", learned.teacher_inputs,
                      "learned rounding: each block learns on the inputs the quantized blocks "
                      "before it produce, or on the unquantized model's (teacher: ZeroQuant's LKD)",
                      "teacher", "quantized");
  c->add_option("--awq-grid", awq.grid, "awq: alpha is tried at 0, 1/N, ..., 1")
      ->capture_default_str()
      ->check(CLI::Range(1, 1000));
  c->add_option("--awq-objective", awq.objective,
                "awq: alpha minimises the block output error (block) or each linear's output error "
                "(layer, cheaper)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, AwqObjective>{
          {"block", AwqObjective::Block}, {"layer", AwqObjective::Layer}}))
      ->default_str("block");
  c->add_option("--awq-windows", awq.windows,
                "awq, block objective: calibration windows the block output is scored on")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  c->add_flag("--awq-clip", awq.clip,
              "awq (rounded to nearest): choose each block's clipping by the layer output error");
  c->add_option("--awq-sub-passes", awq.sub_passes,
                "awq (rounded to nearest), K types: passes of the search that moves each "
                "sub-block's integer scale and min by the layer output error (0: off)")
      ->capture_default_str()
      ->check(CLI::Range(0, 100));
  c->add_option("--rotate", j.rotation.kind,
                "fuse a rotation of the residual stream and of each head's values into the "
                "weights first (QuaRot; same function, outliers spread): hadamard, random")
      ->transform(CLI::CheckedTransformer(rotation_choices()))
      ->default_str("none");
  c->add_flag("--rotate-ffn-down", j.rotation.ffn_down,
              "online rotation: ffn_down reads its input through a Hadamard transform, which "
              "lowbit's engine applies (the file then needs lowbit: llama.cpp would ignore it)");
  c->add_option("--lowrank", j.lowrank.rank,
                "split a rank-R branch, kept in 16 bits, off every block linear (SVDQuant) and "
                "round the residual; the branch reads unrounded inputs (the file then needs "
                "lowbit: llama.cpp refuses it); 0: off")
      ->capture_default_str()
      ->check(CLI::Range(0, 65536));
  c->add_option("--lowrank-alpha", j.lowrank_alpha,
                "with --lowrank: smooth first (SmoothQuant, this migration strength, from "
                "--calib's max |x| per channel), so the branches absorb activation outliers too; "
                "0: no smoothing")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--lowrank-only", j.lowrank.only,
                "with --lowrank: only the block linears whose names match this regex");
  c->add_option("--rotate-seed", j.rotation.seed,
                "seed of the rotation's random signs or random matrix")
      ->capture_default_str();
  c->add_option("--rotate-steps", j.rotation.learn.steps,
                "learn the rotation (SpinQuant) from --rotate's start: Cayley steps against the "
                "KL of the model run rounded as --act-bits/--cache-type-k/-v/--rotate-kv and "
                "--rotate-weights say (needs --calib)")
      ->check(CLI::Range(0, 1000000));
  c->add_option("--rotate-lr", j.rotation.learn.lr,
                "learned rotation: the first step's angle, decaying to 0")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 10.0));
  c->add_option("--rotate-ce", j.rotation.learn.ce_weight,
                "learned rotation: add this times the cross-entropy on the calibration text to "
                "the KL loss (SpinQuant trains on cross-entropy)")
      ->check(CLI::Range(0.0, 100.0));
  c->add_option_function<std::string>(
       "--rotate-weights",
       [&j](const std::string& v) { j.rotation.learn.weights = rotation_weights_from_name(v); },
       "learned rotation: the block linears run rounded to nearest in this type while "
       "learning (none: unrounded, as before GPTQ)")
      ->default_str("none");
  c->add_option("--sparsity", j.sparsity.ratio,
                "prune this share of the weights of every block linear (0.5: half), by --prune")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--owl", j.sparsity.owl_lambda,
                "with --sparsity: OWL, each block's share moved by up to ±2λ (0.08: ±16%) "
                "towards keeping the blocks with more outlier scores (needs calibration)");
  c->add_option("--owl-m", j.sparsity.owl_m,
                "OWL's outlier threshold: scores above M times the block's mean")
      ->capture_default_str();
  c->add_option("--nm", f.nm, "N:M sparsity: at most N non-zero in every M weights of a row (2:4)");
  auto prune_choices = prune_method_choices();
  c->add_option("--prune", j.prune,
                "pruning rule: magnitude, wanda (|w|·‖x‖; needs calibration) or sparsegpt (inside "
                "GPTQ); default sparsegpt with gptq, wanda with imatrix, magnitude with rtn")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, PruneMethod>(prune_choices.begin(), prune_choices.end())));
  c->add_option("--prune-ffn", j.structured.ffn_share,
                "structured: remove this share of every block's FFN channels first (the least "
                "output energy on the calibration text; n_ff changes)")
      ->check(CLI::Range(0.0, 1.0));
  c->add_option("--prune-kv-groups", j.structured.kv_groups,
                "structured: remove this many KV heads (with the query heads reading them) from "
                "every block first");
  add_distill_flags(c, j);
  add_rounding_flags(c, f.rounding);  // (qat trains for them)
  c->add_flag("--fp-targets", j.method.gptq.fp_targets,
              "gptq, GGUF types: match the unquantized model's layer outputs from the quantized "
              "inputs (GPTAQ)");
  auto* bpw = f.bpw_option = c->add_option(
      "--bpw", f.bpw, "budget: the best mix at this many bits per weight (needs --calib)");
  auto* size = c->add_option("--max-size", s.max_size,
                             "budget: the best mix whose whole file fits in this size (e.g. 4.2MB, "
                             "3GiB; needs --calib)")
                   ->excludes(bpw);
  GgufTarget& g = s.gguf;
  add_sensitivity_flags(c, g.sensitivity);
  c->add_option("--save-recipe", g.save_recipe, "budget: write the chosen mix as a JSON recipe");
  c->add_option("--recipe", g.recipe_path,
                "replay a JSON recipe (tensor -> type) instead of the preset mix")
      ->excludes(bpw)
      ->excludes(size);
  c->add_option(
      "--tensor-type", s.tensor_types,
      "REGEX=TYPE: type of the tensors whose GGUF name matches (repeatable; first match wins)");
  c->add_option("--output-tensor-type", s.output_tensor_type, "type of output.weight");
  c->add_option("--token-embedding-type", s.token_embedding_type, "type of token_embd.weight");
  c->add_flag("--pure", g.pure, "no preset mix: the base type for every matrix");
  add_threads_option(c, j.threads);
  c->add_option("--tokenizer", j.tokenizer, "llama2.c tokenizer .bin");
  f.group_option =
      c->add_option("--group", s.group,
                    "int types: values per scale group (0: per channel, -1: per tensor)")
          ->capture_default_str();
  auto* sym = c->add_flag("--sym", f.sym, "int types: symmetric codes (default)");
  c->add_flag("--asym", s.asym, "int types: asymmetric codes with integer zero points")
      ->excludes(sym);
  const std::map<std::string, RangeMethod> ranges = {{"minmax", RangeMethod::MinMax},
                                                     {"percentile", RangeMethod::Percentile},
                                                     {"mse", RangeMethod::Mse}};
  c->add_option("--range", s.range, "int types: range choice")
      ->transform(CLI::CheckedTransformer(ranges))
      ->default_str("minmax");
  c->add_option("--percentile", s.percentile, "int types with --range percentile: clip percentile")
      ->capture_default_str();
  c->add_option("--format", f.format,
                "int types: the checkpoint layout: lowbit (default), gptq (GPTQModel/AutoGPTQ: "
                "2, 3, 4, 8 bits), awq (AutoAWQ GEMM: 4 bits) or compressed-tensors "
                "(llm-compressor's pack-quantized: 2..8 bits), which transformers and vLLM "
                "load; lowbit reads them all")
      ->check(CLI::IsMember({"lowbit", "gptq", "awq", "compressed-tensors"}));
  c->add_flag("--resume", j.resume,
              "continue an interrupted run of the same job from its checkpoint "
              "(OUTPUT.lowbit-checkpoint/): the sequential methods keep finished blocks, a "
              "run over MPI ranks (or one with --resume) finished tensors");
  c->add_flag("--json", f.json, "print the summary as JSON on stdout");
  c->add_flag("-q,--quiet", f.quiet, "no progress or table");
}

QuantizeJob job_from_flags(const QuantizeFlags& f) {
  JobSettings s = f.s;
  if (f.act_order || f.no_act_order) s.act_order = f.act_order;
  s.group_given = f.group_option->count() > 0;
  if (f.bpw_option->count() > 0) s.bpw = f.bpw;
  if (!f.nm.empty()) set_job_option(s, "nm", f.nm);
  if (!f.format.empty()) set_job_option(s, "format", f.format);
  s.job.distill.rounding = activation_rounding(f.rounding);
  return make_job(s);
}

namespace {

std::atomic<bool> interrupted{false};

}  // namespace

// The first SIGINT or SIGTERM asks the running job to stop at its next step (it then
// removes its unfinished output); a second one removes it and ends the process at once.
void add_distill_flags(CLI::App* c, QuantizeJob& j) {
  c->add_option("--distill-steps", j.distill.steps,
                "training steps of knowledge distillation on the calibration text: after "
                "structured pruning (from the unpruned model; 0: none), or of --method qat "
                "(default 200)")
      ->check(CLI::NonNegativeNumber);
  c->add_option(
       "--distill-lr", j.distill.lr,
       "distillation's Adam step size (default 3e-5 after pruning; qat 1e-4, with --qat-train "
       "scales 1e-3)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--distill-ce", j.distill.ce_weight,
                "training: add W times the student's cross-entropy on the calibration text to "
                "the KL loss (0: KL only)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--distill-checkpoint-every", j.distill.checkpoint_every,
                "training: save the weights and optimiser state every N steps in "
                "OUT.lowbit-checkpoint/ (--resume continues; 0: only when stopped)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option_function<std::string>(
       "--qat-start", [&j](const std::string& v) { j.method.qat.start = *method_from_name(v); },
       "qat: the block-by-block method whose file the end-to-end training starts from (rtn: "
       "the model itself)")
      ->check(CLI::IsMember({"adaquant", "adaround", "autoround", "gptq", "rtn"}))
      ->option_text("adaquant|adaround|autoround|gptq|rtn (default adaquant)");
  c->add_option_function<std::string>(
       "--qat-train", [&j](const std::string& v) { j.method.qat.train_scales = v == "scales"; },
       "qat: what the end-to-end phase trains: the weights behind the codes, or the blocks' "
       "f16 scales with the start's codes kept (LSQ)")
      ->check(CLI::IsMember({"weights", "scales"}))
      ->option_text("weights|scales (default weights)");
  c->add_option("--teacher", j.teacher,
                "qat: the unquantized model to learn from (default: MODEL itself); MODEL may "
                "then be a quantized file, e.g. from --method adaquant, where training starts");
  c->add_option("--eval-every", j.distill.eval_every,
                "training: keep the last tenth of the calibration text out of training and score "
                "4 windows from it every N steps (in --loss-curve; 0: off)")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--teacher-top-k", j.distill.teacher_top_k,
                "training: keep the teacher's K most likely tokens per position (and the rest as "
                "one bucket), one teacher pass per window; 0: the whole distribution every step")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  c->add_option("--loss-curve", j.distill.loss_curve,
                "training: write the loss per step to FILE.csv and a plot to FILE.svg");
}

void stop_on_signals() {
  // Over MPI ranks a rank may wait for a message that a stopped rank never sends: each one
  // deletes its temporaries and ends at once (mpirun's SIGKILL follows in a second).
  clean_up_outputs_on_signals(dist::is_distributed() ? nullptr : &interrupted);
}

Observer progress_printer(bool quiet) {
  return [quiet](const Progress& p) {
    if (interrupted) {
      if (!quiet) fmt::print(stderr, "\n");
      return false;
    }
    if (quiet) return true;
    const std::string bar = progress_bar(p.done, p.total);
    switch (p.stage) {
      case Stage::Tensor:
        fmt::print(stderr, "\r{} {:>4}/{} {:<40}", bar, p.done, p.total, p.item);
        break;
      case Stage::Block:
        fmt::print(stderr, "\r{} block {}/{} quantized ({:.1f} s)", bar, p.done, p.total,
                   p.seconds);
        break;
      case Stage::Calibrate:
        fmt::print(stderr, "\rcalibrating: window {}/{}", p.done, p.total);
        break;
      case Stage::Train: {
        const double eta = p.done ? p.seconds / p.done * (p.total - p.done) : 0;
        fmt::print(stderr, "\r{} step {}/{} {:<24} {:.0f} s, ETA {:.0f} s ", bar, p.done, p.total,
                   p.item, p.seconds, eta);
        break;
      }
      default:
        fmt::print(stderr, "\r{} {} {}/{}", bar, stage_name(p.stage), p.done, p.total);
        break;
    }
    if (p.done == p.total) fmt::print(stderr, "\n");
    return true;
  };
}

}  // namespace lowbit::cli

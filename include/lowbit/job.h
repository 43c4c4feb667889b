// The main job as one call. A QuantizeJob describes a quantization — source model, target
// format, method and its parameters, calibration source, threads, output path — and
// run_quantize_job validates it, runs it and returns a typed report. Every default and
// every rule about which choices go together lives here and in src/pipeline/; the CLI, the
// C API (lowbit.h) and the Python package only fill a QuantizeJob.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "lowbit/affine.h"
#include "lowbit/distill.h"
#include "lowbit/lowrank.h"
#include "lowbit/mixed.h"
#include "lowbit/model.h"
#include "lowbit/observer.h"
#include "lowbit/quantize.h"
#include "lowbit/rotation.h"
#include "lowbit/sequential.h"
#include "lowbit/sparsity.h"
#include "lowbit/structured_prune.h"

namespace lowbit {

// --- targets -------------------------------------------------------------------------

// A size budget for the whole mix: bytes of tensor data, or bits per weight.
struct Budget {
  uint64_t bytes = 0;  // one of the two is set
  double bpw = 0;
};

struct SensitivityParams {
  SensitivityMode mode = SensitivityMode::Proxy;
  size_t windows = 4, ctx = 256;  // calibration windows (and their length) the KLD is measured on
  std::vector<DType> candidates;  // the types a budget chooses among; empty: the default set
};

// A GGUF file for llama.cpp / Ollama.
struct GgufTarget {
  std::string type = "Q4_K_M";  // a preset (Q4_K_M, ...) or a type for every matrix (Q4_K)
  bool pure = false;            // the preset's base type everywhere (no mix)
  std::vector<TypeOverride> tensor_types;  // first matching pattern wins
  std::optional<DType> output_type, token_embedding_type;
  std::string recipe_path;              // replay a recipe file (tensor -> type)
  std::map<std::string, DType> recipe;  // or a recipe in memory (e.g. from solve_job_budget)
  std::optional<Budget> budget;         // the best mix under this size (needs calibration text)
  SensitivityParams sensitivity;
  std::string save_recipe;  // with a budget: write the chosen mix here
};

// The affine int layout: a Hugging Face directory in lowbit's layout (qweight/scales/zeros)
// or in GPTQ's or AWQ's (AffineFormat).
struct AffineTarget {
  AffineSpec spec;
  AffineFormat format = AffineFormat::Lowbit;
};

// int8 weights per output channel and int8 activations (a Hugging Face directory).
struct W8A8Target {
  bool static_activations = false;          // one calibrated scale per linear input; else per token
  RangeMethod range = RangeMethod::MinMax;  // how each weight row's scale is chosen
  double percentile = 99.9;                 // RangeMethod::Percentile
  AffineFormat format = AffineFormat::Lowbit;  // or CompressedTensors (int-quantized)
  AffineSpec weight_spec() const;           // int8, one symmetric scale per output channel
};

// FP8 E4M3 weights (compressed-tensors float-quantized, lowbit/fp8.h), one scale per output
// channel or per tensor.
struct Fp8Target {
  bool per_tensor = false;
};

using Target = std::variant<GgufTarget, AffineTarget, W8A8Target, Fp8Target>;

// --- methods -------------------------------------------------------------------------

enum class Method {
  Default,      // gptq with calibration text, imatrix with saved statistics, else rtn
  Rtn,          // round to nearest (the target's own search)
  Imatrix,      // round to nearest weighted by the inputs' mean x² (GGUF)
  Gptq,         // GPTQ: sequential on calibration text, static on saved Hessians
  Awq,          // AWQ scales, then rounding to nearest (GGUF)
  AwqGptq,      // AWQ scales, then GPTQ (GGUF)
  SmoothQuant,  // SmoothQuant's smoothing folded into the model (W8A8)
  AdaRound,     // learned rounding on calibration text (lowbit/learned.h; GGUF types)
  AdaQuant,
  AutoRound,
  Qat,  // quantization-aware training by distillation from the unquantized model (GGUF)
};
const char* method_name(Method m);                                // "rtn", "awq+gptq", ...
std::optional<Method> method_from_name(const std::string& name);  // nullopt when unknown
std::vector<std::string> method_names();                          // every registered method

struct GptqParams {
  std::optional<double> damp;  // default per target: 0.1 for GGUF types, 0.01 for the affine layout
  std::optional<bool>
      act_order;            // default per target: off for GGUF types, on for the affine layout
  bool fp_targets = false;  // GGUF: match the unquantized model's outputs (GPTAQ)
};

struct AwqParams {
  int grid = 20;  // α tried at 0, 1/grid, ..., 1
  AwqObjective objective = AwqObjective::Block;
  int windows = 4;     // block objective: calibration windows the block output is scored on
  bool clip = false;   // awq alone: clipping per block by the layer output error
  int sub_passes = 4;  // awq alone, K types: passes of the sub-block scale search (0: off)
};

// Learned rounding (adaround, adaquant, autoround); 0 = the method's measured default.
struct LearnedParams {
  int steps = 0;           // optimiser steps per block
  double lr = 0;           // learning rate
  int batch = 0;           // calibration windows per step
  double reg = 0.01;       // adaround: regulariser weight, relative to the block's start loss
  bool gptq_start = true;  // start from GPTQ's rounding; false: from rounding to nearest
  bool teacher_inputs = false;  // LearnedOptions::teacher_inputs (LKD)
};
// qat: where training starts. A method other than rtn (adaquant, adaround, autoround, gptq)
// first quantizes block by block (EfficientQAT's block-wise phase); the whole model is then
// trained end to end from that file's weights. Not used with a teacher (the job's model is
// then the start).
// train_scales: the end-to-end phase learns the blocks' f16 scales with the start's integer
// codes kept (EfficientQAT's second phase, LSQ) instead of the weights behind the codes.
struct QatParams {
  Method start = Method::AdaQuant;
  bool train_scales = false;
};
struct SmoothQuantParams {
  double alpha = 0.5;  // migration strength in [0, 1]
};

struct MethodSpec {
  Method kind = Method::Default;
  GptqParams gptq;
  AwqParams awq;
  SmoothQuantParams smoothquant;
  LearnedParams learned;
  QatParams qat;
};

// --- the job -------------------------------------------------------------------------

struct CalibrationSource {
  std::string text;   // calibration text, tokenized with the model's tokenizer
  std::string stats;  // or statistics saved by calibrate (imatrix; Hessians for static GPTQ)
  size_t samples = 128, ctx = 512;  // windows and tokens per window
  uint64_t seed = 1;                // seed of the window offsets
  // Block-by-block methods run the finished blocks on the fast kernels (8-bit activations,
  // SequentialOptions::fast_kernels); false: on the fp32 reference.
  bool fast_kernels = true;
};

struct QuantizeJob {
  std::string model;      // HF directory, .gguf or llama2.c .bin
  std::string tokenizer;  // llama2.c tokenizer .bin (default: beside the model)
  std::string output;     // .gguf file, or a directory for the affine and W8A8 targets
  Target target = GgufTarget{};
  MethodSpec method;
  CalibrationSource calib;
  int threads = 0;  // 0: every core
  // A rotation fused into the weights before the method runs (lowbit/rotation.h); calibration
  // then runs on the rotated model, so saved statistics (job.calib.stats) cannot be used.
  RotationOptions rotation{RotationKind::None};
  // Pruning of the blocks' linears (lowbit/sparsity.h), before or inside the method's rounding:
  // rtn and imatrix zero a mask first (magnitude; wanda with imatrix), gptq prunes in its sweep
  // (sparsegpt) or keeps a mask chosen first. Unset `prune`: resolved_prune_method.
  SparsityPattern sparsity;
  std::optional<PruneMethod> prune;
  // Whole FFN channels and KV groups removed first (lowbit/structured_prune.h), scored with
  // statistics of the calibration text when given; the method then runs on the smaller model.
  StructuredPruneOptions structured;
  // rank > 0: low-rank branches (SVDQuant; lowbit/lowrank.h) split off the block linears after
  // the rotation and structured pruning; the method then rounds the residuals (GGUF; rtn,
  // imatrix or gptq).
  LowRankOptions lowrank{0, ""};
  // With lowrank: SmoothQuant's smoothing first (migration strength α in (0, 1], from the
  // calibration text's max |x| per channel; lowbit/smoothquant.h), so that the branches take
  // the activations' outliers too; 0: none.
  double lowrank_alpha = 0;
  // With steps > 0, the structurally pruned model is trained first to match the model before
  // pruning on the calibration text (lowbit/distill.h); windows and seed from `calib`.
  DistillOptions distill;
  // qat: the model whose next-token distributions the student learns; empty: the job's own
  // model. Given, the job's model may be a quantized file (a learned-rounding result, say):
  // its dequantized weights are where training starts (EfficientQAT's block-wise phase
  // first, then this end-to-end one).
  std::string teacher;
  // Sequential methods (gptq, awq, the learned ones) to GGUF keep a checkpoint beside the
  // output ("<output>.lowbit-checkpoint/") after every block, removed when the file is
  // written; resume continues an interrupted run of the same job from it.
  bool resume = false;
};

// The method the job runs once Default is resolved.
Method resolved_method(const QuantizeJob& job);

// The pruning rule a job with a sparsity uses unless it names one: sparsegpt with gptq, wanda
// with imatrix (its norms are the importance vectors), magnitude otherwise.
PruneMethod resolved_prune_method(const QuantizeJob& job);

// Throws Argument naming the first bad choice; no model is read.
void validate(const QuantizeJob& job);

// Validates, loads job.model, runs the job and writes job.output (atomically: on an error
// or cancellation no output is left). `observer` sees every step.
QuantizeReport run_quantize_job(const QuantizeJob& job, const Observer& observer = {});
// The same on a model already loaded (job.model is not read; `m.source` locates the tokenizer).
QuantizeReport run_quantize_job(const Model& m, const QuantizeJob& job,
                                const Observer& observer = {});

// --- budgets, for callers that solve several budgets on one measurement (sweep) ---------

// Sensitivity of every tensor of `m` to each candidate type, measured on job.calib.
std::vector<MixTensor> measure_job_sensitivity(const Model& m, const QuantizeJob& job,
                                               const Observer& observer = {});
// The mix (tensor -> type) of least estimated loss under `budget`; writes it to `save_path`
// as a recipe when not empty.
std::map<std::string, DType> solve_job_budget(const Model& m, const std::vector<MixTensor>& tensors,
                                              const Budget& budget,
                                              const std::string& save_path = "");
// Total elements of every tensor of `m` (what bits per weight are counted over).
uint64_t count_weights(const Model& m);

}  // namespace lowbit

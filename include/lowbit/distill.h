// Knowledge distillation (Hinton et al. 2015) on the CPU: a student model is trained so that
// its next-token distributions match a teacher's on windows of calibration text. The loss is
// KL(teacher ‖ student) at temperature τ, averaged over every position; Adam trains the
// student's blocks and final norm through the whole model's backward pass
// (lowbit/model_grad.h), and the embedding and head stay as they are. lowbit uses it to
// recover what structured pruning removed (the student is the pruned model, the teacher the
// model before pruning; lowbit/structured_prune.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/affine.h"
#include "lowbit/dtype.h"
#include "lowbit/engine.h"
#include "lowbit/model.h"

namespace lowbit {

struct DistillOptions {
  int steps = 0;           // optimiser steps; 0: no training
  int batch = 2;           // windows per step, one per thread
  size_t n_ctx = 512;      // tokens per window (BOS first)
  size_t n_windows = 128;  // the seeded pool of windows the steps take in turns
  // Adam's step, warmed up linearly over the first tenth of the steps; 0: the default (3e-5,
  // which resolved() fills in; quantize --method qat picks its own).
  double lr = 0;
  double temperature = 1;
  // > 0: the loss adds ce_weight times the student's cross-entropy on the text itself (its
  // next tokens, at temperature 1; train::ce_loss) to the KL; the held-out score stays KL.
  double ce_weight = 0;
  // 0: the teacher's whole distribution, from a teacher pass at every visit of a window. K:
  // its K most likely tokens per position and the rest as one bucket, from one pass per window
  // kept for the run (8·K bytes per position; train/teacher_top_k.h).
  int teacher_top_k = 0;
  uint64_t seed = 1;
  int n_threads = 0;  // 0: every core
  // Quantization-aware training: the block linears named here run rounded to their type
  // (round to nearest, as the GGUF writer rounds them) in the student's forward pass, and
  // the gradient at the rounded weights moves the unrounded ones (the straight-through
  // estimator). The returned model holds the unrounded weights; rounding them again gives
  // what the last step ran.
  std::map<std::string, DType> quantize_to;
  // The same for linears rounded onto an affine integer grid (round to nearest, as
  // write_affine_model rounds them); not with train_scales.
  std::map<std::string, AffineSpec> affine_to;
  // With quantize_to: the linears keep their integer codes and learn their blocks' f16 scale
  // fields instead of their weights (LSQ; train/scale_training.h), the norms as before. Codes
  // come from the student's tensor when it is stored in the planned type (a start file),
  // else from rounding its weights. The returned model holds those linears in their types.
  bool train_scales = false;
  // What the student's pass rounds besides its weights (activations per token, the KV cache),
  // as the engine simulates it with the same settings: training for W4A8, W4A4, KV4. The
  // gradient goes straight through the rounding (zero where act_clip clamped a value). The
  // teacher runs unrounded.
  ActivationRounding rounding = {};
  // rounding.static_ranges: the ranges start from the student's (config.act_ranges) or at the
  // mean maxima over `batch` windows (with per-token rounding), and after each step move to
  //   range ← momentum·range + (1 − momentum)·(the step's windows' mean max |x|)
  // (an exponential moving average, as QAT's observers keep them). The returned model holds
  // them in config.act_ranges; without static_ranges it holds none.
  double range_momentum = 0.9;
  // After each step: (step, steps, the batch's mean loss). Returning false stops with
  // Error(Cancelled).
  std::function<bool(int, int, double)> on_step;
  // Long runs. With a `checkpoint` file, every `checkpoint_every` steps the weights, Adam's
  // moments and the losses so far are saved there, and also when on_step stops the run or
  // the loss stops being finite (then the state before the bad step: the last good one).
  // With `resume`, a run continues from the file and ends with the weights of an
  // uninterrupted run. The file belongs to the run described by `fingerprint` with the
  // tokens, seed, windows, batch, temperature and quantize_to; another run's is refused.
  // steps and lr may differ (a diverged run resumes with a smaller lr).
  std::string checkpoint;
  int checkpoint_every = 50;
  bool resume = false;
  std::string fingerprint;
  // When set, the losses so far are written at each checkpoint and at the end
  // (write_loss_curve).
  std::string loss_curve;
  // Held-out evaluation: with eval_every > 0 the last tenth of the tokens is kept out of
  // training; `eval_windows` windows from it are scored (mean KL at τ, no gradient) before
  // the first step and every eval_every steps.
  int eval_every = 0;
  size_t eval_windows = 4;
};
// The defaults (measured on tinyllm-8m, docs/PRUNING.md) filled in.
DistillOptions resolved(const DistillOptions& o);

struct DistillReport {
  std::vector<double> losses;  // per step
  // (steps done, mean KL on the held-out windows); after a resume, from the resumed step on
  std::vector<std::pair<int, double>> held_out;
  size_t n_params = 0;         // trained
  double seconds = 0;
};

// The losses, one per step, as CSV ("step,loss", with a third column "held_out" when there
// are held-out scores) at `csv_path` and as an SVG line plot beside it (the same path with
// ".svg" for its extension; the held-out scores as a second line).
void write_loss_curve(const std::string& csv_path, const std::vector<double>& losses,
                      const std::string& title,
                      const std::vector<std::pair<int, double>>& held_out = {});

// The student with its blocks and final norm trained (stored as F32). `tokens` is the
// tokenized calibration text. Throws Argument when the vocabularies differ (naming both
// models) and when the loss stops being finite.
Model distill(const Model& student, const Model& teacher, const std::vector<int32_t>& tokens,
              const DistillOptions& options, DistillReport* report = nullptr);

}  // namespace lowbit

// What a method sees of a running job (src/pipeline/): the loaded model, the job with its
// defaults resolved, the observer, and the calibration inputs made on demand.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/calibration.h"
#include "lowbit/job.h"

namespace lowbit::pipeline {

// GGUF name -> H (the mean x xᵀ of the weight's input, [cols, cols]), null when none.
using HessianLookup = std::function<const std::vector<double>*(const std::string& name)>;

class JobRun {
 public:
  JobRun(const Model& m, const QuantizeJob& job, const Observer& observer);

  const Model& model() const { return m_; }
  const QuantizeJob& job() const { return job_; }
  const Observer& observer() const { return observer_; }
  Method method() const { return method_; }
  int threads() const { return threads_; }  // resolved: never 0
  bool has_statistics() const { return !job_.calib.text.empty() || !job_.calib.stats.empty(); }

  // The calibration text tokenized with the model's tokenizer (no BOS; windows add it).
  std::vector<int32_t> calibration_tokens() const;
  // Statistics collected on the calibration text (with Σ x xᵀ when `hessian`).
  CalibrationStats collect_statistics(bool hessian) const;
  // Statistics with every weight's Hessian: read from job.calib.stats or measured on the
  // text. `what` names their user in errors. With `wanted`, a file's Hessians are read
  // only for the weights it names.
  CalibrationStats hessian_statistics(const std::string& what,
                                      const WeightFilter& wanted = {}) const;
  // The job's pruning pattern, with OWL's per-block shares measured on the unpruned model's
  // input norms (the statistics file's or the calibration text's) when it asks for them.
  SparsityPattern sparsity() const;
  // The job's distillation settings with its calibration windows, seed, threads and the
  // observer's progress (Stage::Train, "<label> loss L").
  DistillOptions distill_options(const std::string& label) const;
  // Per-tensor progress for the writers, as the observer sees it.
  std::function<void(size_t, size_t, const TensorReport&)> tensor_progress() const;
  // What a checkpoint of this job depends on: the model, teacher, tokenizer, calibration
  // (text, statistics file with its size and time, windows, seed), rotation, low-rank
  // branch and structured pruning, then `rest` (the method's own settings). A checkpoint
  // with another fingerprint is not resumed.
  std::string checkpoint_fingerprint(const std::string& rest) const;
  // How write_affine_model writes this job's output: threads, progress, the target's format.
  AffineWriteOptions affine_options(const std::string& method) const;

 private:
  const Model& m_;
  const QuantizeJob& job_;
  Observer observer_;
  Method method_;
  int threads_;
};

// Hessians from `stats` as the quantizers look them up; each weight's sums are released as
// its H is made, so the Hessians are held once.
HessianLookup hessian_lookup(CalibrationStats&& stats);

// GGUF name -> importance (mean x_j² of each input column) from `stats`, null when none.
using ImportanceLookup = std::function<const std::vector<float>*(const std::string& name)>;
ImportanceLookup importance_lookup(const CalibrationStats& stats);

}  // namespace lowbit::pipeline

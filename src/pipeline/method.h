// Quantization methods as small strategy objects behind one registry. A method says which
// targets it writes and carries each out; adding one is a file with a QuantMethod subclass
// plus a line in method_registry.cpp (and its enum value in lowbit/job.h).
#pragma once

#include <vector>

#include "job_run.h"
#include "lowbit/job.h"

namespace lowbit::pipeline {

enum class TargetKind { Gguf, Affine, W8A8, Fp8 };
TargetKind target_kind(const Target& t);
// Throws Argument: method `m` does not write targets of kind `k` (naming what it does write).
[[noreturn]] void fail_target(Method m, TargetKind k);

class QuantMethod {
 public:
  virtual ~QuantMethod() = default;
  virtual Method kind() const = 0;
  // The job's own rules for this method (beyond what validate() checks for every method).
  virtual void check(const QuantizeJob& job) const {}
  // One per target; the default says the method does not write that target.
  // `q` carries the tensor plan, threads and progress already filled from the job.
  virtual QuantizeReport gguf(JobRun& run, QuantizeOptions q) const;
  virtual QuantizeReport affine(JobRun& run, const AffineSpec& spec) const;
  virtual QuantizeReport w8a8(JobRun& run, const W8A8Target& t) const;
  virtual QuantizeReport fp8(JobRun& run, const Fp8Target& t) const;
  virtual bool writes(TargetKind k) const = 0;
};

// The registered methods, in the order method_names() lists them.
const std::vector<const QuantMethod*>& registered_methods();
const QuantMethod& method_for(Method m);  // throws Argument for an unregistered method

// Each method's object (one file each).
const QuantMethod& rtn_method();
const QuantMethod& imatrix_method();
const QuantMethod& gptq_method();
const QuantMethod& awq_method();
const QuantMethod& awq_gptq_method();
const QuantMethod& smoothquant_method();
const QuantMethod& adaround_method();
const QuantMethod& adaquant_method();
const QuantMethod& autoround_method();
const QuantMethod& qat_method();

// The sequential driver as awq, awq+gptq and gptq (on calibration text) use it: AWQ scales
// when `awq`, GPTQ rounding when `gptq_rounding`, learned rounding after it when `learn`,
// then the GGUF writer.
QuantizeReport run_sequential(JobRun& run, QuantizeOptions q, bool awq, bool gptq_rounding,
                              const std::optional<LearnedOptions>& learn = std::nullopt);
// W8A8 (int8 weights per channel, int8 activations): SmoothQuant's smoothing first when
// `smooth`; activation scales per token, or calibrated per linear input.
QuantizeReport write_w8a8(JobRun& run, const W8A8Target& t, bool smooth);
// GPTQ's settings for a target whose measured defaults are `act_order` and `damp`.
GptqOptions gptq_options(const JobRun& run, bool act_order, double damp);
// GPTQ's settings for the GGUF block types (the sequential driver's rounding).
GptqOptions gguf_gptq_options(const JobRun& run);

}  // namespace lowbit::pipeline

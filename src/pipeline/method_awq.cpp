// AWQ (Lin et al. 2024): per group of linears sharing an input, channel scales
// s = mean|x|^α chosen on the calibration windows, then rounding to nearest (awq) or GPTQ
// (awq+gptq), block by block (lowbit/awq.h, lowbit/sequential.h).
#include "lowbit/error.h"
#include "method.h"

namespace lowbit::pipeline {
namespace {

void check_awq(const QuantizeJob& job, const char* name) {
  if (job.calib.text.empty())
    fail(ErrorKind::Argument, "method {} needs calibration text (statistics of every layer input)",
         name);
  if (job.method.gptq.fp_targets)
    fail(ErrorKind::Argument, "GPTQ's fp targets do not combine with AWQ");
  const AwqParams& a = job.method.awq;
  if (a.grid < 1 || a.grid > 1000)
    fail(ErrorKind::Argument, "awq grid {}: must be in 1..1000", a.grid);
  if (a.windows < 1) fail(ErrorKind::Argument, "awq windows {}: must be at least 1", a.windows);
  if (a.sub_passes < 0 || a.sub_passes > 100)
    fail(ErrorKind::Argument, "awq sub-block passes {}: must be in 0..100", a.sub_passes);
}

class AwqMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Awq; }
  bool writes(TargetKind k) const override { return k == TargetKind::Gguf; }
  void check(const QuantizeJob& job) const override { check_awq(job, "awq"); }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    return run_sequential(run, q, true, false);
  }
};

class AwqGptqMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::AwqGptq; }
  bool writes(TargetKind k) const override { return k == TargetKind::Gguf; }
  void check(const QuantizeJob& job) const override { check_awq(job, "awq+gptq"); }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    return run_sequential(run, q, true, true);
  }
};

}  // namespace

const QuantMethod& awq_method() {
  static const AwqMethod m;
  return m;
}
const QuantMethod& awq_gptq_method() {
  static const AwqGptqMethod m;
  return m;
}

}  // namespace lowbit::pipeline

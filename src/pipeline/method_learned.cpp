// Learned rounding (lowbit/learned.h) as methods: adaround, adaquant and autoround run the
// sequential driver on calibration text, each block's start rounding (GPTQ by default, or
// round to nearest) trained against the unquantized block's output.
#include "lowbit/error.h"
#include "lowbit/quantize.h"
#include "lowbit/topology.h"
#include "method.h"
#include "quant/iq_shapes.h"

namespace lowbit::pipeline {
namespace {

class LearnedRoundingMethod : public QuantMethod {
 public:
  LearnedRoundingMethod(Method kind, LearnedMethod learned) : kind_(kind), learned_(learned) {}
  Method kind() const override { return kind_; }
  bool writes(TargetKind k) const override { return k == TargetKind::Gguf; }
  void check(const QuantizeJob& job) const override {
    const LearnedParams& p = job.method.learned;
    if (job.calib.text.empty())
      fail(ErrorKind::Argument, "method {} needs calibration text (it trains on the block outputs)",
           method_name(kind_));
    if (job.method.gptq.fp_targets && !p.gptq_start)
      fail(ErrorKind::Argument,
           "method {}: fp targets are a GPTQ setting: they need the GPTQ start",
           method_name(kind_));
    if (const auto* t = std::get_if<GgufTarget>(&job.target); t && t->budget)
      for (DType c : t->sensitivity.candidates)
        if (!trains(c))
          fail(ErrorKind::Argument,
               "method {}: the budget's type {} is a codebook type, which {} cannot train (it "
               "moves each value on a grid of its own); use adaquant, or leave it out of "
               "--mix-types",
               method_name(kind_), dtype_name(c), method_name(kind_));
    if (p.steps < 0 || p.batch < 0 || !(p.lr >= 0) || !(p.reg >= 0))
      fail(
          ErrorKind::Argument,
          "method {}: steps {}, batch {}, learning rate {} and regulariser {} must not be negative",
          method_name(kind_), p.steps, p.batch, p.lr, p.reg);
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    // Refused before calibration.
    for (const TensorPlan& t : plan_quantization(run.model(), q.plan))
      if (is_block_linear(t.name) && !trains(t.type))
        fail(ErrorKind::Unsupported,
             "method {}: tensor '{}' is {}, a codebook type (groups of values share one grid "
             "entry) that {} cannot train; use adaquant, gptq or rtn",
             method_name(kind_), t.name, dtype_name(t.type), method_name(kind_));
    const LearnedParams& p = run.job().method.learned;
    LearnedOptions o;
    o.method = learned_;
    o.steps = p.steps, o.lr = p.lr, o.batch = p.batch, o.reg = p.reg;
    o.seed = run.job().calib.seed;
    o.teacher_inputs = p.teacher_inputs;
    return run_sequential(run, q, false, p.gptq_start, o);
  }

 private:
  // AdaRound and AutoRound move each value on a grid of its own, which the codebook types
  // (groups of values share one grid entry) do not have; AdaQuant rounds through the type's
  // own quantizer and trains any type.
  bool trains(DType t) const {
    return learned_ == LearnedMethod::AdaQuant || !quant::is_codebook(t);
  }
  Method kind_;
  LearnedMethod learned_;
};

}  // namespace

const QuantMethod& adaround_method() {
  static const LearnedRoundingMethod m(Method::AdaRound, LearnedMethod::AdaRound);
  return m;
}
const QuantMethod& adaquant_method() {
  static const LearnedRoundingMethod m(Method::AdaQuant, LearnedMethod::AdaQuant);
  return m;
}
const QuantMethod& autoround_method() {
  static const LearnedRoundingMethod m(Method::AutoRound, LearnedMethod::AutoRound);
  return m;
}

}  // namespace lowbit::pipeline

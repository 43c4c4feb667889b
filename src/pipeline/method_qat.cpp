// Quantization-aware training (lowbit/distill.h with `quantize_to`): the model learns, on the
// calibration text, to match its unquantized self while its block linears run rounded to the
// planned GGUF types; the trained weights are then rounded as plain rounding does, which
// gives exactly the weights the last training step ran.
#include <fmt/format.h>

#include <optional>

#include "lowbit/distill.h"
#include "lowbit/error.h"
#include "lowbit/topology.h"
#include "method.h"

namespace lowbit::pipeline {
namespace {

constexpr int kQatSteps = 200;
constexpr double kQatLr = 1e-4;  // the rounded weights need larger moves than distillation's

// The student learns the teacher's own network, rounded: the same shapes, or the wrong file.
void check_same_shape(const Model& student, const Model& teacher) {
  const ModelConfig &s = student.config, &t = teacher.config;
  if (s.n_vocab != t.n_vocab || s.n_embd != t.n_embd || s.n_layer != t.n_layer || s.n_ff != t.n_ff)
    fail(ErrorKind::Argument,
         "qat: the teacher {} ({} tokens, {} wide, {} blocks, FFN {}) is not the network of "
         "the student {} ({} tokens, {} wide, {} blocks, FFN {})",
         teacher.source, t.n_vocab, t.n_embd, t.n_layer, t.n_ff, student.source, s.n_vocab,
         s.n_embd, s.n_layer, s.n_ff);
}

class QatMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Qat; }
  bool writes(TargetKind k) const override { return k == TargetKind::Gguf; }
  void check(const QuantizeJob& job) const override {
    if (job.calib.text.empty())
      fail(ErrorKind::Argument, "method qat trains on calibration text, which the job lacks");
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    const Model& m = run.model();
    const QuantizeJob& job = run.job();
    DistillOptions d = run.distill_options("qat");
    if (d.steps <= 0) d.steps = kQatSteps;
    if (job.distill.lr == DistillOptions{}.lr) d.lr = kQatLr;  // not set by the job
    for (const TensorPlan& p : plan_quantization(m, q.plan))
      if (is_block_linear(p.name) && !traits(p.type).is_float) d.quantize_to[p.name] = p.type;
    std::optional<Model> loaded;
    const Model& teacher = job.teacher.empty() ? m : loaded.emplace(load_model(job.teacher));
    check_same_shape(m, teacher);
    const Model trained = distill(m, teacher, run.calibration_tokens(), d);
    for (const TensorPlan& p : plan_quantization(trained, q.plan))  // F32 now: the same plan?
      if (const auto it = d.quantize_to.find(p.name);
          it != d.quantize_to.end() && it->second != p.type)
        fail(ErrorKind::Argument, "qat: '{}' trained as {} would be written as {}", p.name,
             dtype_name(it->second), dtype_name(p.type));
    q.method = fmt::format("qat steps={} lr={} calib={}x{}", d.steps, d.lr, job.calib.samples,
                           job.calib.ctx);
    return quantize_model_gguf(trained, job.output, q);
  }
};

}  // namespace

const QuantMethod& qat_method() {
  static const QatMethod m;
  return m;
}

}  // namespace lowbit::pipeline

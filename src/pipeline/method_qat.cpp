// Quantization-aware training (lowbit/distill.h with `quantize_to` or `affine_to`): the model
// learns, on the calibration text, to match its unquantized self while its block linears run
// rounded to the planned GGUF types or the affine grid; the trained weights are then rounded
// as plain rounding does, which gives exactly the weights the last training step ran.
#include <fmt/format.h>

#include <filesystem>
#include <optional>

#include "algo/sequential_checkpoint.h"
#include "lowbit/distill.h"
#include "lowbit/error.h"
#include "lowbit/job.h"
#include "lowbit/model_grad.h"
#include "lowbit/topology.h"
#include "method.h"

namespace lowbit::pipeline {
namespace {

// Defaults measured on tinyllm-8m at Q2_K (docs/QUANTIZATION.md): 200 steps at 1e-4 from
// adaquant's file beat 3e-5 (0.554x and 0.613x GPTQ's KLD).
constexpr int kQatSteps = 200;
constexpr double kQatLr = 1e-4;
// --qat-train scales: θ is a relative change of each f16 field (100 steps from adaquant at
// Q2_K: 1e-3 beat 1e-4).
constexpr double kQatScalesLr = 1e-3;

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

// Where the block-wise phase's file (or directory, for the affine layout) is kept: beside the
// training checkpoint, so that a resumed job does not run the phase again.
std::string start_path(const QuantizeJob& job) {
  const bool gguf = std::holds_alternative<GgufTarget>(job.target);
  return job.output + ".lowbit-checkpoint/start" + (gguf ? ".gguf" : "");
}

// The start's file goes with the checkpoint.
void remove_start(const QuantizeJob& job) {
  std::error_code ec;
  std::filesystem::remove_all(start_path(job), ec);
  std::filesystem::remove(std::filesystem::path(start_path(job)).parent_path(), ec);
}

// EfficientQAT's first phase: the block-by-block method `start` on the job's model (already
// rotated or pruned as the job asks), written to start_path and loaded back.
Model block_wise_start(const JobRun& run, Method start) {
  const QuantizeJob& job = run.job();
  const std::string path = start_path(job);
  if (!(job.resume && std::filesystem::exists(path))) {
    QuantizeJob first = job;
    first.method.kind = start;
    first.output = path;
    first.rotation = RotationOptions{RotationKind::None};
    first.structured = StructuredPruneOptions{};
    first.distill = DistillOptions{};
    make_checkpoint_directory(std::filesystem::path(path).parent_path().string());
    run_quantize_job(run.model(), first, run.observer());
  }
  return load_model(path);
}

// The job's training settings with qat's defaults where the job gives none.
DistillOptions qat_options(const JobRun& run) {
  DistillOptions d = run.distill_options("qat");
  d.train_scales = run.job().method.qat.train_scales;
  if (d.steps <= 0) d.steps = kQatSteps;
  if (d.lr <= 0) d.lr = d.train_scales ? kQatScalesLr : kQatLr;
  return d;
}

// The report's method: "qat start=adaquant steps=200 lr=0.0001 calib=128x512", then what else
// was trained for (train=scales, ce=W, the rounding's flags).
std::string label(Method start, const DistillOptions& d, const QuantizeJob& job) {
  std::string out =
      fmt::format("qat start={} steps={} lr={} calib={}x{}{}", method_name(start), d.steps, d.lr,
                  job.calib.samples, job.calib.ctx, d.train_scales ? " train=scales" : "");
  if (d.ce_weight > 0) out += fmt::format(" ce={}", d.ce_weight);
  if (const std::string r = rounding_label(d.rounding); !r.empty()) out += " " + r;
  return out;
}

class QatMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Qat; }
  bool writes(TargetKind k) const override {
    return k == TargetKind::Gguf || k == TargetKind::Affine;
  }
  void check(const QuantizeJob& job) const override {
    if (job.calib.text.empty())
      fail(ErrorKind::Argument, "method qat trains on calibration text, which the job lacks");
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    const Model& source = run.model();
    const QuantizeJob& job = run.job();
    DistillOptions d = qat_options(run);
    // The student starts from the job's model (with a teacher, or --qat-start rtn) or from the
    // block-by-block method's file; the teacher is the unquantized model.
    std::optional<Model> teacher_file, start_file;
    const Model* student = &source;
    const Model* teacher = &source;
    const Method start = job.teacher.empty() ? job.method.qat.start : Method::Rtn;
    if (!job.teacher.empty()) teacher = &teacher_file.emplace(load_model(job.teacher));
    if (start != Method::Rtn) student = &start_file.emplace(block_wise_start(run, start));
    const Model& m = *student;
    check_same_shape(m, *teacher);
    for (const TensorPlan& p : plan_quantization(m, q.plan))
      if (is_block_linear(p.name) && !traits(p.type).is_float) d.quantize_to[p.name] = p.type;
    const Model trained = distill(m, *teacher, run.calibration_tokens(), d);
    for (const TensorPlan& p : plan_quantization(trained, q.plan))  // F32 now: the same plan?
      if (const auto it = d.quantize_to.find(p.name);
          it != d.quantize_to.end() && it->second != p.type)
        fail(ErrorKind::Argument, "qat: '{}' trained as {} would be written as {}", p.name,
             dtype_name(it->second), dtype_name(p.type));
    q.method = label(start, d, job);
    // Trained scales: the linears' bytes as trained (rounding their values again could pick
    // other codes); the writer rounds the rest.
    GgufQuantizeWriter writer(trained, job.output, q);
    if (d.train_scales)
      for (const auto& [name, type] : d.quantize_to) {
        const TensorView& t = trained.tensor(name);
        writer.put(name, PrecomputedTensor{std::vector<uint8_t>(t.data, t.data + t.nbytes)});
      }
    QuantizeReport r = writer.finish();
    remove_start(job);
    return r;
  }
  // The affine layout: every block linear trains on `spec`'s grid; the block-wise phase is
  // GPTQ (the learned methods write GGUF types), or none with --qat-start rtn. The student's
  // weights replace the source's, so the output takes the source's Hugging Face files.
  QuantizeReport affine(JobRun& run, const AffineSpec& spec) const override {
    const Model& source = run.model();
    const QuantizeJob& job = run.job();
    if (job.method.qat.train_scales)
      fail(ErrorKind::Argument,
           "--qat-train scales learns the f16 fields of GGUF blocks: for the affine layout "
           "qat trains the weights");
    if (!job.teacher.empty())
      fail(ErrorKind::Argument,
           "qat onto the affine layout starts from the Hugging Face model itself, which is the "
           "teacher: drop --teacher {}",
           job.teacher);
    DistillOptions d = qat_options(run);
    const Method start = job.method.qat.start == Method::Rtn ? Method::Rtn : Method::Gptq;
    std::optional<Model> started;
    if (start != Method::Rtn)
      started =
          train::with_weights(source, train::model_weights<float>(block_wise_start(run, start)));
    const Model& m = started ? *started : source;
    for (const TensorView& t : m.tensors)
      if (is_block_linear(t.name)) d.affine_to[t.name] = spec;
    const Model trained = distill(m, source, run.calibration_tokens(), d);
    QuantizeReport r =
        write_affine_model(trained, job.output, spec, run.affine_options(label(start, d, job)));
    remove_start(job);
    return r;
  }
};

}  // namespace

const QuantMethod& qat_method() {
  static const QatMethod m;
  return m;
}

}  // namespace lowbit::pipeline

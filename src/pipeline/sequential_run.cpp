// The block-by-block driver (lowbit/sequential.h) as the gptq, awq and awq+gptq methods run
// it: plan the types and write the file's header, quantize block by block on the
// calibration windows, each block's tensors written as soon as the block is done.
#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "method.h"

namespace lowbit::pipeline {

namespace {

// lowbit.quantize.method: the method and every parameter that changes the file.
std::string method_label(const JobRun& run, const SequentialOptions& so) {
  const char* name = method_name(run.method());
  std::string label =
      fmt::format("{} sequential calib={}x{}", name, run.job().calib.samples, run.job().calib.ctx);
  if (so.learn) {
    const LearnedOptions l = resolved(*so.learn);
    label += fmt::format(" start={} steps={} lr={} batch={}", so.gptq_rounding ? "gptq" : "rtn",
                         l.steps, l.lr, l.batch);
    if (l.method == LearnedMethod::AdaRound) label += fmt::format(" reg={}", l.reg);
    if (l.teacher_inputs) label += " inputs=teacher";
  }
  if (so.gptq_rounding)
    label += fmt::format(" damp={} act_order={}{}", so.gptq.damp, so.gptq.act_order ? 1 : 0,
                         so.fp_targets ? " fp_targets=1" : "");
  if (so.awq) {
    label += fmt::format(" awq_grid={} awq_objective={}", so.awq_grid,
                         so.awq_objective == AwqObjective::Layer ? "layer" : "block");
    if (so.awq_objective == AwqObjective::Block)
      label +=
          fmt::format(" awq_windows={}", std::min<size_t>(so.awq_windows, run.job().calib.samples));
    if (so.awq_clip) label += " awq_clip=1";
    if (!so.gptq_rounding) label += fmt::format(" awq_sub_passes={}", so.awq_sub_passes);
  }
  if (!so.fast_kernels) label += " kernels=reference";  // (also keeps checkpoints apart)
  return label;
}

}  // namespace

QuantizeReport run_sequential(JobRun& run, QuantizeOptions q, bool awq, bool gptq_rounding,
                              const std::optional<LearnedOptions>& learn) {
  const QuantizeJob& job = run.job();
  const Model& m = run.model();
  const AwqParams& a = job.method.awq;
  SequentialOptions so;
  so.awq = awq;
  so.awq_grid = a.grid;
  so.awq_objective = a.objective;
  so.awq_windows = a.windows;
  so.awq_clip = a.clip;
  so.awq_sub_passes = a.sub_passes;
  so.gptq_rounding = gptq_rounding;
  so.calib.n_samples = job.calib.samples;
  so.calib.n_ctx = job.calib.ctx;
  so.calib.seed = job.calib.seed;
  so.calib.n_threads = job.threads;
  so.fast_kernels = job.calib.fast_kernels;
  so.gptq = gguf_gptq_options(run);
  so.fp_targets = job.method.gptq.fp_targets;
  so.on_layer = [&run](uint32_t l, uint32_t n, double sec) {
    report_progress(run.observer(), {Stage::Block, l + 1u, n, "", sec});
  };
  so.learn = learn;
  so.sparsity = q.sparsity;
  so.prune = q.prune;
  const auto t0 = std::chrono::steady_clock::now();
  const uint32_t n_layer = m.config.n_layer;
  so.on_learn_step = [&run, t0, n_layer](uint32_t l, int step, int steps, double loss) {
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    report_progress(run.observer(),
                    {Stage::Train, size_t(l) * steps + step, size_t(n_layer) * steps,
                     fmt::format("block {} loss {:.3g}", l, loss), sec});
  };
  // The file's layout is planned and its header written first; each block's tensors go in
  // as the driver finishes them, so no quantized tensor waits in memory for the end.
  q.method = method_label(run, so);
  if (dist::is_distributed())  // the driver shares every block; rank 0 writes the file
    q.owner.assign(m.tensors.size(), 0);
  GgufQuantizeWriter writer(m, job.output, q);
  std::map<std::string, DType> types;
  for (const TensorPlan& p : writer.plan()) types[p.name] = p.type;
  so.on_done = [&writer](const std::string& name, const PrecomputedTensor& t) {
    writer.put(name, t);
  };
  so.checkpoint_dir = job.output + ".lowbit-checkpoint";
  so.resume = job.resume;
  so.fingerprint = run.checkpoint_fingerprint(fmt::format(
      "{}|{}", q.method, q.sparsity.active() ? sparsity_label(q.prune, q.sparsity) : ""));
  SequentialResult res;
  try {
    res = quantize_sequential(m, run.calibration_tokens(), types, so);
  } catch (const Error& e) {  // an interrupted run keeps its finished blocks for --resume
    if (e.kind() != ErrorKind::Cancelled ||
        !std::filesystem::exists(so.checkpoint_dir + "/state.bin"))
      throw;
    throw Error(ErrorKind::Cancelled,
                fmt::format("{}; the finished blocks are kept in {}: the same command with "
                            "--resume continues",
                            e.what(), so.checkpoint_dir));
  }
  QuantizeReport r = writer.finish();
  std::error_code ec;
  if (dist::is_root()) std::filesystem::remove_all(so.checkpoint_dir, ec);  // the file is complete
  r.activation_bytes = res.activation_bytes;
  r.awq_alpha = res.awq_alpha;
  r.awq_input_spread = res.awq_input_spread;
  r.learned = res.learned;
  return r;
}

}  // namespace lowbit::pipeline

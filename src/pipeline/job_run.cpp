#include "job_run.h"

#include <fmt/format.h>

#include <chrono>
#include <filesystem>
#include <memory>

#include "core/parallel.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/lowrank.h"
#include "lowbit/rotation.h"
#include "lowbit/sparsity.h"
#include "lowbit/structured_prune.h"
#include "lowbit/tokenizer.h"

namespace lowbit {

const char* stage_name(Stage s) {
  switch (s) {
    case Stage::Calibrate:
      return "calibrate";
    case Stage::Sensitivity:
      return "sensitivity";
    case Stage::Block:
      return "block";
    case Stage::Tensor:
      return "tensor";
    case Stage::Perplexity:
      return "perplexity";
    case Stage::Train:
      return "train";
  }
  return "?";
}

void report_progress(const Observer& observer, const Progress& p) {
  if (observer && !observer(p))
    fail(ErrorKind::Cancelled, "cancelled during {} {}/{}", stage_name(p.stage), p.done, p.total);
}

namespace pipeline {

JobRun::JobRun(const Model& m, const QuantizeJob& job, const Observer& observer)
    : m_(m),
      job_(job),
      observer_(observer),
      method_(resolved_method(job)),
      threads_(resolve_threads(job.threads)) {}

std::vector<int32_t> JobRun::calibration_tokens() const {
  return Tokenizer::create(m_.vocab, m_.source)->encode(read_text_file(job_.calib.text), false);
}

CalibrationStats JobRun::collect_statistics(bool hessian) const {
  CalibrationOptions o;
  o.n_samples = job_.calib.samples;
  o.n_ctx = job_.calib.ctx;
  o.seed = job_.calib.seed;
  o.n_threads = threads_;
  o.hessian = hessian;
  o.on_every_rank = true;  // each rank quantizes its own tensors with them
  o.on_window = [this](size_t i, size_t n) {
    report_progress(observer_, {Stage::Calibrate, i, n});
  };
  return collect_calibration_stats(m_, job_.calib.text, o);
}

SparsityPattern JobRun::sparsity() const {
  SparsityPattern p = job_.sparsity;
  if (p.owl_lambda <= 0) return p;
  const CalibrationStats stats = job_.calib.stats.empty()
                                     ? collect_statistics(false)
                                     : read_calibration_stats(job_.calib.stats);
  p.block_ratios = owl_block_ratios(m_, p, importance_lookup(stats));
  return p;
}

CalibrationStats JobRun::hessian_statistics(const std::string& what,
                                            const WeightFilter& wanted) const {
  if (job_.calib.stats.empty()) {
    if (job_.calib.text.empty())
      fail(ErrorKind::Argument,
           "{} needs calibration text, or statistics saved with their Hessians", what);
    return collect_statistics(true);
  }
  const std::string& path = job_.calib.stats;
  CalibrationStats s = read_calibration_stats(path, wanted);
  for (const TensorView& t : m_.tensors) {
    auto it = s.by_weight.find(t.name);
    if (it == s.by_weight.end() || (wanted && !wanted(t.name))) continue;
    if (it->second.xtx.empty())
      fail(ErrorKind::Argument,
           "{}: {} needs the Hessian of '{}', which this file lacks (calibrate with Hessians)",
           path, what, t.name);
    if (it->second.sum_sq.size() != t.row_len())
      fail(ErrorKind::Argument, "{}: statistics of '{}' have {} columns, the model's tensor has {}",
           path, t.name, it->second.sum_sq.size(), t.row_len());
  }
  return s;
}

namespace {

// Size and modification time of a statistics file.
std::string file_stamp(const std::string& path) {
  std::error_code ec;
  if (path.empty() || !std::filesystem::exists(path, ec)) return "";
  const auto size = std::filesystem::file_size(path, ec);
  const auto time = std::filesystem::last_write_time(path, ec).time_since_epoch().count();
  return fmt::format("{}@{}", size, time);
}

}  // namespace

std::string JobRun::checkpoint_fingerprint(const std::string& rest) const {
  const QuantizeJob& j = job_;
  return fmt::format("{}|{}|{}|{}|{}|{}|{}|{}|{}|{}{}|{}|{}", j.model, j.teacher, j.tokenizer,
                     j.calib.text, j.calib.stats, file_stamp(j.calib.stats), j.calib.samples,
                     j.calib.ctx, j.calib.seed, rotation_label(j.rotation),
                     lowrank_label(j.lowrank, j.lowrank_alpha),
                     structured_label(m_.config, j.structured), rest);
}

DistillOptions JobRun::distill_options(const std::string& label) const {
  DistillOptions d = job_.distill;
  d.n_ctx = job_.calib.ctx;
  d.n_windows = job_.calib.samples;
  d.seed = job_.calib.seed;
  d.n_threads = job_.threads;
  // Checkpoints beside the output, as the sequential methods keep theirs.
  d.checkpoint = job_.output + ".lowbit-checkpoint/distill.bin";
  d.resume = job_.resume;
  d.fingerprint = checkpoint_fingerprint(label);
  const auto t0 = std::chrono::steady_clock::now();
  const double tokens_per_step = double(resolved(d).batch) * d.n_ctx;
  auto first =
      std::make_shared<int>(-1);  // the first step of this run (a resumed one starts later)
  d.on_step = [observer = observer_, label, t0, tokens_per_step, first](int step, int steps,
                                                                        double loss) {
    if (*first < 0) *first = step - 1;
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double rate = sec > 0 ? (step - *first) * tokens_per_step / sec : 0;
    // A stop asked by the observer goes back to distill(), which saves the steps done.
    return !observer ||
           observer({Stage::Train, size_t(step), size_t(steps),
                     fmt::format("{} loss {:.4g}, {:.0f} tok/s", label, loss, rate), sec});
  };
  return d;
}

std::function<void(size_t, size_t, const TensorReport&)> JobRun::tensor_progress() const {
  return [this](size_t i, size_t n, const TensorReport& t) {
    report_progress(observer_, {Stage::Tensor, i + 1, n,
                                t.name + " " + (t.note.empty() ? dtype_name(t.type) : t.note)});
  };
}

AffineWriteOptions JobRun::affine_options(const std::string& method) const {
  AffineWriteOptions o;
  o.n_threads = threads_;
  o.on_tensor = tensor_progress();
  o.method = method;
  if (const auto* t = std::get_if<AffineTarget>(&job_.target)) o.format = t->format;
  if (const auto* t = std::get_if<W8A8Target>(&job_.target)) o.format = t->format;
  return o;
}

HessianLookup hessian_lookup(CalibrationStats&& stats) {
  auto h = std::make_shared<std::map<std::string, std::vector<double>>>();
  for (auto& [name, st] : stats.by_weight) {
    (*h)[name] = st.hessian();
    std::vector<double>().swap(st.xtx);
  }
  return [h](const std::string& name) -> const std::vector<double>* {
    auto it = h->find(name);
    return it == h->end() ? nullptr : &it->second;
  };
}

ImportanceLookup importance_lookup(const CalibrationStats& stats) {
  auto imp = std::make_shared<std::map<std::string, std::vector<float>>>();
  for (const auto& [name, st] : stats.by_weight) (*imp)[name] = st.importance();
  return [imp](const std::string& name) -> const std::vector<float>* {
    auto it = imp->find(name);
    return it == imp->end() ? nullptr : &it->second;
  };
}

}  // namespace pipeline
}  // namespace lowbit

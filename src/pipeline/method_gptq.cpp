// GPTQ (Frantar et al. 2023). On calibration text it runs block by block (sequential: each
// block's Hessians from the inputs the quantized blocks before it produce); on saved
// statistics every Hessian comes from the fp32 model at once (static). The affine layout
// always takes the saved or freshly measured Hessians.
#include <fmt/format.h>

#include <filesystem>
#include <memory>
#include <set>

#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "lowbit/sparsity.h"
#include "lowbit/topology.h"
#include "method.h"

namespace lowbit::pipeline {

GptqOptions gptq_options(const JobRun& run, bool act_order, double damp) {
  const GptqParams& p = run.job().method.gptq;
  GptqOptions g;
  g.act_order = p.act_order.value_or(act_order);
  g.damp = p.damp.value_or(damp);
  g.n_threads = run.job().threads;
  return g;
}

namespace {

constexpr double kGgufDamp = kGptqGgufDamp, kAffineDamp = kGptqAffineDamp;
constexpr bool kGgufActOrder = kGptqGgufActOrder, kAffineActOrder = kGptqAffineActOrder;

class GptqMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Gptq; }
  bool writes(TargetKind k) const override {
    return k == TargetKind::Gguf || k == TargetKind::Affine;
  }
  void check(const QuantizeJob& job) const override {
    if (job.calib.text.empty() && job.calib.stats.empty())
      fail(ErrorKind::Argument,
           "method gptq needs calibration text (statistics of every layer input), or statistics "
           "saved with their Hessians");
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    if (run.job().calib.stats.empty()) return run_sequential(run, q, false, true);
    // Static GPTQ: every layer's H from the fp32 model, saved once. Over MPI ranks, each
    // reads the Hessians of the tensors it quantizes.
    WeightFilter mine;
    if (dist::is_distributed()) {  // the writer takes the same ranks (q.owner)
      const Model& m = run.model();
      q.owner = spread_tensors(m, true, dist::world().size());
      auto names = std::make_shared<std::set<std::string>>();
      for (size_t i = 0; i < q.owner.size(); ++i)
        if (q.owner[i] == dist::world().rank()) names->insert(m.tensors[i].name);
      mine = [names](const std::string& name) { return names->count(name) > 0; };
    }
    CalibrationStats stats = run.hessian_statistics("method gptq", mine);
    q.use_gptq = true;
    q.gptq = gptq_options(run, kGgufActOrder, kGgufDamp);
    q.method =
        fmt::format("gptq static stats={} calib={}x{} damp={} act_order={}",
                    std::filesystem::path(run.job().calib.stats).filename().string(),
                    stats.n_windows, stats.window_len, q.gptq.damp, q.gptq.act_order ? 1 : 0);
    q.hessian = hessian_lookup(std::move(stats));
    return quantize_model_gguf(run.model(), run.job().output, q);
  }
  QuantizeReport affine(JobRun& run, const AffineSpec& spec) const override {
    const GptqOptions g = gptq_options(run, kAffineActOrder, kAffineDamp);
    auto stats = std::make_shared<CalibrationStats>(run.hessian_statistics("method gptq"));
    const SparsityPattern sparsity = run.sparsity();
    const PruneMethod prune = resolved_prune_method(run.job());
    AffineQuantizer gptq = [stats, spec, g, sparsity, prune](const std::string& name,
                                                             const std::vector<float>& x,
                                                             uint64_t rows, uint64_t cols) {
      auto it = stats->by_weight.find(name);
      if (it == stats->by_weight.end())
        fail(ErrorKind::Argument, "GPTQ: no calibration statistics for '{}'", name);
      const std::vector<double> h = it->second.hessian();
      GptqOptions o = g;
      std::vector<uint8_t> mask;  // sparsegpt sets o.prune; magnitude and wanda give a mask
      if (sparsity.active() && is_block_linear(name))
        mask = prepare_pruning(name, prune, sparsity, x, rows, cols, nullptr, &h, o);
      o.mask = mask.empty() ? nullptr : mask.data();
      return gptq_quantize_affine(x.data(), rows, cols, h, spec, o);
    };
    AffineWriteOptions o = run.affine_options("gptq");
    o.quantizer = gptq;
    return write_affine_model(run.model(), run.job().output, spec, o);
  }
};

}  // namespace

const QuantMethod& gptq_method() {
  static const GptqMethod m;
  return m;
}

// AWQ's and AWQ+GPTQ's GGUF rounding uses GPTQ's GGUF defaults too.
GptqOptions gguf_gptq_options(const JobRun& run) {
  return gptq_options(run, kGgufActOrder, kGgufDamp);
}

}  // namespace lowbit::pipeline

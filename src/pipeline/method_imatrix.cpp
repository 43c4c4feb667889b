// Round to nearest weighted by an importance matrix: each input column's mean x² (llama.cpp's
// imatrix), from saved statistics or measured on the calibration text.
#include <memory>

#include "lowbit/error.h"
#include "method.h"

namespace lowbit::pipeline {
namespace {

class ImatrixMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Imatrix; }
  bool writes(TargetKind k) const override { return k == TargetKind::Gguf; }
  void check(const QuantizeJob& job) const override {
    if (job.calib.text.empty() && job.calib.stats.empty())
      fail(ErrorKind::Argument,
           "method imatrix needs statistics (an imatrix file) or calibration text");
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    const Model& m = run.model();
    const std::string& stats_path = run.job().calib.stats;
    const CalibrationStats stats =
        stats_path.empty() ? run.collect_statistics(false) : read_calibration_stats(stats_path);
    auto importance = std::make_shared<std::map<std::string, std::vector<float>>>();
    for (const auto& [name, st] : stats.by_weight)
      if (m.find(name)) (*importance)[name] = st.importance();
    if (importance->empty())
      fail(ErrorKind::Argument, "{}: the statistics name none of this model's weights",
           stats_path.empty() ? run.job().calib.text : stats_path);
    q.importance = [importance](const std::string& name) -> const std::vector<float>* {
      auto it = importance->find(name);
      return it == importance->end() ? nullptr : &it->second;
    };
    return quantize_model_gguf(m, run.job().output, q);
  }
};

}  // namespace

const QuantMethod& imatrix_method() {
  static const ImatrixMethod m;
  return m;
}

}  // namespace lowbit::pipeline

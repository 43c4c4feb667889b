// Round to nearest: each target's own search with no calibration (a W8A8 target with static
// activation scales still calibrates them).
#include "lowbit/affine.h"
#include "lowbit/fp8.h"
#include "lowbit/sparsity.h"
#include "lowbit/topology.h"
#include "method.h"

namespace lowbit::pipeline {
namespace {

class RtnMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::Rtn; }
  bool writes(TargetKind k) const override {
    return k == TargetKind::Gguf || k == TargetKind::Affine || k == TargetKind::W8A8 ||
           k == TargetKind::Fp8;
  }
  QuantizeReport gguf(JobRun& run, QuantizeOptions q) const override {
    return quantize_model_gguf(run.model(), run.job().output, q);
  }
  QuantizeReport affine(JobRun& run, const AffineSpec& spec) const override {
    AffineQuantizer pruned;  // magnitude: the block linears' smallest weights zeroed, then rounded
    if (run.job().sparsity.active())
      pruned = [p = run.sparsity(), spec](const std::string& name, const std::vector<float>& x,
                                          uint64_t rows, uint64_t cols) {
        if (!is_block_linear(name)) return affine_quantize(x.data(), rows, cols, spec);
        const SparsityPattern q = pattern_for(p, name);
        const std::vector<float> w =
            apply_mask(x, prune_mask(PruneMethod::Magnitude, x.data(), rows, cols, nullptr, q));
        return affine_quantize(w.data(), rows, cols, spec);
      };
    AffineWriteOptions o = run.affine_options("rtn");
    o.quantizer = pruned;
    return write_affine_model(run.model(), run.job().output, spec, o);
  }
  QuantizeReport w8a8(JobRun& run, const W8A8Target& t) const override {
    return write_w8a8(run, t, false);
  }
  QuantizeReport fp8(JobRun& run, const Fp8Target& t) const override {
    return write_fp8_model(run.model(), run.job().output, t.per_tensor, run.affine_options("rtn"));
  }
};

}  // namespace

const QuantMethod& rtn_method() {
  static const RtnMethod m;
  return m;
}

}  // namespace lowbit::pipeline

// SmoothQuant (Xiao et al. 2023): per input channel, s_j = max|X_j|^α / max|W_j|^(1-α) moves
// the activations' outliers into the weights (X / s, W · s, the same product), folded exactly
// into the preceding norm or linear; then int8 weights and int8 activations.
#include <fmt/format.h>

#include "lowbit/error.h"
#include "lowbit/smoothquant.h"
#include "method.h"

namespace lowbit {

AffineSpec W8A8Target::weight_spec() const {
  AffineSpec spec;
  spec.bits = 8;
  spec.group = 0;
  spec.symmetric = true;
  spec.range = range;
  spec.percentile = percentile;
  return spec;
}

namespace pipeline {

QuantizeReport write_w8a8(JobRun& run, const W8A8Target& t, bool smooth) {
  const QuantizeJob& job = run.job();
  const AffineSpec spec = t.weight_spec();
  const std::string scheme = t.static_activations ? "static" : "per-token";
  if (!smooth && !t.static_activations) {  // plain W8A8 with per-token scales: nothing to calibrate
    W8A8Activations acts;
    AffineWriteOptions o = run.affine_options("w8a8 per-token");
    o.int8_activations = &acts;
    return write_affine_model(run.model(), job.output, spec, o);
  }
  SmoothQuantOptions so;
  so.alpha = job.method.smoothquant.alpha;
  so.smooth = smooth;
  so.static_acts = t.static_activations;
  const SmoothQuantResult sq = smooth_model(run.model(), run.collect_statistics(false), so);
  const std::string label =
      smooth ? fmt::format("smoothquant alpha={} {}", so.alpha, scheme) : "w8a8 " + scheme;
  AffineWriteOptions o = run.affine_options(label);
  o.int8_activations = &sq.acts;
  QuantizeReport r = write_affine_model(sq.model, job.output, spec, o);
  if (smooth)
    for (const auto& [name, sp] : sq.spikiness)
      r.spikiness_before = std::max(r.spikiness_before, sp.first),
      r.spikiness_after = std::max(r.spikiness_after, sp.second);
  return r;
}

namespace {

class SmoothQuantMethod : public QuantMethod {
 public:
  Method kind() const override { return Method::SmoothQuant; }
  bool writes(TargetKind k) const override { return k == TargetKind::W8A8; }
  void check(const QuantizeJob& job) const override {
    const double a = job.method.smoothquant.alpha;
    if (!(a >= 0 && a <= 1))
      fail(ErrorKind::Argument, "smoothquant alpha {}: must be in [0, 1]", a);
  }
  QuantizeReport w8a8(JobRun& run, const W8A8Target& t) const override {
    return write_w8a8(run, t, true);
  }
};

}  // namespace

const QuantMethod& smoothquant_method() {
  static const SmoothQuantMethod m;
  return m;
}

}  // namespace pipeline
}  // namespace lowbit

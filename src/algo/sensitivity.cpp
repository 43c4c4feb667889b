// Per-tensor sensitivity for the budget solver (lowbit/mixed.h): the KL divergence the
// model gains on a few calibration windows when one tensor alone is rounded to a type,
// measured by swapping that tensor inside one fp32 engine, plus the Hessian proxy.
#include <cmath>

#include "core/parallel.h"
#include "lowbit/calibration.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"
#include "lowbit/mixed.h"
#include "lowbit/quant.h"
#include "quant/tensor_errors.h"

namespace lowbit {
namespace {

// Log-probabilities of every position of every window under the engine's current weights.
class KldProbe {
 public:
  KldProbe(Engine& e, std::vector<std::vector<int32_t>> windows)
      : e_(e), windows_(std::move(windows)) {
    for (const auto& w : windows_) base_.push_back(log_probs(w));
  }
  // Mean KL(base || now) over all positions.
  double kld() {
    double sum = 0;
    size_t n = 0;
    for (size_t i = 0; i < windows_.size(); ++i) {
      const std::vector<float> lp = log_probs(windows_[i]);
      const size_t V = e_.model().config.n_vocab, T = lp.size() / V;
      for (size_t t = 0; t < T; ++t) {
        double kl = 0;
        for (size_t v = 0; v < V; ++v) {
          const double b = base_[i][t * V + v];
          kl += std::exp(b) * (b - lp[t * V + v]);
        }
        sum += std::max(0.0, kl);
        ++n;
      }
    }
    return n ? sum / n : 0;
  }

 private:
  std::vector<float> log_probs(const std::vector<int32_t>& w) {
    std::vector<float> logits;
    e_.reset();
    e_.eval(w.data(), w.size(), logits, true);
    const size_t V = e_.model().config.n_vocab;
    for (size_t t = 0; t < w.size(); ++t) {
      float* row = &logits[t * V];
      const float lse = static_cast<float>(log_sum_exp(row, V));
      for (size_t v = 0; v < V; ++v) row[v] -= lse;
    }
    return logits;
  }

  Engine& e_;
  std::vector<std::vector<int32_t>> windows_;
  std::vector<std::vector<float>> base_;  // [windows][positions * vocab]
};

}  // namespace

std::vector<MixTensor> mix_options(const Model& m, const QuantizePlanOptions& po,
                                   const std::vector<DType>& candidates) {
  std::vector<MixTensor> out;
  for (const TensorPlan& p : plan_quantization(m, po)) {
    const TensorView& t = m.tensor(p.name);
    MixTensor mt{t.name, t.n_values(), {}};
    auto bytes_of = [&](DType type, uint64_t* b) {
      return tensor_bytes(type, t.row_len(), t.n_values(), b);
    };
    const bool fixed = t.shape.size() < 2 || p.reason == PlanReason::Chosen;
    for (DType type : fixed ? std::vector<DType>{p.type} : candidates) {
      MixOption opt{type};
      if (bytes_of(type, &opt.bytes))
        mt.options.push_back(opt);  // false: the block does not fit the rows
      else if (fixed)
        fail(ErrorKind::Argument, "tensor '{}': cannot store as {}", t.name, dtype_name(type));
    }
    if (mt.options.empty())
      fail(ErrorKind::Argument, "tensor '{}': no candidate type fits rows of {}", t.name,
           t.row_len());
    out.push_back(std::move(mt));
  }
  return out;
}

std::vector<MixTensor> measure_sensitivity(
    const Model& m, const std::vector<int32_t>& tokens, const QuantizePlanOptions& po,
    const std::function<const std::vector<double>*(const std::string&)>& hessian,
    const SensitivityOptions& o) {
  const std::vector<TensorPlan> plan = plan_quantization(m, po);
  const int threads = resolve_threads(o.n_threads);
  Engine engine(m, {threads, static_cast<uint32_t>(o.n_ctx)});
  KldProbe probe(engine, sample_windows(tokens, o.n_windows, o.n_ctx, o.seed, m.vocab.bos));

  size_t steps = 0, done = 0;
  for (const TensorPlan& p : plan)
    if (m.tensor(p.name).shape.size() >= 2 && p.reason != PlanReason::Chosen)
      steps += o.mode == SensitivityMode::Measured ? o.candidates.size() : 1;

  std::vector<MixTensor> out = mix_options(m, po, o.candidates);
  for (size_t i = 0; i < plan.size(); ++i) {
    const TensorPlan& p = plan[i];
    const TensorView& t = m.tensor(p.name);
    MixTensor& mt = out[i];
    if (t.shape.size() < 2 || p.reason == PlanReason::Chosen) continue;  // kept as planned
    const std::vector<float> x = to_f32(t);
    // empty: no Hessian for this tensor
    const std::vector<float> h = hessian_f32(hessian ? hessian(t.name) : nullptr, t.row_len());
    std::vector<std::vector<uint8_t>> quantized;
    for (MixOption& opt : mt.options) {
      std::vector<uint8_t> q(opt.bytes);
      quantize_rows(opt.type, x.data(), t.shape[0], t.row_len(), nullptr, q.data());
      const TensorErrors e =
          measure_errors(opt.type, x, t.row_len(), q, h.empty() ? nullptr : &h, threads);
      opt.proxy = h.empty() ? e.weight * e.weight : e.output * e.output;
      quantized.push_back(std::move(q));
    }
    auto measure = [&](size_t k) {
      const TensorView v = view_of_bytes(t, mt.options[k].type, quantized[k]);
      engine.replace_weight(t.name, &v);
      mt.options[k].measured = probe.kld();
      engine.replace_weight(t.name, &t);
      if (o.on_step) o.on_step(++done, steps);
    };
    if (o.mode == SensitivityMode::Measured) {
      for (size_t k = 0; k < mt.options.size(); ++k) {
        measure(k);
        mt.options[k].loss = mt.options[k].measured;
      }
    } else {  // one measurement (the reference type, or the candidate nearest it in bits per
              // weight) scales the proxy
      size_t ref = 0;
      const double ref_bits = bits_per_weight(o.reference);
      auto off = [&](size_t k) {
        return mt.options[k].type == o.reference
                   ? -1.0
                   : std::fabs(bits_per_weight(mt.options[k].type) - ref_bits);
      };
      for (size_t k = 1; k < mt.options.size(); ++k)
        if (off(k) < off(ref)) ref = k;
      measure(ref);
      const double scale =
          mt.options[ref].proxy > 0 ? mt.options[ref].measured / mt.options[ref].proxy : 0.0;
      for (MixOption& opt : mt.options) opt.loss = scale * opt.proxy;
      mt.options[ref].loss = mt.options[ref].measured;
    }
  }
  return out;
}

}  // namespace lowbit

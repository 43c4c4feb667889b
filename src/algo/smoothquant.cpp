// SmoothQuant scales and their folding into the model (lowbit/smoothquant.h).
#include "lowbit/smoothquant.h"

#include <algorithm>
#include <cmath>

#include "lowbit/awq.h"
#include "lowbit/error.h"
#include "lowbit/topology.h"
#include "weight_edits.h"

namespace lowbit {
namespace {

const std::vector<float>& input_absmax(const CalibrationStats& st, const std::string& weight,
                                       uint64_t cols) {
  auto it = st.by_weight.find(weight);
  if (it == st.by_weight.end() || it->second.absmax.empty())
    fail(ErrorKind::Argument,
         "SmoothQuant: the statistics have no activation maxima for the input of '{}' "
         "(calibration on text records them; imatrix files carry none)",
         weight);
  if (it->second.absmax.size() != cols)
    fail(ErrorKind::Argument, "SmoothQuant: statistics for '{}' have {} channels, the weight {}",
         weight, it->second.absmax.size(), cols);
  return it->second.absmax;
}

// max over the rows of |w[r, j]|, folded into acc (one value per column).
void column_absmax(const std::vector<float>& w, uint64_t rows, uint64_t cols,
                   std::vector<float>& acc) {
  acc.resize(cols, 0.0f);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t j = 0; j < cols; ++j) acc[j] = std::max(acc[j], std::fabs(w[r * cols + j]));
}

double spikiness(const std::vector<float>& act, const std::vector<float>& s) {
  double mx = 0, sum = 0;
  for (size_t j = 0; j < act.size(); ++j) {
    const double v = act[j] / s[j];
    mx = std::max(mx, v);
    sum += v;
  }
  return sum > 0 ? mx / (sum / act.size()) : 0.0;
}

}  // namespace

std::vector<float> smoothing_scales(const std::vector<float>& act_absmax,
                                    const std::vector<float>& w_absmax, double alpha) {
  if (act_absmax.size() != w_absmax.size())
    fail(ErrorKind::Argument, "smoothing_scales: {} activation maxima but {} weight maxima",
         act_absmax.size(), w_absmax.size());
  std::vector<float> s(act_absmax.size(), 1.0f);
  for (size_t j = 0; j < s.size(); ++j)
    if (act_absmax[j] > 0 && w_absmax[j] > 0)
      s[j] = static_cast<float>(std::pow(double{act_absmax[j]}, alpha) /
                                std::pow(double{w_absmax[j]}, 1 - alpha));
  return s;
}

SmoothQuantResult smooth_model(const Model& m, const CalibrationStats& stats,
                               const SmoothQuantOptions& o) {
  if (!(o.alpha >= 0 && o.alpha <= 1))
    fail(ErrorKind::Argument, "SmoothQuant: alpha must be in [0, 1], got {}", o.alpha);
  const ModelConfig& c = m.config;
  const uint64_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, hd = c.head_dim,
                 group = c.n_head / c.n_head_kv;
  SmoothQuantResult r;
  WeightEdits w{m, {}};
  std::map<std::string, std::vector<float>> input_scale;  // weight -> s of its input
  auto ones = [](uint64_t n) { return std::vector<float>(n, 1.0f); };
  auto rows_of = [&](const std::string& name) { return m.tensor(name).shape[0]; };
  // Scales of one input: columns of every member multiplied by s; the caller folds 1/s.
  auto smooth_input = [&](const std::vector<std::string>& members, const std::vector<float>& act,
                          const std::vector<float>& s) {
    for (const std::string& name : members) {
      awq_scale_columns(w.get(name), rows_of(name), act.size(), s);
      input_scale[name] = s;
    }
    r.spikiness[members[0]] = {spikiness(act, ones(act.size())), spikiness(act, s)};
  };
  auto scales_for = [&](const std::vector<std::string>& members, const std::vector<float>& act) {
    if (!o.smooth) return ones(act.size());
    std::vector<float> wmax;
    for (const std::string& name : members)
      column_absmax(w.get(name), rows_of(name), act.size(), wmax);
    return smoothing_scales(act, wmax, o.alpha);
  };
  // Per block (lowbit/topology.h): first the inputs made by another linear's rows, whose 1/s
  // goes into those rows (attn_v, ffn_up) before the norm groups containing them take their
  // maxima; then the inputs made by an RMSNorm.
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::vector<InputGroup> groups = block_input_groups(c, l);
    for (const InputGroup& g : groups) {
      if (g.source == InputSource::Rows) {
        const auto& act = input_absmax(stats, g.weights[0], F);
        const auto s = scales_for(g.weights, act);
        smooth_input(g.weights, act, s);
        awq_unscale_rows(w.get(g.producer), F, D, s);
      } else if (g.source == InputSource::KvHeadRows) {  // heads sharing a KV head share one scale
                                                         // per dimension
        const std::string& out = g.weights[0];
        const auto& act = input_absmax(stats, out, Q);
        std::vector<float> act_kv(KV, 0.0f), w_kv(KV, 0.0f), wmax;
        column_absmax(w.get(out), D, Q, wmax);
        for (uint64_t h = 0; h < c.n_head; ++h)
          for (uint64_t d = 0; d < hd; ++d) {
            const uint64_t kv = (h / group) * hd + d;
            act_kv[kv] = std::max(act_kv[kv], act[h * hd + d]);
            w_kv[kv] = std::max(w_kv[kv], wmax[h * hd + d]);
          }
        const auto s_kv = o.smooth ? smoothing_scales(act_kv, w_kv, o.alpha) : ones(KV);
        std::vector<float> sq(Q);
        for (uint64_t h = 0; h < c.n_head; ++h)
          for (uint64_t d = 0; d < hd; ++d) sq[h * hd + d] = s_kv[(h / group) * hd + d];
        smooth_input({out}, act, sq);
        awq_unscale_rows(w.get(g.producer), KV, D, s_kv);
        if (!g.producer_bias.empty()) awq_unscale_rows(w.get(g.producer_bias), KV, 1, s_kv);
      }
    }
    for (const InputGroup& g : groups)
      if (g.source == InputSource::Norm) {
        const auto& act = input_absmax(stats, g.weights[0], D);
        const auto s = scales_for(g.weights, act);
        smooth_input(g.weights, act, s);
        awq_unscale_norm(w.get(g.producer), s);
      }
  }
  // Static activation scales: the largest smoothed input value seen, over 127.
  r.acts.static_scales = o.static_acts;
  if (o.static_acts)
    for (const auto& [name, s] : input_scale) {
      const auto& act = stats.by_weight.at(name).absmax;
      float mx = 0;
      for (size_t j = 0; j < act.size(); ++j) mx = std::max(mx, act[j] / s[j]);
      r.acts.input_scales[name] = mx > 0 ? mx / 127.0f : 1.0f;
    }
  r.model = std::move(w).commit();
  return r;
}

}  // namespace lowbit

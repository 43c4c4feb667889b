// AWQ scored by the block output (awq_block.h).
#include "awq_block.h"

#include <algorithm>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "quant/block_codecs.h"

namespace lowbit {

AwqBlockSearch::AwqBlockSearch(Engine& engine, const Model& m, uint32_t layer,
                               const std::vector<std::vector<float>>& inputs,
                               const std::vector<std::vector<float>>& targets, size_t n_tokens,
                               int n_threads)
    : engine_(engine),
      model_(m),
      layer_(layer),
      inputs_(inputs),
      targets_(targets),
      n_tokens_(n_tokens),
      n_threads_(n_threads) {
  if (targets.empty() || inputs.size() < targets.size())
    fail(ErrorKind::Argument, "AWQ block search: {} input windows and {} targets", inputs.size(),
         targets.size());
}

void AwqBlockSearch::install(const InputGroup& g,
                             const std::map<std::string, std::vector<float>>& w,
                             const std::map<std::string, DType>& types, const std::vector<float>& s,
                             Bytes& out) {
  auto put = [&](const std::string& name, const std::vector<float>& values) {
    const TensorView& src = model_.tensor(name);
    const DType type = types.at(name);
    std::vector<uint8_t>& bytes = out[name];
    bytes.resize(src.shape[0] * src.row_len() / traits(type).block_size * traits(type).type_size);
    quant::quantize_rows(type, values.data(), src.shape[0], src.row_len(), nullptr, false,
                         n_threads_, bytes.data());
    views_[name] = view_of_bytes(src, type, bytes);
    engine_.replace_weight(name, &views_[name]);
  };
  for (const std::string& name : g.weights) {  // W·diag(s)
    const TensorView& src = model_.tensor(name);
    std::vector<float> ws = w.at(name);
    awq_scale_columns(ws, src.shape[0], src.row_len(), s);
    put(name, ws);
  }
  if (g.source == InputSource::Rows) {  // diag(1/s)·W_producer
    const TensorView& src = model_.tensor(g.producer);
    std::vector<float> wp = w.at(g.producer);
    awq_unscale_rows(wp, src.shape[0], src.row_len(), s);
    put(g.producer, wp);
  }
  if (g.source == InputSource::Norm) {  // γ / s
    std::vector<float> gamma = to_f32(model_.tensor(g.producer));
    awq_unscale_norm(gamma, s);
    engine_.set_norm(g.producer, std::move(gamma));
  }
}

double AwqBlockSearch::block_error() {
  std::vector<float> x;
  double e = 0;
  for (size_t i = 0; i < targets_.size(); ++i) {
    x = inputs_[i];
    engine_.reset();
    engine_.forward_layer(layer_, x.data(), n_tokens_);
    for (size_t k = 0; k < x.size(); ++k) {
      const double d = static_cast<double>(x[k]) - targets_[i][k];
      e += d * d;
    }
  }
  return e;
}

AwqScales AwqBlockSearch::search(const InputGroup& g,
                                 const std::map<std::string, std::vector<float>>& w,
                                 const std::map<std::string, DType>& types,
                                 const std::vector<double>& mean_abs, int grid) {
  if (grid < 1)
    fail(ErrorKind::Argument, "AWQ: the alpha grid needs at least one step, got {}", grid);
  AwqScales best;
  Bytes trial;
  for (int k = 0; k <= grid; ++k) {
    const double alpha = static_cast<double>(k) / grid;
    std::vector<float> s = awq_scales_for(mean_abs, alpha);
    install(g, w, types, s, trial);
    const double e = block_error();
    if (k == 0) best.error_plain = e;
    if (k == 0 || e < best.error_scaled) {
      best.error_scaled = e;
      best.alpha = alpha;
      best.s = std::move(s);
    }
  }
  install(g, w, types, best.s,
          kept_);  // the winner stays in the engine while later groups are searched
  return best;
}

}  // namespace lowbit

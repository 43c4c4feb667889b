// The whole model's forward and backward pass (lowbit/model_grad.h), composed of the block
// passes of block_grad.cpp and the operations of block_ops.h.
#include "lowbit/model_grad.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "train/block_ops.h"

namespace lowbit::train {
namespace {

template <class Real>
std::vector<Real> converted(const std::vector<float>& v) {
  return std::vector<Real>(v.begin(), v.end());
}

template <class Real>
BlockWeights<Real> converted(const BlockWeights<float>& f) {
  BlockWeights<Real> w;
  auto& from = const_cast<BlockWeights<float>&>(f);  // linear() is not const; nothing changes
  for (int i = 0; i < 7; ++i) *w.linear(i) = converted<Real>(*from.linear(i));
  w.attn_norm = converted<Real>(f.attn_norm), w.ffn_norm = converted<Real>(f.ffn_norm);
  w.bq = converted<Real>(f.bq), w.bk = converted<Real>(f.bk), w.bv = converted<Real>(f.bv);
  w.q_norm = converted<Real>(f.q_norm), w.k_norm = converted<Real>(f.k_norm);
  w.act_range = f.act_range;
  return w;
}

// (name suffix, tensor) of a block's parameters, in BlockWeights' order; empty ones skipped.
template <class W, class V>
std::vector<std::pair<std::string, V*>> named(W& b) {
  std::vector<std::pair<std::string, V*>> out;
  for (int i = 0; i < 7; ++i)
    out.emplace_back(std::string(kLinearNames[i]) + ".weight", b.linear(i));
  const std::pair<const char*, V*> rest[] = {{"attn_norm.weight", &b.attn_norm},
                                             {"ffn_norm.weight", &b.ffn_norm},
                                             {"attn_q.bias", &b.bq},
                                             {"attn_k.bias", &b.bk},
                                             {"attn_v.bias", &b.bv},
                                             {"attn_q_norm.weight", &b.q_norm},
                                             {"attn_k_norm.weight", &b.k_norm}};
  for (const auto& [name, v] : rest)
    if (!v->empty()) out.emplace_back(name, v);
  return out;
}

}  // namespace

template <class Real>
void ModelWeights<Real>::zeros_like(const ModelWeights& like) {
  blocks.resize(like.blocks.size());
  for (size_t l = 0; l < blocks.size(); ++l) blocks[l].zeros_like(like.blocks[l]);
  output_norm.assign(like.output_norm.size(), Real(0));
}

template <class Real>
void ModelWeights<Real>::add(const ModelWeights& other) {
  std::vector<std::vector<Real>*> to = tensors(),
                                  from = const_cast<ModelWeights&>(other).tensors();  // (read)
  for (size_t k = 0; k < to.size(); ++k)
    for (size_t i = 0; i < to[k]->size(); ++i) (*to[k])[i] += (*from[k])[i];
}

template <class Real>
std::vector<std::vector<Real>*> ModelWeights<Real>::tensors() {
  std::vector<std::vector<Real>*> out;
  for (BlockWeights<Real>& b : blocks)
    for (auto& [name, v] : named<BlockWeights<Real>, std::vector<Real>>(b)) out.push_back(v);
  out.push_back(&output_norm);
  return out;
}

template <class Real>
size_t ModelWeights<Real>::count() const {
  size_t n = 0;
  for (std::vector<Real>* t : const_cast<ModelWeights*>(this)->tensors()) n += t->size();
  return n;
}

template <class Real>
ModelWeights<Real> model_weights(const Model& m) {
  ModelWeights<Real> w;
  const std::vector<float>& ranges = m.config.act_ranges;
  for (uint32_t l = 0; l < m.config.n_layer; ++l) {
    w.blocks.push_back(converted<Real>(block_weights(m, l)));
    if (ranges.size() == size_t(kActRangeSites) * m.config.n_layer)
      w.blocks.back().act_range.assign(ranges.begin() + l * kActRangeSites,
                                       ranges.begin() + (l + 1) * kActRangeSites);
  }
  w.output_norm = converted<Real>(to_f32(m.tensor("output_norm.weight")));
  return w;
}

Model with_weights(const Model& m, const ModelWeights<float>& w) {
  if (w.blocks.size() != m.config.n_layer)
    fail(ErrorKind::Argument, "{} blocks of weights for a model of {}", w.blocks.size(),
         m.config.n_layer);
  Model out = m;
  auto replace = [&](const std::string& name, const std::vector<float>& v) {
    auto it = std::find_if(out.tensors.begin(), out.tensors.end(),
                           [&](const TensorView& t) { return t.name == name; });
    if (it == out.tensors.end()) fail(ErrorKind::Argument, "the model has no tensor '{}'", name);
    TensorView& t = *it;
    if (t.n_values() != v.size())
      fail(ErrorKind::Argument, "'{}' has {} values, the trained weights {}", name, t.n_values(),
           v.size());
    auto bytes = std::make_shared<std::vector<uint8_t>>(v.size() * sizeof(float));
    std::copy_n(reinterpret_cast<const uint8_t*>(v.data()), bytes->size(), bytes->data());
    t = view_of_bytes(t, DType::F32, *bytes);
    out.storage.push_back(bytes);
  };
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    auto& b = const_cast<BlockWeights<float>&>(w.blocks[l]);  // (read only, as above)
    for (auto& [name, v] : named<BlockWeights<float>, std::vector<float>>(b))
      replace(prefix + name, *v);
  }
  replace("output_norm.weight", w.output_norm);
  if (std::all_of(w.blocks.begin(), w.blocks.end(), [](const BlockWeights<float>& b) {
        return b.act_range.size() == size_t(kActRangeSites);
      })) {
    out.config.act_ranges.clear();
    for (const BlockWeights<float>& b : w.blocks)
      out.config.act_ranges.insert(out.config.act_ranges.end(), b.act_range.begin(),
                                   b.act_range.end());
  }
  out.index();
  return out;
}

void fake_quantize(const Model& m, const std::map<std::string, DType>& types,
                   const ModelWeights<float>& latent, ModelWeights<float>& rounded, int n_threads,
                   const std::map<std::string, AffineSpec>& affine) {
  rounded = latent;
  for (size_t l = 0; l < rounded.blocks.size(); ++l) {
    const std::string prefix = "blk." + std::to_string(l) + ".";
    for (int i = 0; i < 7; ++i) {
      const std::string name = prefix + kLinearNames[i] + ".weight";
      std::vector<float>& w = *rounded.blocks[l].linear(i);
      const TensorView& t = m.tensor(name);
      if (const auto a = affine.find(name); a != affine.end()) {
        if (t.n_values() != w.size())
          fail(ErrorKind::Argument, "'{}': {} values for a tensor of {}", name, w.size(),
               t.n_values());
        const AffineTensor q = affine_quantize(w.data(), t.n_rows(), t.row_len(), a->second);
        affine_dequantize(q, t.n_rows(), t.row_len(), a->second, w.data());
        continue;
      }
      const auto it = types.find(name);
      if (it == types.end()) continue;
      uint64_t bytes = 0;
      if (t.n_values() != w.size() || !tensor_bytes(it->second, t.row_len(), w.size(), &bytes))
        fail(ErrorKind::Argument, "'{}': {} values cannot be rounded to {} in rows of {}", name,
             w.size(), dtype_name(it->second), t.row_len());
      std::vector<uint8_t> q(bytes);
      quantize_rows(it->second, w.data(), t.n_rows(), t.row_len(), nullptr, n_threads, q.data());
      dequantize_values(it->second, q.data(), w.size(), w.data());
    }
  }
}

template <class Real>
ModelPass<Real>::ModelPass(const Model& m, const ActivationRounding& rounding, bool scale_gradient)
    : shape_(block_shape(m)),
      vocab_(m.config.n_vocab),
      n_layer_(m.config.n_layer),
      norm_eps_(m.config.norm_eps) {
  check_rounding(rounding, m.config);
  shape_.rounding = rounding;
  shape_.scale_gradient = scale_gradient;
  embedding_ = converted<Real>(to_f32(m.tensor("token_embd.weight")));
  head_ =
      m.config.tied_embeddings ? embedding_ : converted<Real>(to_f32(m.tensor("output.weight")));
}

template <class Real>
void ModelPass<Real>::forward(const ModelWeights<Real>& w, const int32_t* tokens, size_t n,
                              std::vector<Real>& logits, std::vector<std::vector<Real>>& inputs,
                              std::vector<float>* seen) const {
  const size_t D = shape_.n_embd;
  std::vector<Real> x(n * D), y(n * D);
  for (size_t t = 0; t < n; ++t) {
    if (tokens[t] < 0 || uint32_t(tokens[t]) >= vocab_)
      fail(ErrorKind::Argument, "token {} at position {} is outside the vocabulary of {}",
           tokens[t], t, vocab_);
    std::copy_n(embedding_.begin() + size_t(tokens[t]) * D, D, x.begin() + t * D);
  }
  inputs.resize(n_layer_ + 1);
  if (seen) seen->assign(size_t(n_layer_) * kActRangeSites, 0.0f);
  BlockCache<Real> cache;
  for (uint32_t l = 0; l < n_layer_; ++l) {
    inputs[l] = x;
    block_forward(shape_, w.blocks[l], x.data(), n, y.data(), &cache);
    if (seen) std::copy(cache.seen.begin(), cache.seen.end(), seen->begin() + l * kActRangeSites);
    x.swap(y);
  }
  inputs[n_layer_] = x;
  std::vector<Real> h(n * D), r(n);
  rms_norm(x.data(), w.output_norm.data(), n, D, norm_eps_, h.data(), r.data());
  logits.resize(n * vocab_);
  linear(head_.data(), vocab_, D, h.data(), n, logits.data());
}

template <class Real>
void ModelPass<Real>::backward(const ModelWeights<Real>& w,
                               const std::vector<std::vector<Real>>& inputs, const Real* dlogits,
                               size_t n, ModelWeights<Real>& grad, EndGradients<Real>* ends) const {
  const size_t D = shape_.n_embd;
  const std::vector<Real>& last = inputs.at(n_layer_);
  std::vector<Real> h(n * D), r(n), dh(n * D), dx(n * D, Real(0)), dprev(n * D), y(n * D);
  rms_norm(last.data(), w.output_norm.data(), n, D, norm_eps_, h.data(), r.data());
  gemm<Real>(false, false, n, D, vocab_, 1, dlogits, vocab_, head_.data(), D, 0, dh.data(), D);
  if (ends) {  // headᵀ·∂L/∂head = headᵀ·dlogitsᵀ·h = dhᵀ·h, with dh = dlogits·head [n, D]
    ends->frame.resize(D * D, Real(0));
    gemm<Real>(true, false, D, D, n, 1, dh.data(), D, h.data(), D, 1, ends->frame.data(), D);
  }
  rms_norm_backward(last.data(), w.output_norm.data(), r.data(), n, D, dh.data(), dx.data(),
                    grad.output_norm.data());
  BlockCache<Real> cache;
  for (uint32_t l = n_layer_; l-- > 0;) {  // each block's activations made again
    block_forward(shape_, w.blocks[l], inputs[l].data(), n, y.data(), &cache);
    block_backward(shape_, w.blocks[l], cache, dx.data(), grad.blocks[l], dprev.data());
    dx.swap(dprev);
  }
  if (ends)  // Eᵀ·∂L/∂E = x₀ᵀ·dx: each position's input row is its token's embedding row
    gemm<Real>(true, false, D, D, n, 1, inputs[0].data(), D, dx.data(), D, 1, ends->frame.data(),
               D);
}

template <class Real>
double kd_loss(const Real* student, const float* teacher, size_t n, size_t vocab,
               double temperature, Real* dstudent) {
  const double tau = temperature;
  std::vector<double> ps, pt;
  double loss = 0;
  for (size_t t = 0; t < n; ++t) {
    log_softmax(student + t * vocab, vocab, tau, ps);
    log_softmax(teacher + t * vocab, vocab, tau, pt);
    for (size_t j = 0; j < vocab; ++j) {
      const double p_t = std::exp(pt[j]), p_s = std::exp(ps[j]);
      loss += p_t * (pt[j] - ps[j]);
      // ∂KL/∂z_s = (p_s − p_t)/τ; ·τ² and the mean over positions
      dstudent[t * vocab + j] = Real(tau * (p_s - p_t) / double(n));
    }
  }
  return loss / double(n);
}

template <class Real>
double ce_loss(const Real* student, const int32_t* tokens, size_t n, size_t vocab, double weight,
               Real* dstudent) {
  if (n < 2) return 0;
  double loss = 0;
  const double per_position = weight / double(n - 1);
  std::vector<double> logp;
  for (size_t t = 0; t + 1 < n; ++t) {
    log_softmax(student + t * vocab, vocab, 1.0, logp);
    const size_t next = size_t(tokens[t + 1]);
    loss -= logp[next];
    // ∂CE/∂z_j = softmax(z)_j − [j = next]
    for (size_t j = 0; j < vocab; ++j)
      dstudent[t * vocab + j] += Real(per_position * (std::exp(logp[j]) - (j == next ? 1.0 : 0.0)));
  }
  return loss / double(n - 1);
}

template struct ModelWeights<float>;
template struct ModelWeights<double>;
template ModelWeights<float> model_weights<float>(const Model&);
template ModelWeights<double> model_weights<double>(const Model&);
template class ModelPass<float>;
template class ModelPass<double>;
template double kd_loss<float>(const float*, const float*, size_t, size_t, double, float*);
template double kd_loss<double>(const double*, const float*, size_t, size_t, double, double*);
template double ce_loss<float>(const float*, const int32_t*, size_t, size_t, double, float*);
template double ce_loss<double>(const double*, const int32_t*, size_t, size_t, double, double*);

}  // namespace lowbit::train

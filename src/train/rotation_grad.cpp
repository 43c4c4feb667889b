// The frame gradient and the objective of learned rotations (train/rotation_grad.h).
#include "train/rotation_grad.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <type_traits>

#include "core/lapack.h"
#include "core/parallel.h"
#include "lowbit/error.h"
#include "lowbit/topology.h"
#include "train/block_ops.h"

namespace lowbit::train {
namespace {

template <class Real>
std::vector<double> widened(const std::vector<Real>& v) {
  return std::vector<double>(v.begin(), v.end());
}

}  // namespace

template <class Real>
FrameGradient frame_gradient(const ModelConfig& c, const ModelWeights<Real>& w,
                             const ModelWeights<Real>& grad, const EndGradients<Real>& ends) {
  const size_t D = c.n_embd, d = c.head_dim, Q = c.q_dim();
  if (ends.frame.size() != D * D)
    fail(ErrorKind::Argument, "the embedding's and head's frame gradient has {} values, not {}",
         ends.frame.size(), D * D);
  std::vector<Real> m = ends.frame;
  // readers W [rows, D]: Wᵀ·G; writers W [D, cols]: W·Gᵀ
  auto reader = [&](const std::vector<Real>& x, const std::vector<Real>& g) {
    gemm<Real>(true, false, D, D, x.size() / D, 1, x.data(), D, g.data(), D, 1, m.data(), D);
  };
  auto writer = [&](const std::vector<Real>& x, const std::vector<Real>& g) {
    const size_t cols = x.size() / D;
    gemm<Real>(false, true, D, D, cols, 1, x.data(), cols, g.data(), cols, 1, m.data(), D);
  };
  FrameGradient out;
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    auto& b = const_cast<BlockWeights<Real>&>(w.blocks[l]);  // linear() is not const
    auto& gb = const_cast<BlockWeights<Real>&>(grad.blocks[l]);
    for (const InputGroup& g : block_input_groups(c, l))
      if (g.source == InputSource::Norm)
        for (const std::string& name : g.weights)
          reader(*b.linear(linear_index(name)), *gb.linear(linear_index(name)));
    for (const std::string& name : block_residual_writers(l))
      writer(*b.linear(linear_index(name)), *gb.linear(linear_index(name)));
    std::vector<Real> h(d * d, Real(0));
    for (size_t kv = 0; kv < c.n_head_kv; ++kv) {  // rows of attn_v [kv_dim, D]: V_g·G_gᵀ
      gemm<Real>(false, true, d, d, D, 1, &b.wv[kv * d * D], D, &gb.wv[kv * d * D], D, 1, h.data(),
                 d);
      if (!b.bv.empty())
        for (size_t i = 0; i < d; ++i)
          for (size_t j = 0; j < d; ++j) h[i * d + j] += b.bv[kv * d + i] * gb.bv[kv * d + j];
    }
    for (size_t q = 0; q < c.n_head; ++q)  // columns of attn_output [D, Q]: O_hᵀ·G_h
      gemm<Real>(true, false, d, d, D, 1, &b.wo[q * d], Q, &gb.wo[q * d], Q, 1, h.data(), d);
    out.heads.push_back(widened(h));
  }
  out.residual = widened(m);
  return out;
}

template <class Real>
double rotation_loss(const Model& rotated, DType weights, const ActivationRounding& rounding,
                     const std::vector<std::vector<int32_t>>& windows,
                     const std::vector<std::vector<float>>& teacher, double ce_weight,
                     int n_threads, FrameGradient* grad) {
  if (teacher.size() != windows.size())
    fail(ErrorKind::Argument, "{} teacher outputs for {} windows", teacher.size(), windows.size());
  const ModelPass<Real> pass(rotated, rounding, /*scale_gradient=*/true);
  const ModelWeights<Real> w = model_weights<Real>(rotated);
  ModelWeights<Real> run;
  if (weights != DType::F32) {
    if constexpr (!std::is_same_v<Real, float>)
      fail(ErrorKind::Unsupported, "weights rounded to {} run in float passes only",
           dtype_name(weights));
    else {
      std::map<std::string, DType> types;
      for (const TensorView& t : rotated.tensors)
        if (is_block_linear(t.name)) types[t.name] = weights;
      fake_quantize(rotated, types, w, run, n_threads);
    }
  }
  const ModelWeights<Real>& ran = weights != DType::F32 ? run : w;
  const size_t B = windows.size(), V = pass.vocab();
  std::vector<double> losses(B);
  std::vector<ModelWeights<Real>> grads(grad ? B : 0);
  std::vector<EndGradients<Real>> ends(grad ? B : 0);
  parallel_for(B, n_threads, [&](uint64_t b0, uint64_t b1) {
    std::vector<Real> logits, dlogits;
    std::vector<std::vector<Real>> inputs;
    for (uint64_t b = b0; b < b1; ++b) {
      const std::vector<int32_t>& win = windows[b];
      if (teacher[b].size() != win.size() * V)
        fail(ErrorKind::Argument, "window {}: {} teacher logits for {} positions", b,
             teacher[b].size(), win.size());
      pass.forward(ran, win.data(), win.size(), logits, inputs);
      dlogits.resize(logits.size());
      losses[b] = kd_loss(logits.data(), teacher[b].data(), win.size(), V, 1.0, dlogits.data());
      if (ce_weight > 0)
        losses[b] += ce_weight *
                     ce_loss(logits.data(), win.data(), win.size(), V, ce_weight, dlogits.data());
      if (!grad) continue;
      grads[b].zeros_like(w);
      pass.backward(ran, inputs, dlogits.data(), win.size(), grads[b], &ends[b]);
    }
  });
  double loss = 0;
  for (double l : losses) loss += l / double(B);
  if (!grad) return loss;
  for (size_t b = 1; b < B; ++b) {  // summed in batch order, then the mean
    grads[0].add(grads[b]);
    std::transform(ends[0].frame.begin(), ends[0].frame.end(), ends[b].frame.begin(),
                   ends[0].frame.begin(), std::plus<Real>());
  }
  *grad = frame_gradient(rotated.config, w, grads[0], ends[0]);
  for (double& v : grad->residual) v /= double(B);
  for (std::vector<double>& h : grad->heads)
    for (double& v : h) v /= double(B);
  return loss;
}

std::vector<double> cayley(const std::vector<double>& s, size_t n, double a) {
  std::vector<double> lhs(n * n), rhs(n * n);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      const double e = (i == j ? 1.0 : 0.0), half = 0.5 * a * s[i * n + j];
      lhs[i * n + j] = e + half, rhs[i * n + j] = e - half;
    }
  // LAPACK reads column-major, i.e. the transposes: (I − a/2·S)·Xᵀ = I + a/2·S, whose
  // solution Xᵀ = (I − a/2·S)⁻¹(I + a/2·S) gives the same X (the factors commute).
  const int ni = static_cast<int>(n);
  std::vector<int> pivots(n);
  int info = 0;
  dgesv_(&ni, &ni, lhs.data(), &ni, pivots.data(), rhs.data(), &ni, &info);
  if (info != 0) fail(ErrorKind::Argument, "Cayley step: singular system (info {})", info);
  return rhs;
}

template FrameGradient frame_gradient<float>(const ModelConfig&, const ModelWeights<float>&,
                                             const ModelWeights<float>&,
                                             const EndGradients<float>&);
template FrameGradient frame_gradient<double>(const ModelConfig&, const ModelWeights<double>&,
                                              const ModelWeights<double>&,
                                              const EndGradients<double>&);
template double rotation_loss<float>(const Model&, DType, const ActivationRounding&,
                                     const std::vector<std::vector<int32_t>>&,
                                     const std::vector<std::vector<float>>&, double, int,
                                     FrameGradient*);
template double rotation_loss<double>(const Model&, DType, const ActivationRounding&,
                                      const std::vector<std::vector<int32_t>>&,
                                      const std::vector<std::vector<float>>&, double, int,
                                      FrameGradient*);

}  // namespace lowbit::train

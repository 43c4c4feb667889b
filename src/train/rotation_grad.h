// The gradient of a rotated model's loss with respect to one more rotation, at the identity:
// what a Cayley step on the orthogonal group needs (learn_rotation, lowbit/rotation.h).
//
// A model already rotated by R is moved by C = I + E on the right, as rotate_model moves a
// folded model: readers of the residual (embedding, head, q, k, v, gate, up) W → W·C, writers
// (attn_output, ffn_down) W → Cᵀ·W; per layer, attn_v's rows of each KV head → C_lᵀ·rows (its
// bias likewise) and attn_output's columns of each query head → columns·C_l. To first order
// the loss changes by ⟨residual, E⟩ + Σ_l ⟨heads[l], E_l⟩, so R·C with C = cayley(G − Gᵀ)
// descends. For an orthogonal C of an unrounded model the loss does not change: G − Gᵀ = 0.
#pragma once

#include <cstdint>
#include <vector>

#include "lowbit/engine.h"
#include "lowbit/model.h"
#include "lowbit/model_grad.h"

namespace lowbit::train {

struct FrameGradient {
  std::vector<double> residual;            // [n_embd, n_embd]
  std::vector<std::vector<double>> heads;  // per layer [head_dim, head_dim]
};

// The frame gradient from the parameters' gradients: `w` the unrounded weights the pass ran
// (rounded, straight through), `ends` the embedding's and head's part.
template <class Real>
FrameGradient frame_gradient(const ModelConfig& c, const ModelWeights<Real>& w,
                             const ModelWeights<Real>& grad, const EndGradients<Real>& ends);

// One batch of a learned rotation's objective: `rotated` (norms folded) runs with its block
// linears rounded to nearest in `weights` (F32: not rounded) and its activations as `rounding`
// says; the loss is the mean over `windows` of KL(teacher ‖ model) per position (`teacher`:
// logits [len, vocab] per window), plus ce_weight times the model's cross-entropy on the
// window's next tokens. With `grad`, the frame gradient of that mean, through the rounding
// and the per-token scales (BlockShape::scale_gradient).
template <class Real>
double rotation_loss(const Model& rotated, DType weights, const ActivationRounding& rounding,
                     const std::vector<std::vector<int32_t>>& windows,
                     const std::vector<std::vector<float>>& teacher, double ce_weight,
                     int n_threads, FrameGradient* grad);

// (I + a/2·S)⁻¹ (I − a/2·S) for a skew-symmetric S [n, n]: orthogonal, ≈ I − a·S.
std::vector<double> cayley(const std::vector<double>& s, size_t n, double a);

}  // namespace lowbit::train

// Forward and backward pass of a whole Llama-family model, for the methods that train
// against the model's output (distillation, lowbit/distill.h): the embedding rows, every
// block (lowbit/block_grad.h), the final RMSNorm and the head, in float or double.
//
// The embedding and the head stay fixed (a tied head is the embedding); the blocks and the
// final norm are trained. The forward pass keeps only each block's input [n, D]; the
// backward pass runs each block forward again to get its activations, so memory is the
// block inputs plus one block's activations, whatever the depth.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "lowbit/affine.h"
#include "lowbit/block_grad.h"
#include "lowbit/model.h"

namespace lowbit::train {

// The trainable parameters; also the shape of their gradients.
template <class Real>
struct ModelWeights {
  std::vector<BlockWeights<Real>> blocks;
  std::vector<Real> output_norm;  // [n_embd]

  void zeros_like(const ModelWeights& like);
  // Adds `other` (of the same shapes) tensor by tensor: gradients of a batch's windows summed.
  void add(const ModelWeights& other);
  // Every parameter tensor, in a fixed order (blocks' linears, norms, biases, then the final
  // norm): for optimisers and checkpoints.
  std::vector<std::vector<Real>*> tensors();
  size_t count() const;  // parameters in all
};

// m's blocks and final norm in Real (weights of any stored type, dequantized).
template <class Real>
ModelWeights<Real> model_weights(const Model& m);
// m with its blocks and final norm replaced by `w`, stored as F32 (the other tensors as they
// were); the blocks' act_range, when every block has one, becomes config.act_ranges.
// (model_weights fills act_range from config.act_ranges.)
Model with_weights(const Model& m, const ModelWeights<float>& w);

// What learned rotations need of the parts ModelPass keeps fixed, which a rotation moves too
// (E → E·C, head → head·C): Eᵀ·∂L/∂E + headᵀ·∂L/∂head [n_embd, n_embd], computed as
// x₀ᵀ·∂L/∂x₀ (the embedding rows the window used) + dhᵀ·h (the head's input and gradient),
// without the [vocab, n_embd] gradients themselves.
template <class Real>
struct EndGradients {
  std::vector<Real> frame;
};

// One model's fixed parts and shape, for passes over windows of tokens at positions 0..n-1.
template <class Real>
class ModelPass {
 public:
  // `rounding`: what the blocks round besides the weights (BlockShape::rounding); checked
  // against m (check_rounding).
  // `scale_gradient`: BlockShape::scale_gradient.
  explicit ModelPass(const Model& m, const ActivationRounding& rounding = {},
                     bool scale_gradient = false);
  uint32_t vocab() const { return vocab_; }

  // logits [n, vocab]. `inputs` receives what backward() needs (each block's input). With
  // rounded activations, `seen` (when given) receives max |x| of every linear input before
  // rounding, [n_layer × kActRangeSites] as ModelConfig::act_ranges (0 without rounding).
  void forward(const ModelWeights<Real>& w, const int32_t* tokens, size_t n,
               std::vector<Real>& logits, std::vector<std::vector<Real>>& inputs,
               std::vector<float>* seen = nullptr) const;
  // Given dlogits = ∂L/∂logits [n, vocab]: adds ∂L/∂(every parameter) to `grad` (shaped by
  // zeros_like). With `ends`, also adds the embedding's and the head's part to it (sized on
  // first use).
  void backward(const ModelWeights<Real>& w, const std::vector<std::vector<Real>>& inputs,
                const Real* dlogits, size_t n, ModelWeights<Real>& grad,
                EndGradients<Real>* ends = nullptr) const;

 private:
  BlockShape shape_;
  uint32_t vocab_ = 0, n_layer_ = 0;
  float norm_eps_ = 1e-5f;
  std::vector<Real> embedding_, head_;  // [vocab, D] each (the same values when tied)
};

// `rounded` = `latent` (the weights of `m`'s shapes) with each block linear named in `types`
// ("blk.3.ffn_up.weight" -> Q2_K, ...) rounded to nearest in its type and decoded: the
// forward pass of quantization-aware training. Its backward pass is the identity
// (straight-through).
// Linears named in `affine` are rounded to nearest onto their affine grid instead
// (affine_quantize, as write_affine_model rounds them).
void fake_quantize(const Model& m, const std::map<std::string, DType>& types,
                   const ModelWeights<float>& latent, ModelWeights<float>& rounded, int n_threads,
                   const std::map<std::string, AffineSpec>& affine = {});

// Distillation loss of one window: the mean over the n positions of
// KL(softmax(teacher / τ) ‖ softmax(student / τ)), returned; dstudent [n, vocab] receives
// its gradient times τ² (Hinton et al. 2015: the gradients keep their size across τ).
template <class Real>
double kd_loss(const Real* student, const float* teacher, size_t n, size_t vocab,
               double temperature, Real* dstudent);

// Cross-entropy of the student on the window's own text: the mean over positions 0..n-2 of
// −log softmax(student_t)[tokens[t+1]] (the last position's next token is outside the
// window), returned; `weight` times its gradient is added to dstudent [n, vocab].
template <class Real>
double ce_loss(const Real* student, const int32_t* tokens, size_t n, size_t vocab, double weight,
               Real* dstudent);

}  // namespace lowbit::train

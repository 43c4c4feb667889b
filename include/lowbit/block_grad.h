// Forward and backward pass of one Llama-family transformer block, in float or double, for
// the methods that learn against a block's output (learned rounding, lowbit/learned.h).
//
// The block is the engine's (lowbit/engine.h): x += Wo·attn(rope(Wq·n1(x) + bq),
// rope(Wk·n1(x) + bk), Wv·n1(x) + bv), then x += Wd·(silu(Wg·n2(x)) ⊙ Wu·n2(x)), with RMSNorms
// n1, n2, optional per-head q/k RMSNorms after the bias, grouped-query causal attention and
// RoPE in either layout. One call runs one sequence of n tokens at positions 0 .. n-1.
// Activations are row-major [n, features]; weights [out, in] as in the model file.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "lowbit/engine.h"
#include "lowbit/model.h"

namespace lowbit::train {

// Everything about a block's shape the passes need.
struct BlockShape {
  uint32_t n_embd = 0, n_head = 0, n_head_kv = 0, head_dim = 0, n_ff = 0;
  float norm_eps = 1e-5f;
  RopeLayout rope_layout = RopeLayout::Halves;
  std::vector<double> inv_freq;  // head_dim / 2 RoPE frequencies (llama3 factors applied)
  bool attn_bias = false, qk_norm = false;
  // ffn_down's input runs through the online Hadamard transform (ModelConfig::ffn_down_hadamard).
  bool ffn_down_hadamard = false;
  // What the pass rounds besides the weights, as the engine does (none by default); the
  // backward pass goes straight through the rounding (rounding_ops.h).
  ActivationRounding rounding = {};
  // With per-token rounded activations, the backward pass also goes through each row's scale
  // (round_acts_backward's LSQ term); otherwise only straight through the rounding.
  bool scale_gradient = false;

  uint32_t q_dim() const { return n_head * head_dim; }
  uint32_t kv_dim() const { return n_head_kv * head_dim; }
};
BlockShape block_shape(const Model& m);

// A block's parameters, dense. Also the shape of their gradients.
template <class Real>
struct BlockWeights {
  std::vector<Real> wq, wk, wv, wo, wgate, wup, wdown;  // [out, in]
  std::vector<Real> attn_norm, ffn_norm;                // [n_embd]
  std::vector<Real> bq, bk, bv;                         // [q_dim], [kv_dim]; empty without bias
  std::vector<Real> q_norm, k_norm;                     // [head_dim]; empty without q/k norm
  // The linear inputs' static ranges [kActRangeSites] (ActivationRounding::static_ranges):
  // not trained by gradients (QAT tracks them with a moving average); empty otherwise.
  std::vector<float> act_range;

  // The seven linears, in the order of kLinearNames.
  std::vector<Real>* linear(int i);
  // Every parameter tensor set to zeros of the shape of `like`.
  void zeros_like(const BlockWeights& like);
};
inline constexpr const char* kLinearNames[7] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                                "ffn_gate", "ffn_up", "ffn_down"};
// Index into kLinearNames of a block linear "blk.N.<linear>.weight"; throws Argument for any
// other name.
int linear_index(const std::string& weight);

// Layer `layer` of `m` in f32 (weights of any stored type, dequantized).
BlockWeights<float> block_weights(const Model& m, uint32_t layer);

// The activations the backward pass needs, saved by the forward pass.
template <class Real>
struct BlockCache {
  size_t n = 0;
  std::vector<Real> x, r1, h1;     // input; 1/rms per token; normed input [n, D]
  std::vector<Real> q_pre, k_pre;  // after bias, before q/k norm (qk_norm only)
  std::vector<Real> rq, rk;        // q/k norm 1/rms per (token, head)
  std::vector<Real> q, k, v;       // after norm and RoPE: [n, Q], [n, KV], [n, KV]
  std::vector<Real> p;             // attention probabilities [n_head, n, n]
  std::vector<Real> a;             // attention output [n, Q]
  std::vector<Real> x2, r2, h2;    // residual after attention; its norm
  std::vector<Real> g, u, m;       // gate, up, silu(gate) ⊙ up [n, F]
  std::vector<Real> md;            // ffn_down_hadamard: m transformed, ffn_down's input [n, F]
  // act_bits: each linear's input rounded (of h1, a, h2 and ffn_down's input); else empty
  std::vector<Real> h1q, aq, h2q, mq;
  // act_bits: max |x| of each of those inputs before rounding, in act_range's order
  std::array<float, kActRangeSites> seen{};
};

// y[n, D] = block(x[n, D]). With `cache`, keeps what block_backward needs.
template <class Real>
void block_forward(const BlockShape& s, const BlockWeights<Real>& w, const Real* x, size_t n,
                   Real* y, BlockCache<Real>* cache = nullptr);

// Given dy = ∂L/∂y [n, D]: adds ∂L/∂(every parameter) to `grad` (shaped by zeros_like) and,
// when dx is not null, writes ∂L/∂x [n, D].
template <class Real>
void block_backward(const BlockShape& s, const BlockWeights<Real>& w, const BlockCache<Real>& cache,
                    const Real* dy, BlockWeights<Real>& grad, Real* dx = nullptr);

}  // namespace lowbit::train

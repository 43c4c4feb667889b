// The fp32 reference forward pass of a Llama-family decoder (llama, mistral, qwen2, qwen3).
//
// Activations are fp32 row-major [n_tokens, features]. Every linear layer computes
// y[n, out] = x[n, in] · W[out, in]ᵀ through BLAS sgemm; weights stored in another type are
// dequantized a tile of rows at a time into scratch memory, so the model is never copied
// whole. A KV cache [n_ctx, n_head_kv · head_dim] per layer lets generation reuse the prompt.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/model.h"

namespace lowbit {

// KV cache types the engine stores: F32, F16, Q8_0, Q4_0, Q4_1, IQ4_NL, Q5_0, Q5_1.
bool is_kv_cache_type(DType t);
std::string kv_cache_type_names();  // "f32, f16, q8_0, ..." for messages
// The KV cache type called `name` ("q4_0"); else Argument "WHAT NAME: use f32, f16, ...".
DType kv_cache_type(const std::string& name, const std::string& what);

// What the engine rounds besides the weights, to measure low-bit inference in fp32:
// quantization-aware training (lowbit/distill.h) rounds the same values the same way.
struct ActivationRounding {
  // Types of the KV cache (is_kv_cache_type): F32, F16, Q8_0 and llama.cpp's 4/5-bit cache
  // types; the block types need n_head_kv·head_dim divisible by 32.
  DType cache_type_k = DType::F32, cache_type_v = DType::F32;
  // Rotates q and k of every head by the Hadamard transform of head_dim values after RoPE
  // (the scores do not change): a quantized key cache then stores rows without outlier
  // channels (QuaRot).
  bool rotate_kv = false;
  // Simulated activation quantization: every linear's input but the output head's is rounded
  // per token to signed act_bits integers (0: off, else 2..8) with the scale
  // act_clip·max|x| / (2^(act_bits−1) − 1), values clamped (kernels::round_acts_per_token).
  // The fast path's integer kernels then multiply the codes themselves (W4A4: int4 codes ×
  // the weights' codes, kernels::quantize_acts_rounded); every other path multiplies the
  // rounded values in f32. Both give the product with the rounded values.
  int act_bits = 0;
  float act_clip = 1.0f;
  // With act_bits: each linear input is rounded with one step for all its values,
  // act_clip·range / (2^(act_bits−1) − 1), where range is the model's static range of that
  // input (ModelConfig::act_ranges, tracked during QAT; kernels::round_acts_to_range).
  bool static_ranges = false;

  bool any() const {
    return act_bits != 0 || rotate_kv || cache_type_k != DType::F32 || cache_type_v != DType::F32;
  }
};
// Throws Argument naming the setting that `c` cannot run (a cache type, the bits, the clip,
// rotate_kv without a Hadamard transform of head_dim, static ranges without act_bits). The
// engine also needs the model's ranges for static_ranges; training tracks its own.
void check_rounding(const ActivationRounding& r, const ModelConfig& c);
// "act-bits=4 act-clip=0.9 cache-type-k=q4_0 rotate-kv" (the settings that differ from the
// defaults, in the flags' words); empty when nothing is rounded.
std::string rounding_label(const ActivationRounding& r);

struct EngineOptions {
  int n_threads = 0;  // 0: every core
  uint32_t n_ctx = 0;  // 0: the model's context length
  // Fast path: linear layers through the kernels of lowbit/kernels.h (activations quantized to
  // 8 bits for quantized weights, rows split over a thread pool). Off: the fp32 reference
  // (weights dequantized, BLAS sgemm).
  bool fast = false;
  // Fast path, batches of at least this many tokens (long prompts, perplexity windows):
  // quantized weights are dequantized in tiles and multiplied with BLAS SGEMM, as the
  // reference does, which reuses each decoded value for the whole batch; 0 = always the
  // integer kernels. Synthetic 1B, 2 threads, prompt t/s integer kernels → BLAS: Q8_0
  // 45 → 52 at 64 tokens, 45 → 89 at 256, 43 → 103 at 512; Q4_K_M (slower to decode)
  // 60 → 18 at 64, 62 → 57 at 256, 56 → 77 at 512.
  uint32_t blas_batch = 256;
  // Fast path, batches of at least this many tokens on a CPU with AVX-512 VNNI: each quantized
  // weight is repacked once, at its first such batch, into 16-row int8 panels
  // (kernels::PackedRows, about 1.1–1.3 bytes per weight kept beside the model) and
  // multiplied with vpdpbusd; this comes before blas_batch. Such batches also take attention
  // in chunks of queries (two matrix products each) instead of one query at a time. 0: never.
  // The weights' bytes must not change while the engine lives (replace_weight drops every
  // panel).
  uint32_t packed_batch = 8;
  // What the engine rounds besides the weights (W4A4 / W4A8 studies, a quantized KV cache).
  ActivationRounding rounding = {};
};

// Called with the input of a linear layer: `weight` is its GGUF name (e.g.
// "blk.3.ffn_down.weight"), x is [n_tokens, in_features]. The same input feeds q/k/v
// (and gate/up); the hook is called once per weight.
using LinearInputHook = std::function<void(const std::string& weight, const float* x,
                                           size_t n_tokens, size_t in_features)>;

class Engine {
 public:
  Engine(const Model& model, EngineOptions opts = {});
  ~Engine();

  // Runs `n` tokens at positions n_past() .. n_past()+n-1 and appends them to the cache.
  // logits: [n, n_vocab] when all_logits, else [n_vocab] for the last token only.
  void eval(const int32_t* tokens, size_t n, std::vector<float>& logits, bool all_logits);
  void reset() { n_past_ = 0; }
  size_t n_past() const { return n_past_; }
  uint32_t n_ctx() const { return n_ctx_; }
  const Model& model() const { return model_; }
  void set_linear_input_hook(LinearInputHook hook) { hook_ = std::move(hook); }

  // The steps of eval, for drivers that move activations one block at a time
  // (sequential calibration). x is [n, n_embd]; positions start at n_past(), which
  // forward_layer does not advance (eval does, after the last layer).
  void embed(const int32_t* tokens, size_t n, float* x) const;
  void forward_layer(uint32_t layer, float* x, size_t n);  // x += attention, then x += FFN
  void head(const float* x, size_t n,
            std::vector<float>& logits);  // final norm + output: [n, n_vocab]
  void final_norm(const float* x, size_t n, float* h) const;        // the output head's input
  // Makes a weight (e.g. "blk.3.attn_q.weight", "token_embd.weight") read from `w` instead, e.g.
  // its quantized version; `w` must outlive the engine and have the same shape. On a W8A8 model a
  // weight's int8 form (and its activation rounding) applies only while it reads the model's own
  // view, so replacing a weight by that view again restores it.
  void replace_weight(const std::string& name, const TensorView* w);
  // Replaces a layer's RMSNorm weight ("blk.N.attn_norm.weight" / "blk.N.ffn_norm.weight").
  void set_norm(const std::string& name, std::vector<float> w);

 private:
  void reserve(size_t n);
  // y = W·x, plus B·(A·x) when W has a low-rank branch (lowbit/lowrank.h), on x as given:
  // the branch reads the input before any activation rounding.
  void linear(const TensorView& w, const float* x, size_t n, float* y);
  void linear_main(const TensorView& w, const float* x, size_t n, float* y);  // fast or reference
  // W8A8: activations to int8, then the int32 GEMM (fast) or the same rounding simulated in
  // fp32 on the dequantized weight `w` (reference).
  void linear_w8a8(const Int8Weight& q, const TensorView& w, const float* x, size_t n, float* y);
  // Batches on the repacked panels (EngineOptions::packed_batch), on the input linear has
  // quantized.
  void linear_packed(const TensorView& w, float* y);
  struct Impl;
  const Model& model_;
  EngineOptions opts_;
  uint32_t n_ctx_;
  size_t n_past_ = 0;
  LinearInputHook hook_;
  std::unique_ptr<Impl> impl_;
};

// y[n, rows] = x[n, cols] · W[rows, cols]ᵀ for a weight in any supported type, on n_threads
// (the same result for every thread count).
void linear_forward(const TensorView& w, const float* x, size_t n, float* y, int n_threads = 1);

// The RoPE frequency of each pair of a head (head_dim / 2), with the file's llama3 factors.
std::vector<double> rope_frequencies(const Model& m);

// Bytes of weights a forward pass of one token reads: every matrix, and the token embedding
// only when it doubles as the output head (otherwise one row of it is read).
uint64_t weight_bytes_per_token(const Model& m);

}  // namespace lowbit

// A model as lowbit sees it, whatever file it came from: hyperparameters, vocabulary and
// weight views under GGUF tensor names (token_embd.weight, blk.N.attn_q.weight, ...),
// shapes outermost first. Weights are not copied: views point into mapped files.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lowbit/model_config.h"
#include "lowbit/tensor.h"
#include "lowbit/tokenizer.h"
#include "lowbit/w8a8.h"

namespace lowbit {

enum class ModelFormat { HfDir, Gguf, Llama2c };

struct AffineWeight;  // lowbit/affine.h

struct Model {
  ModelFormat format = ModelFormat::HfDir;
  std::string source;  // the path it was loaded from
  ModelConfig config;
  Vocab vocab;
  RopeLayout rope_layout = RopeLayout::Halves;  // layout of the q/k rows as stored
  std::vector<TensorView> tensors;              // in file order
  std::vector<float> rope_freq_factors;         // GGUF rope_freqs.weight (llama3), else empty
  std::vector<std::shared_ptr<const void>> storage;  // keeps mapped files alive
  // W8A8 checkpoints: the int8 form of their linear weights (GGUF names), which the engine
  // multiplies with int8 activations; `tensors` holds the same weights dequantized.
  std::map<std::string, Int8Weight> int8_weights;
  // Integer checkpoints (lowbit's, GPTQ's, AWQ's layouts): each linear's codes, scales and
  // zeros (GGUF names, rows as stored), so that writers can keep the grid exactly. A weight
  // replaced by set_f32 or reshape_f32 loses its entry.
  std::map<std::string, std::shared_ptr<const AffineWeight>> affine_weights;

  const TensorView* find(const std::string& name) const;
  const TensorView& tensor(const std::string& name) const;  // throws Format naming the tensor

  void index();  // rebuilds the name index after tensors change
  // Replaces tensor `name` by f32 values the model owns (same number of values; throws
  // Argument naming the tensor otherwise), e.g. weights rescaled by AWQ or SmoothQuant.
  void set_f32(const std::string& name, std::vector<float> values);
  // Replaces tensor `name` by f32 values of a new shape (structured pruning); throws Argument
  // naming the tensor when it is missing or the shape does not match the values.
  void reshape_f32(const std::string& name, std::vector<uint64_t> shape, std::vector<float> values);
  // Appends a new f32 tensor the model owns (throws Argument when the name exists or the
  // shape does not match the values), e.g. an output head untied from the embedding.
  void add_f32(const std::string& name, std::vector<uint64_t> shape, std::vector<float> values);
 private:
  std::map<std::string, size_t> index_;
};

struct LoadOptions {
  std::string tokenizer_path;  // llama2.c: tokenizer .bin (default: tok<vocab>.bin or tokenizer.bin
                               // beside it)
};

// Detects the format: a directory (Hugging Face), "GGUF" magic, or a llama2.c .bin.
Model load_model(const std::string& path, const LoadOptions& opts = {});

// Hugging Face <-> GGUF tensor names; nullopt-like "" when the name is not a model weight.
std::string hf_to_gguf_name(const std::string& hf_name);
std::string gguf_to_hf_name(const std::string& gguf_name);

// Row permutation between the Halves and Interleaved RoPE layouts for a q or k weight
// [n_heads * head_dim, cols] (or a bias, cols = 1). to_interleaved=true is what
// llama.cpp's converter applies to HF Llama weights.
void permute_rope_rows(const float* in, float* out, uint64_t rows, uint64_t cols, uint32_t n_heads,
                       bool to_interleaved);

// Checks every weight the architecture needs is present with the expected shape.
void validate_model_tensors(const Model& m);

// --- writers (src/formats/convert.cpp) ---
// GGUF for llama.cpp: 1-D tensors stay F32, matrices become `matrix_type`
// (F32/F16/BF16); q/k rows are permuted to llama.cpp's layout for architecture llama.
void write_model_gguf(const Model& m, const std::string& path, DType matrix_type);
// Hugging Face safetensors (HF names and RoPE layout); every tensor becomes `dtype`.
void write_model_safetensors(const Model& m, const std::string& path, DType dtype);

}  // namespace lowbit

// Writers that turn a loaded Model into a GGUF file or Hugging Face safetensors.
#include <nlohmann/json.hpp>

#include "formats/model_writer.h"
#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "lowbit/lowrank.h"
#include "lowbit/model.h"
#include "lowbit/rotation.h"
#include "lowbit/safetensors.h"

namespace lowbit {

// (A low-rank branch's lowrank_b has the weight's output rows; its lowrank_a does not.)
bool is_q_or_k(const std::string& gguf_name) {
  if (is_lowrank_a(gguf_name)) return false;
  return gguf_name.find(".attn_q.") != std::string::npos ||
         gguf_name.find(".attn_k.") != std::string::npos;
}

// Converts a tensor to f32 and, for q/k weights, moves its rows between RoPE layouts.
std::vector<float> load_rows(const Model& m, const TensorView& t, RopeLayout target) {
  std::vector<float> x = to_f32(t);
  if (m.rope_layout == target || !is_q_or_k(t.name)) return x;
  const uint32_t heads =
      t.name.find(".attn_q.") != std::string::npos ? m.config.n_head : m.config.n_head_kv;
  std::vector<float> y(x.size());
  permute_rope_rows(x.data(), y.data(), t.shape[0], t.shape.size() > 1 ? t.shape[1] : 1, heads,
                    target == RopeLayout::Interleaved);
  return y;
}

namespace {

// llama.cpp's llama_ftype numbers for general.file_type.
uint32_t file_type_for(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::BF16: return 32;
    default: return 0;
  }
}

}  // namespace

RopeLayout gguf_rope_layout(const ModelConfig& c) {
  return c.arch == "llama" ? RopeLayout::Interleaved : RopeLayout::Halves;
}

void set_model_metadata(const Model& m, GgufWriter& w, uint32_t file_type) {
  const ModelConfig& c = m.config;
  const std::string a = c.arch + ".";
  w.set("general.architecture", GgufValue::of_string(c.arch));
  w.set("general.name", GgufValue::of_string(c.name.empty() ? "lowbit model" : c.name));
  w.set("general.file_type", GgufValue::of_u32(file_type));
  w.set("general.alignment", GgufValue::of_u32(32));
  w.set(a + "context_length", GgufValue::of_u32(c.n_ctx));
  w.set(a + "embedding_length", GgufValue::of_u32(c.n_embd));
  w.set(a + "block_count", GgufValue::of_u32(c.n_layer));
  w.set(a + "feed_forward_length", GgufValue::of_u32(c.n_ff));
  w.set(a + "attention.head_count", GgufValue::of_u32(c.n_head));
  w.set(a + "attention.head_count_kv", GgufValue::of_u32(c.n_head_kv));
  w.set(a + "attention.layer_norm_rms_epsilon", GgufValue::of_f32(c.norm_eps));
  w.set(a + "rope.freq_base", GgufValue::of_f32(c.rope_theta));
  w.set(a + "rope.dimension_count", GgufValue::of_u32(c.head_dim));
  if (c.head_dim * c.n_head != c.n_embd) {
    w.set(a + "attention.key_length", GgufValue::of_u32(c.head_dim));
    w.set(a + "attention.value_length", GgufValue::of_u32(c.head_dim));
  }
  if (c.rope_scaling.type == RopeScaling::Type::Linear) {
    w.set(a + "rope.scaling.type", GgufValue::of_string("linear"));
    w.set(a + "rope.scaling.factor", GgufValue::of_f32(c.rope_scaling.factor));
  }
  w.set(a + "vocab_size", GgufValue::of_u32(c.n_vocab));
  if (c.ffn_down_hadamard) w.set(kFfnDownHadamardKey, GgufValue::of_bool(true));
  if (!c.act_ranges.empty()) w.set(kActRangesKey, GgufValue::of_f32s(c.act_ranges));
  if (c.lowrank_rank) w.set(kLowRankKey, GgufValue::of_u32(c.lowrank_rank));
  write_gguf_vocab(m.vocab, w);
}

void add_rope_freqs(const Model& m, GgufWriter& w) {
  if (m.rope_freq_factors.empty()) return;
  OutputTensor t;
  t.info = {"rope_freqs.weight", DType::F32, {m.rope_freq_factors.size()}};
  t.nbytes = m.rope_freq_factors.size() * 4;
  t.produce = [&m](std::vector<uint8_t>& out) {
    out = from_f32(m.rope_freq_factors.data(), m.rope_freq_factors.size(), DType::F32);
  };
  w.add_tensor(std::move(t));
}

void write_model_gguf(const Model& m, const std::string& path, DType matrix_type) {
  if (matrix_type != DType::F32 && matrix_type != DType::F16 && matrix_type != DType::BF16)
    fail(ErrorKind::Argument, "convert: the matrix type must be f32, f16 or bf16, got {}",
         dtype_name(matrix_type));
  GgufWriter w;
  set_model_metadata(m, w, file_type_for(matrix_type));
  add_rope_freqs(m, w);
  const RopeLayout target = gguf_rope_layout(m.config);
  for (const TensorView& src : m.tensors) {
    OutputTensor t;
    t.info = src;
    t.info.dtype = src.shape.size() == 1 ? DType::F32 : matrix_type;
    t.nbytes = src.n_values() * traits(t.info.dtype).type_size;
    t.produce = [&m, &src, dt = t.info.dtype, target](std::vector<uint8_t>& out) {
      auto x = load_rows(m, src, target);
      out = from_f32(x.data(), x.size(), dt);
    };
    w.add_tensor(std::move(t));
  }
  w.write(path);
}

void write_model_safetensors(const Model& m, const std::string& path, DType dtype) {
  refuse_online_rotation(m, "a Hugging Face checkpoint");
  refuse_lowrank(m, "a Hugging Face checkpoint");
  std::vector<OutputTensor> out;
  for (const TensorView& src : m.tensors) {
    OutputTensor t;
    t.info = src;
    t.info.name = gguf_to_hf_name(src.name);
    if (t.info.name.empty())
      fail(ErrorKind::Unsupported, "{}: tensor '{}' has no Hugging Face name", m.source, src.name);
    t.info.dtype = dtype;
    t.nbytes = src.n_values() * traits(dtype).type_size;
    t.produce = [&m, &src, dtype](std::vector<uint8_t>& bytes) {
      auto x = load_rows(m, src, RopeLayout::Halves);
      bytes = from_f32(x.data(), x.size(), dtype);
    };
    out.push_back(std::move(t));
  }
  write_safetensors(path, out, {{"format", "pt"}});
}

}  // namespace lowbit

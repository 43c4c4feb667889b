#include "lowbit/synthetic.h"

#include <random>

#include "lowbit/error.h"

namespace lowbit {

Model make_synthetic_model(ModelConfig c, Vocab vocab, uint64_t seed, DType dtype, float std) {
  c.validate("synthetic model");
  if (vocab.size() > c.n_vocab) fail(ErrorKind::Argument, "synthetic model: vocabulary of {} tokens exceeds n_vocab {}", vocab.size(), c.n_vocab);
  vocab.pad_to(c.n_vocab);
  Model m;
  m.format = ModelFormat::Gguf;
  m.source = "synthetic";
  m.config = c;
  m.vocab = std::move(vocab);
  m.rope_layout = c.arch == "llama" ? RopeLayout::Interleaved : RopeLayout::Halves;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  auto add = [&](const std::string& name, std::vector<uint64_t> shape, float scale, float offset) {
    TensorInfo info{name, shape.size() == 1 ? DType::F32 : dtype, shape};
    std::vector<float> x(info.n_values());
    for (auto& v : x) v = offset + scale * normal(rng);
    auto bytes = std::make_shared<std::vector<uint8_t>>(from_f32(x.data(), x.size(), info.dtype));
    TensorView t;
    static_cast<TensorInfo&>(t) = info;
    t.data = bytes->data();
    t.nbytes = bytes->size();
    m.storage.push_back(bytes);
    m.tensors.push_back(t);
  };
  const uint64_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
  add("token_embd.weight", {V, D}, std, 0);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {D}, 0.1f, 1);
    add(b + "attn_q.weight", {Q, D}, std, 0);
    add(b + "attn_k.weight", {KV, D}, std, 0);
    add(b + "attn_v.weight", {KV, D}, std, 0);
    if (c.attn_bias) {
      add(b + "attn_q.bias", {Q}, 0.5f * std, 0);
      add(b + "attn_k.bias", {KV}, 0.5f * std, 0);
      add(b + "attn_v.bias", {KV}, 0.5f * std, 0);
    }
    if (c.qk_norm) {
      add(b + "attn_q_norm.weight", {c.head_dim}, 0.1f, 1);
      add(b + "attn_k_norm.weight", {c.head_dim}, 0.1f, 1);
    }
    add(b + "attn_output.weight", {D, Q}, std, 0);
    add(b + "ffn_norm.weight", {D}, 0.1f, 1);
    add(b + "ffn_gate.weight", {F, D}, std, 0);
    add(b + "ffn_up.weight", {F, D}, std, 0);
    add(b + "ffn_down.weight", {D, F}, std, 0);
  }
  add("output_norm.weight", {D}, 0.1f, 1);
  if (!c.tied_embeddings) add("output.weight", {V, D}, std, 0);
  m.index();
  validate_model_tensors(m);
  return m;
}

}  // namespace lowbit

#include "lowbit/synthetic.h"

#include <cstring>
#include <random>

#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"

namespace lowbit {
namespace {

// Every tensor of a Llama-family model: name, shape, and the law of its values.
struct TensorSpec {
  std::string name;
  std::vector<uint64_t> shape;
  float scale, offset;  // value = offset + scale · N(0, 1)
};

std::vector<TensorSpec> tensor_specs(const ModelConfig& c, float std) {
  std::vector<TensorSpec> out;
  auto add = [&](std::string name, std::vector<uint64_t> shape, float scale, float offset) {
    out.push_back({std::move(name), std::move(shape), scale, offset});
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
  return out;
}

Model empty_model(const ModelConfig& c, Vocab vocab) {
  c.validate("synthetic model");
  if (vocab.size() > c.n_vocab)
    fail(ErrorKind::Argument, "synthetic model: vocabulary of {} tokens exceeds n_vocab {}",
         vocab.size(), c.n_vocab);
  vocab.pad_to(c.n_vocab);
  Model m;
  m.format = ModelFormat::Gguf;
  m.source = "synthetic";
  m.config = c;
  m.vocab = std::move(vocab);
  m.rope_layout = c.arch == "llama" ? RopeLayout::Interleaved : RopeLayout::Halves;
  return m;
}

void add_tensor(Model& m, TensorInfo info, std::shared_ptr<std::vector<uint8_t>> bytes) {
  TensorView t;
  static_cast<TensorInfo&>(t) = std::move(info);
  t.data = bytes->data();
  t.nbytes = bytes->size();
  m.storage.push_back(std::move(bytes));
  m.tensors.push_back(t);
}

std::vector<float> draw(std::mt19937_64& rng, size_t n, float scale, float offset) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> x(n);
  for (auto& v : x) v = offset + scale * normal(rng);
  return x;
}

}  // namespace

Model make_synthetic_model(ModelConfig c, Vocab vocab, uint64_t seed, DType dtype, float std) {
  Model m = empty_model(c, std::move(vocab));
  std::mt19937_64 rng(seed);
  for (const TensorSpec& s : tensor_specs(c, std)) {
    TensorInfo info{s.name, s.shape.size() == 1 ? DType::F32 : dtype, s.shape};
    const auto x = draw(rng, info.n_values(), s.scale, s.offset);
    add_tensor(m, info,
               std::make_shared<std::vector<uint8_t>>(from_f32(x.data(), x.size(), info.dtype)));
  }
  m.index();
  validate_model_tensors(m);
  return m;
}

ModelConfig synthetic_shape(const std::string& name) {
  ModelConfig c;
  c.arch = "llama";
  c.name = "synthetic " + name;
  if (name == "llama-1b") {
    c.n_vocab = 128256, c.n_embd = 2048, c.n_layer = 16, c.n_head = 32, c.n_head_kv = 8,
    c.head_dim = 64, c.n_ff = 8192;
    c.tied_embeddings = true;
    c.rope_theta = 500000.0f;
  } else if (name == "llama-8m") {
    c.n_vocab = 4096, c.n_embd = 256, c.n_layer = 8, c.n_head = 8, c.n_head_kv = 4, c.head_dim = 32,
    c.n_ff = 768;
  } else {
    fail(ErrorKind::Argument, "unknown synthetic shape '{}' (llama-1b, llama-8m)", name);
  }
  c.n_ctx = 2048;
  return c;
}

Model make_synthetic_quantized(ModelConfig c, const std::string& type_or_preset, uint64_t seed) {
  constexpr uint64_t kPoolRows = 64;
  const float std = 0.02f;
  const auto specs = tensor_specs(c, std);
  // The plan needs names, shapes and a source type only.
  Model shapes = empty_model(c, Vocab{});
  for (const TensorSpec& s : specs) {
    TensorView t;
    static_cast<TensorInfo&>(t) = TensorInfo{s.name, DType::F32, s.shape};
    shapes.tensors.push_back(t);
  }
  shapes.index();
  std::map<std::string, DType> type_of;
  for (const TensorPlan& p : plan_quantization(shapes, plan_for_type_or_preset(type_or_preset)))
    type_of[p.name] = p.type;

  Model m = empty_model(c, Vocab{});
  std::mt19937_64 rng(seed);
  for (const TensorSpec& s : specs) {
    if (s.shape.size() == 1) {
      const auto x = draw(rng, s.shape[0], s.scale, s.offset);
      add_tensor(m, {s.name, DType::F32, s.shape},
                 std::make_shared<std::vector<uint8_t>>(from_f32(x.data(), x.size(), DType::F32)));
      continue;
    }
    const DType type = type_of.at(s.name);
    const uint64_t rows = s.shape[0], cols = s.shape[1], pool = std::min(rows, kPoolRows);
    uint64_t row_bytes = 0;
    tensor_bytes(type, cols, cols, &row_bytes);
    const auto x = draw(rng, pool * cols, s.scale, s.offset);
    std::vector<uint8_t> pool_bytes(pool * row_bytes);
    quantize_rows(type, x.data(), pool, cols, nullptr, pool_bytes.data());
    auto bytes = std::make_shared<std::vector<uint8_t>>(rows * row_bytes);
    for (uint64_t r = 0; r < rows; ++r)
      std::memcpy(bytes->data() + r * row_bytes, pool_bytes.data() + (r % pool) * row_bytes,
                  row_bytes);
    add_tensor(m, {s.name, type, s.shape}, std::move(bytes));
  }
  m.index();
  validate_model_tensors(m);
  return m;
}

}  // namespace lowbit

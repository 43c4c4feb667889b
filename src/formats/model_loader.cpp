#include <cmath>
#include <cstring>
#include <filesystem>
#include <regex>

#include "core/names.h"
#include "lowbit/affine.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/lowrank.h"
#include "lowbit/model.h"
#include "lowbit/rotation.h"
#include "lowbit/safetensors.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

// Per-layer weight names: HF suffix after "model.layers.N." and GGUF suffix after "blk.N.".
const std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};
const std::pair<const char*, const char*> kGlobalNames[] = {
    {"model.embed_tokens.weight", "token_embd.weight"},
    {"model.norm.weight", "output_norm.weight"},
    {"lm_head.weight", "output.weight"},
};

// lowbit's layout: .qweight/.scales/.zeros (the other layouts: load_hf_quantized_tensors).
bool is_affine_part(const std::string& name) {
  for (const char* suffix : {".qweight", ".scales", ".zeros"})
    if (has_suffix(name, suffix)) return true;
  return false;
}

Model load_hf_dir(const std::string& dir) {
  Model m;
  m.format = ModelFormat::HfDir;
  m.source = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string config_text = read_text_file(config_path);
  m.config = parse_hf_config(config_text, config_path);
  const bool hf_quantized = has_hf_quantized_linears(config_text, config_path);
  m.vocab = read_hf_dir_vocab(dir);
  if (m.vocab.size() > m.config.n_vocab)
    fail(ErrorKind::Format, "{}: tokenizer has {} tokens but config.json vocab_size is {}", dir,
         m.vocab.size(), m.config.n_vocab);
  if (fs::exists(fs::path(dir) / "generation_config.json")) {
    auto g = read_generation_config((fs::path(dir) / "generation_config.json").string());
    if (g.bos_id >= 0) m.config.bos_id = g.bos_id;
    if (g.eos_id >= 0) m.config.eos_id = g.eos_id;
  }
  if (m.vocab.bos < 0 && m.config.bos_id >= 0 &&
      m.config.bos_id < static_cast<int32_t>(m.config.n_vocab))
    m.vocab.bos = m.config.bos_id;
  if (m.vocab.eos < 0 && m.config.eos_id >= 0 &&
      m.config.eos_id < static_cast<int32_t>(m.config.n_vocab))
    m.vocab.eos = m.config.eos_id;
  m.rope_layout = RopeLayout::Halves;
  std::shared_ptr<SafetensorsCheckpoint> ck = SafetensorsCheckpoint::open_dir(dir);
  m.storage.push_back(ck);
  // The embedding's rows are the vocabulary: checked before the vocabulary is padded to it.
  for (const auto& t : ck->tensors())
    if (t.name == "model.embed_tokens.weight" &&
        (t.shape.empty() || t.shape[0] != m.config.n_vocab))
      fail(ErrorKind::Format, "{}: config.json vocab_size is {} but tensor '{}' has shape {}", dir,
           m.config.n_vocab, t.name, shape_string(t.shape));
  m.vocab.pad_to(m.config.n_vocab);
  const auto affine = ck->metadata().find("lowbit.affine");
  std::vector<TensorView> affine_parts;
  const std::vector<TensorView> plain =
      hf_quantized ? load_hf_quantized_tensors(m, ck->tensors(), config_text, config_path)
                   : ck->tensors();
  for (const auto& t : plain) {
    if (affine != ck->metadata().end() && is_affine_part(t.name)) {
      affine_parts.push_back(t);
      continue;
    }
    std::string name = hf_to_gguf_name(t.name);
    if (name.empty()) {
      if (t.name.find("rotary_emb.inv_freq") != std::string::npos)
        continue;  // recomputed from rope_theta
      fail(ErrorKind::Unsupported, "{}: tensor '{}' is not a weight of a {} model", dir, t.name,
           m.config.arch);
    }
    TensorView v = t;
    v.name = name;
    m.tensors.push_back(v);
  }
  if (affine != ck->metadata().end()) load_affine_tensors(m, affine_parts, affine->second);
  if (m.config.rope_scaling.type == RopeScaling::Type::Llama3) {
    ModelConfig plain = m.config;
    plain.rope_scaling = {};
    auto base = rope_inv_freq(plain), scaled = rope_inv_freq(m.config);
    for (size_t i = 0; i < base.size(); ++i) m.rope_freq_factors.push_back(base[i] / scaled[i]);
  }
  return m;
}

Model load_gguf(const std::string& path) {
  Model m;
  m.format = ModelFormat::Gguf;
  m.source = path;
  std::shared_ptr<GgufFile> g = GgufFile::open(path);
  m.storage.push_back(g);
  ModelConfig& c = m.config;
  c.arch = g->get_string("general.architecture");
  if (c.arch != "llama" && c.arch != "qwen2" && c.arch != "qwen3")
    fail(ErrorKind::Unsupported,
         "{}: key 'general.architecture': '{}' is not supported (expected llama, qwen2 or qwen3)",
         path, c.arch);
  const std::string a = c.arch + ".";
  if (auto* n = g->find("general.name"); n && n->type == GgufType::STRING) c.name = n->s;
  c.n_embd = static_cast<uint32_t>(g->get_uint(a + "embedding_length"));
  c.n_layer = static_cast<uint32_t>(g->get_uint(a + "block_count"));
  c.n_ff = static_cast<uint32_t>(g->get_uint(a + "feed_forward_length"));
  c.n_head = static_cast<uint32_t>(g->get_uint(a + "attention.head_count"));
  c.n_head_kv =
      static_cast<uint32_t>(g->get_uint_opt(a + "attention.head_count_kv").value_or(c.n_head));
  c.n_ctx = static_cast<uint32_t>(g->get_uint_opt(a + "context_length").value_or(2048));
  c.head_dim = static_cast<uint32_t>(
      g->get_uint_opt(a + "attention.key_length").value_or(c.n_head ? c.n_embd / c.n_head : 0));
  c.norm_eps = static_cast<float>(g->get_float(a + "attention.layer_norm_rms_epsilon"));
  c.rope_theta = static_cast<float>(g->get_float_opt(a + "rope.freq_base").value_or(10000.0));
  if (g->find(a + "rope.scaling.type")) {
    std::string st = g->get_string(a + "rope.scaling.type");
    if (st == "linear") {
      c.rope_scaling.type = RopeScaling::Type::Linear;
      c.rope_scaling.factor = static_cast<float>(g->get_float(a + "rope.scaling.factor"));
    } else if (st != "none") {
      fail(ErrorKind::Unsupported, "{}: key '{}rope.scaling.type': '{}' is not supported", path, a,
           st);
    }
  }
  c.attn_bias = g->find_tensor("blk.0.attn_q.bias") != nullptr;
  c.qk_norm = g->find_tensor("blk.0.attn_q_norm.weight") != nullptr;
  c.tied_embeddings = g->find_tensor("output.weight") == nullptr;
  c.ffn_down_hadamard = g->get_bool_opt(kFfnDownHadamardKey).value_or(false);
  const uint64_t lowrank = g->get_uint_opt(kLowRankKey).value_or(0);
  if (lowrank > 65536)
    fail(ErrorKind::Format, "{}: key '{}' is {}: not a rank", g->path(), kLowRankKey, lowrank);
  c.lowrank_rank = static_cast<uint32_t>(lowrank);
  if (c.ffn_down_hadamard && !has_hadamard(c.n_ff))
    fail(ErrorKind::Format, "{}: key '{}': no Hadamard transform of feed_forward_length {}", path,
         kFfnDownHadamardKey, c.n_ff);
  if (g->find(kActRangesKey)) {
    for (const GgufValue& v : g->get_array(kActRangesKey, GgufType::F32).array)
      c.act_ranges.push_back(v.f);
    if (c.act_ranges.size() != size_t(kActRangeSites) * c.n_layer)
      fail(ErrorKind::Format, "{}: key '{}': {} ranges for {} blocks of {} linear inputs", path,
           kActRangesKey, c.act_ranges.size(), c.n_layer, kActRangeSites);
    for (size_t i = 0; i < c.act_ranges.size(); ++i)
      if (!(c.act_ranges[i] > 0 && std::isfinite(c.act_ranges[i])))
        fail(ErrorKind::Format, "{}: key '{}': range {} of block {} is {} (not finite > 0)", path,
             kActRangesKey, i % kActRangeSites, i / kActRangeSites, c.act_ranges[i]);
  }
  m.vocab = read_gguf_vocab(*g);
  c.n_vocab = static_cast<uint32_t>(m.vocab.size());
  c.bos_id = m.vocab.bos;
  c.eos_id = m.vocab.eos;
  c.validate(path);
  // llama.cpp's "llama" architecture uses interleaved RoPE pairs; qwen2/qwen3 use halves.
  m.rope_layout = c.arch == "llama" ? RopeLayout::Interleaved : RopeLayout::Halves;
  for (const auto& ti : g->tensors()) {
    if (ti.view.name == "rope_freqs.weight") {
      if (ti.view.dtype != DType::F32 || ti.view.n_values() != c.head_dim / 2)
        fail(ErrorKind::Format, "{}: tensor 'rope_freqs.weight': expected {} F32 values, got {} {}",
             path, c.head_dim / 2, ti.view.n_values(), dtype_name(ti.view.dtype));
      m.rope_freq_factors = to_f32(ti.view);
      continue;
    }
    m.tensors.push_back(ti.view);
  }
  return m;
}

// llama.c checkpoint: 7 int32 (dim, hidden_dim, n_layers, n_heads, n_kv_heads,
// vocab_size (negative: separate classifier), seq_len), then f32 arrays in this order:
// token embedding [vocab, dim], attention norms [L, dim], wq [L, dim, dim],
// wk [L, kv_dim, dim], wv [L, kv_dim, dim], wo [L, dim, dim], ffn norms [L, dim],
// w1 [L, hidden, dim], w2 [L, dim, hidden], w3 [L, hidden, dim], final norm [dim],
// freq_cis real+imag [seq_len, head_dim/2] each (unused), classifier [vocab, dim] if separate.
Model load_llama2c(const std::string& path, const LoadOptions& opts) {
  Model m;
  m.format = ModelFormat::Llama2c;
  m.source = path;
  std::shared_ptr<MappedFile> f = MappedFile::open(path);
  m.storage.push_back(f);
  if (f->size() < 28)
    fail(ErrorKind::Format, "{}: file is {} bytes, shorter than the 28-byte llama2.c header", path,
         f->size());
  int32_t h[7];
  std::memcpy(h, f->data(), sizeof h);
  const char* names[] = {"dim",        "hidden_dim", "n_layers", "n_heads",
                         "n_kv_heads", "vocab_size", "seq_len"};
  for (int i = 0; i < 7; ++i)
    if (h[i] == 0 || (i != 5 && h[i] < 0) || std::abs(static_cast<int64_t>(h[i])) > (1 << 24))
      fail(ErrorKind::Format, "{}: header field {} = {} is out of range", path, names[i], h[i]);
  ModelConfig& c = m.config;
  c.arch = "llama";
  c.name = fs::path(path).stem().string();
  c.n_embd = h[0];
  c.n_ff = h[1];
  c.n_layer = h[2];
  c.n_head = h[3];
  c.n_head_kv = h[4];
  c.tied_embeddings = h[5] > 0;
  c.n_vocab = static_cast<uint32_t>(std::abs(h[5]));
  c.n_ctx = h[6];
  c.head_dim = c.n_embd / c.n_head;
  c.norm_eps = 1e-5f;
  c.rope_theta = 10000.0f;
  if (c.n_embd % c.n_head != 0)
    fail(ErrorKind::Format, "{}: dim {} is not a multiple of n_heads {}", path, c.n_embd, c.n_head);
  c.validate(path);
  m.rope_layout = RopeLayout::Interleaved;

  const uint64_t D = c.n_embd, KV = c.kv_dim(), F = c.n_ff, L = c.n_layer, V = c.n_vocab;
  uint64_t off = 28;
  auto take = [&](uint64_t count) {  // returns the offset of `count` floats and advances
    uint64_t bytes = 0, end = 0;
    if (mul_overflows(count, 4, &bytes) || add_overflows(off, bytes, &end) || end > f->size())
      fail(ErrorKind::Format, "{}: truncated: weights need {} more bytes at offset {}, file has {}",
           path, bytes, off, f->size());
    uint64_t at = off;
    off = end;
    return at;
  };
  auto add = [&](std::string name, std::vector<uint64_t> shape, uint64_t at) {
    TensorView t;
    t.name = std::move(name);
    t.dtype = DType::F32;
    t.shape = std::move(shape);
    t.nbytes = t.n_values() * 4;
    t.data = f->data() + at;
    m.tensors.push_back(t);
  };
  const uint64_t emb = take(V * D);
  const uint64_t att_norm = take(L * D), wq = take(L * D * D), wk = take(L * KV * D),
                 wv = take(L * KV * D), wo = take(L * D * D);
  const uint64_t ffn_norm = take(L * D), w1 = take(L * F * D), w2 = take(L * D * F),
                 w3 = take(L * F * D);
  const uint64_t final_norm = take(D);
  take(c.n_ctx * static_cast<uint64_t>(c.head_dim));  // freq_cis real + imag, recomputed instead
  add("token_embd.weight", {V, D}, emb);
  for (uint64_t l = 0; l < L; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    add(b + "attn_norm.weight", {D}, att_norm + 4 * l * D);
    add(b + "attn_q.weight", {D, D}, wq + 4 * l * D * D);
    add(b + "attn_k.weight", {KV, D}, wk + 4 * l * KV * D);
    add(b + "attn_v.weight", {KV, D}, wv + 4 * l * KV * D);
    add(b + "attn_output.weight", {D, D}, wo + 4 * l * D * D);
    add(b + "ffn_norm.weight", {D}, ffn_norm + 4 * l * D);
    add(b + "ffn_gate.weight", {F, D}, w1 + 4 * l * F * D);
    add(b + "ffn_down.weight", {D, F}, w2 + 4 * l * D * F);
    add(b + "ffn_up.weight", {F, D}, w3 + 4 * l * F * D);
  }
  add("output_norm.weight", {D}, final_norm);
  if (!c.tied_embeddings) add("output.weight", {V, D}, take(V * D));
  if (off != f->size())
    fail(ErrorKind::Format,
         "{}: {} bytes left over after the weights; header does not match the file", path,
         f->size() - off);

  std::string tok = opts.tokenizer_path;
  if (tok.empty()) {
    for (auto cand : {"tok" + std::to_string(V) + ".bin", std::string("tokenizer.bin")}) {
      fs::path p = fs::path(path).parent_path() / cand;
      if (fs::exists(p)) {
        tok = p.string();
        break;
      }
    }
    if (tok.empty())
      fail(ErrorKind::Io, "{}: no tokenizer given and no tok{}.bin or tokenizer.bin beside it",
           path, V);
  }
  m.vocab = read_llama2c_tokenizer(tok, c.n_vocab);
  return m;
}

}  // namespace

const TensorView* Model::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

const TensorView& Model::tensor(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t) fail(ErrorKind::Format, "{}: missing tensor '{}'", source, name);
  return *t;
}

void Model::set_f32(const std::string& name, std::vector<float> values) {
  auto it = index_.find(name);
  if (it == index_.end()) fail(ErrorKind::Argument, "{}: no tensor '{}' to replace", source, name);
  TensorView& t = tensors[it->second];
  if (values.size() != t.n_values())
    fail(ErrorKind::Argument, "{}: tensor '{}' has {} values, the replacement {}", source, name,
         t.n_values(), values.size());
  auto owned = std::make_shared<std::vector<float>>(std::move(values));
  t.dtype = DType::F32;
  t.data = reinterpret_cast<const uint8_t*>(owned->data());
  t.nbytes = owned->size() * sizeof(float);
  storage.push_back(std::move(owned));
  affine_weights.erase(name);  // the stored grid no longer describes it
}

void Model::reshape_f32(const std::string& name, std::vector<uint64_t> shape,
                        std::vector<float> values) {
  auto it = index_.find(name);
  if (it == index_.end()) fail(ErrorKind::Argument, "{}: no tensor '{}' to replace", source, name);
  TensorView& t = tensors[it->second];
  const std::vector<uint64_t> old = t.shape;
  t.shape = std::move(shape);  // n_values() of the new shape
  if (values.size() != t.n_values()) {
    const std::string wanted = shape_string(t.shape);
    t.shape = old;
    fail(ErrorKind::Argument, "{}: tensor '{}' of new shape {} given {} values", source, name,
         wanted, values.size());
  }
  auto owned = std::make_shared<std::vector<float>>(std::move(values));
  t.dtype = DType::F32;
  t.data = reinterpret_cast<const uint8_t*>(owned->data());
  t.nbytes = owned->size() * sizeof(float);
  storage.push_back(std::move(owned));
  affine_weights.erase(name);  // the stored grid no longer describes it
}

void Model::add_f32(const std::string& name, std::vector<uint64_t> shape,
                    std::vector<float> values) {
  if (index_.count(name)) fail(ErrorKind::Argument, "{}: tensor '{}' exists already", source, name);
  TensorView t;
  t.name = name;
  t.shape = std::move(shape);
  if (t.n_values() != values.size())
    fail(ErrorKind::Argument, "{}: new tensor '{}' of shape {} given {} values", source, name,
         shape_string(t.shape), values.size());
  auto owned = std::make_shared<std::vector<float>>(std::move(values));
  t.dtype = DType::F32;
  t.data = reinterpret_cast<const uint8_t*>(owned->data());
  t.nbytes = owned->size() * sizeof(float);
  storage.push_back(std::move(owned));
  tensors.push_back(std::move(t));
  index_.emplace(name, tensors.size() - 1);
}

void Model::index() {
  index_.clear();
  for (size_t i = 0; i < tensors.size(); ++i)
    if (!index_.emplace(tensors[i].name, i).second)
      fail(ErrorKind::Format, "{}: tensor '{}' appears twice", source, tensors[i].name);
}

std::string hf_to_gguf_name(const std::string& n) {
  for (auto [hf, gg] : kGlobalNames)
    if (n == hf) return gg;
  static const std::regex layer(R"(model\.layers\.(\d+)\.(.+))");
  std::smatch mm;
  if (std::regex_match(n, mm, layer))
    for (auto [hf, gg] : kLayerNames)
      if (mm[2] == hf) return "blk." + mm[1].str() + "." + gg;
  return "";
}

std::string gguf_to_hf_name(const std::string& n) {
  for (auto [hf, gg] : kGlobalNames)
    if (n == gg) return hf;
  static const std::regex layer(R"(blk\.(\d+)\.(.+))");
  std::smatch mm;
  if (std::regex_match(n, mm, layer))
    for (auto [hf, gg] : kLayerNames)
      if (mm[2] == gg) return "model.layers." + mm[1].str() + "." + hf;
  return "";
}

void permute_rope_rows(const float* in, float* out, uint64_t rows, uint64_t cols, uint32_t n_heads,
                       bool to_interleaved) {
  const uint64_t hd = rows / n_heads, half = hd / 2;
  for (uint64_t h = 0; h < n_heads; ++h)
    for (uint64_t j = 0; j < 2; ++j)
      for (uint64_t i = 0; i < half; ++i) {
        const uint64_t halves_row = h * hd + j * half + i, inter_row = h * hd + 2 * i + j;
        const uint64_t src = to_interleaved ? halves_row : inter_row,
                       dst = to_interleaved ? inter_row : halves_row;
        std::memcpy(out + dst * cols, in + src * cols, cols * sizeof(float));
      }
}

void validate_model_tensors(const Model& m) {
  const ModelConfig& c = m.config;
  auto expect = [&](const std::string& name, std::vector<uint64_t> shape, bool required = true) {
    const TensorView* t = m.find(name);
    if (!t) {
      if (required)
        fail(ErrorKind::Format, "{}: missing tensor '{}' (expected shape {})", m.source, name,
             shape_string(shape));
      return;
    }
    if (t->shape != shape)
      fail(ErrorKind::Format, "{}: tensor '{}': shape {} but the config implies {}", m.source, name,
           shape_string(t->shape), shape_string(shape));
  };
  const uint64_t D = c.n_embd, Q = c.q_dim(), KV = c.kv_dim(), F = c.n_ff, V = c.n_vocab;
  expect("token_embd.weight", {V, D});
  expect("output_norm.weight", {D});
  expect("output.weight", {V, D}, !c.tied_embeddings);
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    expect(b + "attn_norm.weight", {D});
    expect(b + "attn_q.weight", {Q, D});
    expect(b + "attn_k.weight", {KV, D});
    expect(b + "attn_v.weight", {KV, D});
    expect(b + "attn_output.weight", {D, Q});
    expect(b + "ffn_norm.weight", {D});
    expect(b + "ffn_gate.weight", {F, D});
    expect(b + "ffn_up.weight", {F, D});
    expect(b + "ffn_down.weight", {D, F});
    if (c.attn_bias) {
      expect(b + "attn_q.bias", {Q});
      expect(b + "attn_k.bias", {KV});
      expect(b + "attn_v.bias", {KV});
    }
    if (c.qk_norm) {
      expect(b + "attn_q_norm.weight", {c.head_dim});
      expect(b + "attn_k_norm.weight", {c.head_dim});
    }
  }
  validate_lowrank_tensors(m);
}

Model load_model(const std::string& path, const LoadOptions& opts) {
  Model m;
  if (fs::is_directory(path)) {
    m = load_hf_dir(path);
  } else {
    auto f = MappedFile::open(path);
    if (f->size() >= 4 && std::memcmp(f->data(), "GGUF", 4) == 0) m = load_gguf(path);
    else if (path.size() > 12 && path.substr(path.size() - 12) == ".safetensors")
      fail(ErrorKind::Argument,
           "{}: give the model directory (with config.json), not the .safetensors file", path);
    else m = load_llama2c(path, opts);
  }
  m.index();
  validate_model_tensors(m);
  return m;
}

}  // namespace lowbit

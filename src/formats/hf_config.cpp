#include <cmath>
#include <nlohmann/json.hpp>

#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/model_config.h"

namespace lowbit {
namespace {

using nlohmann::json;

uint32_t get_count(const json& j, const std::string& src, const char* key, bool required,
                   uint32_t dflt = 0) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) fail(ErrorKind::Format, "{}: missing key '{}'", src, key);
    return dflt;
  }
  if (!j[key].is_number_integer())
    fail(ErrorKind::Format, "{}: key '{}': expected an integer, got {}", src, key, j[key].dump());
  auto v = j[key].get<int64_t>();
  if (v < 0 || v > (1ll << 31))
    fail(ErrorKind::Format, "{}: key '{}': value {} is out of range", src, key, v);
  return static_cast<uint32_t>(v);
}

float get_float(const json& j, const std::string& src, const char* key, float dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_number())
    fail(ErrorKind::Format, "{}: key '{}': expected a number, got {}", src, key, j[key].dump());
  float v = j[key].get<float>();
  if (!std::isfinite(v)) fail(ErrorKind::Format, "{}: key '{}': value is not finite", src, key);
  return v;
}

bool get_bool(const json& j, const std::string& src, const char* key, bool dflt) {
  if (!j.contains(key) || j[key].is_null()) return dflt;
  if (!j[key].is_boolean())
    fail(ErrorKind::Format, "{}: key '{}': expected true/false, got {}", src, key, j[key].dump());
  return j[key].get<bool>();
}

int32_t get_token_id(const json& j, const char* key, int32_t dflt) {
  if (!j.contains(key)) return dflt;
  const json& v = j[key];
  if (v.is_number_integer()) return v.get<int32_t>();
  if (v.is_array() && !v.empty() && v[0].is_number_integer())
    return v[0].get<int32_t>();  // e.g. Llama-3 eos lists
  return dflt;
}

json parse_json(const std::string& text, const std::string& src) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON: {}", src, e.what());
  }
}

}  // namespace

ModelConfig parse_hf_config_json(const json& j, const std::string& src);

void ModelConfig::validate(const std::string& src) const {
  auto positive = [&](uint32_t v, const char* what) {
    if (v == 0) fail(ErrorKind::Format, "{}: {} must be positive", src, what);
  };
  positive(n_vocab, "vocabulary size");
  positive(n_embd, "hidden size");
  positive(n_layer, "layer count");
  positive(n_head, "attention head count");
  positive(n_head_kv, "key/value head count");
  positive(n_ff, "feed-forward size");
  positive(head_dim, "head dimension");
  if (n_head % n_head_kv != 0)
    fail(ErrorKind::Format, "{}: {} attention heads are not a multiple of {} key/value heads", src,
         n_head, n_head_kv);
  if (head_dim % 2 != 0)
    fail(ErrorKind::Format, "{}: head dimension {} is odd; RoPE needs pairs", src, head_dim);
  // Real numbers: a zero or non-finite one would turn every output into NaN without a word.
  auto positive_real = [&](double v, const char* what) {
    if (!(v > 0) || !std::isfinite(v))
      fail(ErrorKind::Format, "{}: {} must be a positive number, not {}", src, what, v);
  };
  positive_real(rope_theta, "rope_theta (the RoPE base)");
  if (!(norm_eps >= 0) || !std::isfinite(norm_eps) || norm_eps >= 1)
    fail(ErrorKind::Format, "{}: the RMS norm epsilon must be in [0, 1), not {}", src, norm_eps);
  if (rope_scaling.type != RopeScaling::Type::None)
    positive_real(rope_scaling.factor, "rope_scaling.factor");
  if (rope_scaling.type == RopeScaling::Type::Llama3) {
    positive_real(rope_scaling.low_freq_factor, "rope_scaling.low_freq_factor");
    positive_real(rope_scaling.high_freq_factor, "rope_scaling.high_freq_factor");
    if (rope_scaling.high_freq_factor <= rope_scaling.low_freq_factor)
      fail(ErrorKind::Format,
           "{}: rope_scaling.high_freq_factor {} must be above low_freq_factor {}", src,
           rope_scaling.high_freq_factor, rope_scaling.low_freq_factor);
    positive(rope_scaling.original_context, "rope_scaling.original_max_position_embeddings");
  }
}

ModelConfig parse_hf_config(const std::string& text, const std::string& src) {
  try {
    return parse_hf_config_json(parse_json(text, src), src);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: unexpected JSON content: {}", src, e.what());
  }
}

ModelConfig parse_hf_config_json(const json& j, const std::string& src) {
  if (!j.is_object()) fail(ErrorKind::Format, "{}: expected a JSON object", src);
  ModelConfig c;
  std::string mt = j.contains("model_type") && j["model_type"].is_string()
                       ? j["model_type"].get<std::string>()
                       : "";
  if (mt == "llama" || mt == "mistral") {
    c.arch = "llama";
  } else if (mt == "qwen2") {
    c.arch = "qwen2";
    c.attn_bias = true;
  } else if (mt == "qwen3") {
    c.arch = "qwen3";
    c.qk_norm = true;
  } else {
    fail(ErrorKind::Unsupported,
         "{}: key 'model_type': '{}' is not supported (expected llama, mistral, qwen2 or qwen3)",
         src, mt);
  }
  c.n_vocab = get_count(j, src, "vocab_size", true);
  c.n_embd = get_count(j, src, "hidden_size", true);
  c.n_layer = get_count(j, src, "num_hidden_layers", true);
  c.n_head = get_count(j, src, "num_attention_heads", true);
  c.n_head_kv = get_count(j, src, "num_key_value_heads", false, c.n_head);
  c.n_ff = get_count(j, src, "intermediate_size", true);
  c.n_ctx = get_count(j, src, "max_position_embeddings", false, 2048);
  c.head_dim = get_count(j, src, "head_dim", false, c.n_head ? c.n_embd / c.n_head : 0);
  c.norm_eps = get_float(j, src, "rms_norm_eps", 1e-6f);
  c.rope_theta = get_float(j, src, "rope_theta", 10000.0f);
  c.tied_embeddings = get_bool(j, src, "tie_word_embeddings", false);
  c.attn_bias = get_bool(j, src, "attention_bias", c.attn_bias);
  c.bos_id = get_token_id(j, "bos_token_id", 1);
  c.eos_id = get_token_id(j, "eos_token_id", 2);
  if (j.contains("hidden_act") && j["hidden_act"] != "silu")
    fail(ErrorKind::Unsupported, "{}: key 'hidden_act': '{}' is not supported (expected silu)", src,
         j["hidden_act"].dump());
  if (j.contains("rope_scaling") && !j["rope_scaling"].is_null()) {
    const json& rs = j["rope_scaling"];
    if (!rs.is_object()) fail(ErrorKind::Format, "{}: key 'rope_scaling': expected an object", src);
    std::string type = rs.contains("rope_type") ? rs["rope_type"].get<std::string>()
                       : rs.contains("type")    ? rs["type"].get<std::string>()
                                                : "";
    auto& s = c.rope_scaling;
    s.factor = get_float(rs, src, "factor", 1.0f);
    if (type == "linear") {
      s.type = RopeScaling::Type::Linear;
    } else if (type == "llama3") {
      s.type = RopeScaling::Type::Llama3;
      s.low_freq_factor = get_float(rs, src, "low_freq_factor", 1.0f);
      s.high_freq_factor = get_float(rs, src, "high_freq_factor", 4.0f);
      s.original_context = get_count(rs, src, "original_max_position_embeddings", false, 8192);
    } else if (type != "default") {
      fail(ErrorKind::Unsupported,
           "{}: key 'rope_scaling.rope_type': '{}' is not supported (expected linear or llama3)",
           src, type);
    }
  }
  c.validate(src);
  return c;
}

ModelConfig read_hf_config(const std::string& path) {
  return parse_hf_config(read_text_file(path), path);
}

GenerationConfig read_generation_config(const std::string& path) {
  json j = parse_json(read_text_file(path), path);
  GenerationConfig g;
  if (!j.is_object()) fail(ErrorKind::Format, "{}: expected a JSON object", path);
  g.bos_id = get_token_id(j, "bos_token_id", -1);
  g.eos_id = get_token_id(j, "eos_token_id", -1);
  g.temperature = get_float(j, path, "temperature", -1);
  g.top_p = get_float(j, path, "top_p", -1);
  g.top_k = j.contains("top_k") && j["top_k"].is_number_integer() ? j["top_k"].get<int32_t>() : -1;
  return g;
}

std::vector<float> rope_inv_freq(const ModelConfig& c) {
  const uint32_t half = c.head_dim / 2;
  std::vector<float> f(half);
  for (uint32_t i = 0; i < half; ++i)
    f[i] =
        static_cast<float>(1.0 / std::pow(static_cast<double>(c.rope_theta), 2.0 * i / c.head_dim));
  const auto& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::Linear) {
    for (auto& x : f) x /= s.factor;
  } else if (s.type == RopeScaling::Type::Llama3) {
    // Llama 3.1: keep high frequencies, divide low ones by `factor`, blend in between.
    const double low_wavelen = s.original_context / s.low_freq_factor;
    const double high_wavelen = s.original_context / s.high_freq_factor;
    for (auto& x : f) {
      const double wavelen = 2 * M_PI / x;
      if (wavelen < high_wavelen) continue;
      if (wavelen > low_wavelen) {
        x = static_cast<float>(x / s.factor);
      } else {
        const double smooth = (s.original_context / wavelen - s.low_freq_factor) /
                              (s.high_freq_factor - s.low_freq_factor);
        x = static_cast<float>((1 - smooth) * x / s.factor + smooth * x);
      }
    }
  }
  return f;
}

}  // namespace lowbit

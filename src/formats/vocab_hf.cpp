// Hugging Face tokenizer files (tokenizer.json, vocab.json + merges.txt,
// tokenizer_config.json) and the GGUF tokenizer.ggml.* keys.
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/tokenizer.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json parse_json_file(const std::string& path) {
  try {
    return json::parse(read_text_file(path));
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON: {}", path, e.what());
  }
}

// Recognises the pre-tokenizer by its split regex (tokenizer.json) .
std::string pre_from_regex(const std::string& pattern) {
  if (pattern.find("\\p{N}{1,3}") != std::string::npos) return "llama-bpe";
  if (pattern.find("\\p{N}|") != std::string::npos) return "qwen2";
  return "";
}

std::string find_split_regex(const json& pt) {
  if (pt.is_object()) {
    if (pt.value("type", "") == "Split" && pt.contains("pattern") &&
        pt["pattern"].contains("Regex"))
      return pt["pattern"]["Regex"].get<std::string>();
    if (pt.contains("pretokenizers"))
      for (const auto& p : pt["pretokenizers"]) {
        auto r = find_split_regex(p);
        if (!r.empty()) return r;
      }
  }
  return "";
}

// Ids name rows of the embedding, so they stay below 2^24; and each id may
// run at most kMaxUnusedIds past `end` (the ids already in use), so a tiny
// file cannot demand a vocabulary of millions of "[PAD<id>]" holes.
constexpr int64_t kMaxUnusedIds = 1 << 16;

void check_token_id(int64_t id, size_t end, const std::string& what, const std::string& src) {
  if (id < 0 || id > (1 << 24))
    fail(ErrorKind::Format, "{}: {} has id {} out of range", src, what, id);
  if (id >= static_cast<int64_t>(end) + kMaxUnusedIds)
    fail(ErrorKind::Format,
         "{}: {} has id {}, which leaves more than {} ids unused ({} ids are in use)", src, what,
         id, kMaxUnusedIds, end);
}

// Added tokens: specials are control tokens, the others user-defined (as llama.cpp's converter).
void add_token(Vocab& v, int64_t id, const std::string& content, bool special,
               const std::string& src) {
  check_token_id(id, v.tokens.size(), "added token '" + content + "'", src);
  if (static_cast<size_t>(id) >= v.tokens.size()) {
    v.tokens.resize(id + 1);
    v.types.resize(id + 1, TokenType::Undefined);
  }
  v.tokens[id] = content;
  v.types[id] = special ? TokenType::Control : TokenType::UserDefined;
}

int32_t id_of(const Vocab& v, const json& cfg, const char* key) {
  if (!cfg.contains(key) || cfg[key].is_null()) return -1;
  std::string content =
      cfg[key].is_string() ? cfg[key].get<std::string>() : cfg[key].value("content", "");
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.tokens[i] == content) return static_cast<int32_t>(i);
  return -1;
}

// Ids no file named (holes in the id space) become "[PAD<id>]" user-defined tokens.
void fill_missing(Vocab& v) {
  for (size_t i = 0; i < v.tokens.size(); ++i)
    if (v.types[i] == TokenType::Undefined) {
      v.tokens[i] = "[PAD" + std::to_string(i) + "]";
      v.types[i] = TokenType::UserDefined;
    }
}

void apply_tokenizer_config(Vocab& v, const std::string& dir) {
  const fs::path p = fs::path(dir) / "tokenizer_config.json";
  if (!fs::exists(p)) return;
  json cfg = parse_json_file(p.string());
  if (!cfg.is_object()) fail(ErrorKind::Format, "{}: expected a JSON object", p.string());
  if (cfg.contains("added_tokens_decoder") && cfg["added_tokens_decoder"].is_object() &&
      v.kind == VocabKind::Bpe)
    for (auto& [id, tok] : cfg["added_tokens_decoder"].items()) {
      if (!tok.contains("content") || !tok["content"].is_string())
        fail(ErrorKind::Format, "{}: added_tokens_decoder['{}'] has no string 'content'",
             p.string(), id);
      int64_t n;
      try {
        n = std::stoll(id);
      } catch (...) {
        fail(ErrorKind::Format, "{}: added_tokens_decoder key '{}' is not a token id", p.string(),
             id);
      }
      add_token(v, n, tok["content"].get<std::string>(), tok.value("special", false), p.string());
    }
  fill_missing(v);
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean())
    v.add_bos = cfg["add_bos_token"].get<bool>();
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean())
    v.add_eos = cfg["add_eos_token"].get<bool>();
  if (int32_t id = id_of(v, cfg, "bos_token"); id >= 0) v.bos = id;
  if (int32_t id = id_of(v, cfg, "eos_token"); id >= 0) v.eos = id;
  if (int32_t id = id_of(v, cfg, "pad_token"); id >= 0) v.pad = id;
  if (v.kind == VocabKind::Bpe && v.pre == "default") {
    const std::string cls = cfg.value("tokenizer_class", "");
    if (cls.rfind("Qwen2Tokenizer", 0) == 0)
      v.pre = "qwen2";
    else if (cls.rfind("GPT2Tokenizer", 0) == 0)
      v.pre = "gpt2";
  }
}

Vocab bpe_base() {
  Vocab v;
  v.kind = VocabKind::Bpe;
  v.add_bos = false;
  v.add_space_prefix = false;
  return v;
}

void load_vocab_map(Vocab& v, const json& vocab, const std::string& src) {
  if (!vocab.is_object())
    fail(ErrorKind::Format, "{}: the vocabulary must be an object of token -> id", src);
  for (auto& [tok, id] : vocab.items()) {
    if (!id.is_number_integer())
      fail(ErrorKind::Format, "{}: token '{}': id must be an integer, got {}", src, tok, id.dump());
    int64_t n = id.get<int64_t>();
    check_token_id(n, vocab.size(), "token '" + tok + "'", src);
    if (static_cast<size_t>(n) >= v.tokens.size()) {
      v.tokens.resize(n + 1);
      v.types.resize(n + 1, TokenType::Undefined);
    }
    if (v.types[n] != TokenType::Undefined)
      fail(ErrorKind::Format, "{}: id {} is given to both '{}' and '{}'", src, n, v.tokens[n], tok);
    v.tokens[n] = tok;
    v.types[n] = TokenType::Normal;
  }
}

// Every merge must join two existing tokens into a token that exists.
void check_merges(const Vocab& v, const std::string& src) {
  std::unordered_map<std::string_view, bool> have;
  for (const auto& t : v.tokens) have[t] = true;
  for (size_t r = 0; r < v.merges.size(); ++r) {
    const std::string& m = v.merges[r];
    size_t sp = m.find(' ', 1);
    if (sp == std::string::npos)
      fail(ErrorKind::Format, "{}: merge #{} '{}' is not two tokens separated by a space", src, r,
           m);
    std::string a = m.substr(0, sp), b = m.substr(sp + 1);
    for (const std::string* part : {&a, &b})
      if (!have.count(*part))
        fail(ErrorKind::Format, "{}: merge #{} '{}': token '{}' is not in the vocabulary", src, r,
             m, *part);
    if (!have.count(a + b))
      fail(ErrorKind::Format, "{}: merge #{} '{}': merged token '{}' is not in the vocabulary", src,
           r, m, a + b);
  }
}

}  // namespace

Vocab parse_hf_tokenizer_json_impl(const std::string& text, const std::string& src);

Vocab parse_hf_tokenizer_json(const std::string& text, const std::string& src) {
  try {
    return parse_hf_tokenizer_json_impl(text, src);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: unexpected JSON content: {}", src, e.what());
  }
}

Vocab parse_hf_tokenizer_json_impl(const std::string& text, const std::string& src) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: not valid JSON: {}", src, e.what());
  }
  if (!j.is_object() || !j.contains("model") || !j["model"].is_object())
    fail(ErrorKind::Format, "{}: missing object key 'model'", src);
  const json& m = j["model"];
  if (m.value("type", "BPE") != "BPE")
    fail(ErrorKind::Unsupported, "{}: key 'model.type': '{}' is not supported (expected BPE)", src,
         m.value("type", ""));
  if (!m.contains("vocab")) fail(ErrorKind::Format, "{}: missing key 'model.vocab'", src);
  if (!m.contains("merges") || !m["merges"].is_array())
    fail(ErrorKind::Format, "{}: missing array key 'model.merges'", src);
  Vocab v = bpe_base();
  load_vocab_map(v, m["vocab"], src);
  for (const auto& mg : m["merges"]) {
    if (mg.is_string())
      v.merges.push_back(mg.get<std::string>());
    else if (mg.is_array() && mg.size() == 2 && mg[0].is_string() && mg[1].is_string())
      v.merges.push_back(mg[0].get<std::string>() + " " + mg[1].get<std::string>());
    else
      fail(ErrorKind::Format,
           "{}: key 'model.merges': entry {} is neither \"a b\" nor [\"a\", \"b\"]", src,
           mg.dump());
  }
  if (j.contains("added_tokens") && j["added_tokens"].is_array())
    for (const auto& t : j["added_tokens"]) {
      if (!t.contains("id") || !t["id"].is_number_integer() || !t.contains("content") ||
          !t["content"].is_string())
        fail(ErrorKind::Format,
             "{}: key 'added_tokens': entry {} needs integer 'id' and string 'content'", src,
             t.dump());
      add_token(v, t["id"].get<int64_t>(), t["content"].get<std::string>(),
                t.value("special", false), src);
    }
  fill_missing(v);
  std::string regex = j.contains("pre_tokenizer") ? find_split_regex(j["pre_tokenizer"]) : "";
  if (!regex.empty()) {
    v.pre = pre_from_regex(regex);
    if (v.pre.empty())
      fail(ErrorKind::Unsupported,
           "{}: key 'pre_tokenizer': split regex '{}' is not one lowbit knows", src, regex);
  } else {
    v.pre = "gpt2";
  }
  check_merges(v, src);
  return v;
}

Vocab read_hf_bpe_impl(const std::string& dir);

Vocab read_hf_bpe(const std::string& dir) {
  try {
    return read_hf_bpe_impl(dir);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: unexpected JSON content: {}", dir, e.what());
  }
}

Vocab read_hf_bpe_impl(const std::string& dir) {
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  Vocab v;
  if (fs::exists(tj)) {
    v = parse_hf_tokenizer_json(read_text_file(tj.string()), tj.string());
  } else {
    const fs::path vj = fs::path(dir) / "vocab.json", mt = fs::path(dir) / "merges.txt";
    if (!fs::exists(vj))
      fail(ErrorKind::Io, "{}: no tokenizer.json, tokenizer.model or vocab.json found", dir);
    if (!fs::exists(mt))
      fail(ErrorKind::Format, "{}: vocab.json is there but merges.txt is missing", dir);
    v = bpe_base();
    load_vocab_map(v, parse_json_file(vj.string()), vj.string());
    std::istringstream in(read_text_file(mt.string()));
    std::string line;
    for (size_t n = 1; std::getline(in, line); ++n) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (n == 1 && line.rfind("#version", 0) == 0)) continue;
      v.merges.push_back(line);
    }
    fill_missing(v);
    check_merges(v, mt.string());
  }
  apply_tokenizer_config(v, dir);
  const fs::path cfg = fs::path(dir) / "config.json";
  if (v.pre == "default" && fs::exists(cfg)) {
    std::string mt = parse_json_file(cfg.string()).value("model_type", "");
    if (mt == "qwen2" || mt == "qwen3") v.pre = "qwen2";
  }
  if (v.pre == "default") v.pre = "gpt2";
  v.validate(dir);
  return v;
}

Vocab read_hf_dir_vocab(const std::string& dir) {
  const fs::path spm = fs::path(dir) / "tokenizer.model";
  if (fs::exists(spm)) {
    Vocab v = read_spm_model(spm.string());
    try {
      apply_tokenizer_config(v, dir);
    } catch (const json::exception& e) {
      fail(ErrorKind::Format, "{}/tokenizer_config.json: unexpected JSON content: {}", dir,
           e.what());
    }
    return v;
  }
  return read_hf_bpe(dir);
}

Vocab read_gguf_vocab(const GgufFile& g) {
  Vocab v;
  const std::string model = g.get_string("tokenizer.ggml.model");
  if (model == "llama")
    v.kind = VocabKind::Spm;
  else if (model == "gpt2")
    v.kind = VocabKind::Bpe;
  else
    fail(ErrorKind::Unsupported,
         "{}: key 'tokenizer.ggml.model': '{}' is not supported (expected llama or gpt2)", g.path(),
         model);
  for (const auto& t : g.get_array("tokenizer.ggml.tokens", GgufType::STRING).array)
    v.tokens.push_back(t.s);
  if (g.find("tokenizer.ggml.scores"))
    for (const auto& s : g.get_array("tokenizer.ggml.scores", GgufType::F32).array)
      v.scores.push_back(static_cast<float>(s.f));
  if (g.find("tokenizer.ggml.token_type")) {
    for (const auto& t : g.get_array("tokenizer.ggml.token_type", GgufType::I32).array) {
      if (t.i < 0 || t.i > 6)
        fail(ErrorKind::Format, "{}: key 'tokenizer.ggml.token_type': unknown type {}", g.path(),
             t.i);
      v.types.push_back(static_cast<TokenType>(t.i));
    }
  } else {
    v.types.assign(v.tokens.size(), TokenType::Normal);
  }
  if (v.kind == VocabKind::Bpe) {
    for (const auto& m : g.get_array("tokenizer.ggml.merges", GgufType::STRING).array)
      v.merges.push_back(m.s);
    v.pre = g.find("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
    v.add_bos = false;
    v.add_space_prefix = false;
  }
  auto id = [&](const char* key, int32_t dflt) {
    auto x = g.get_uint_opt(key);
    return x ? static_cast<int32_t>(*x) : dflt;
  };
  v.bos = id("tokenizer.ggml.bos_token_id", v.kind == VocabKind::Spm ? 1 : -1);
  v.eos = id("tokenizer.ggml.eos_token_id", v.kind == VocabKind::Spm ? 2 : -1);
  v.unk = id("tokenizer.ggml.unknown_token_id", v.kind == VocabKind::Spm ? 0 : -1);
  v.pad = id("tokenizer.ggml.padding_token_id", -1);
  v.add_bos = g.get_bool_opt("tokenizer.ggml.add_bos_token").value_or(v.add_bos);
  v.add_eos = g.get_bool_opt("tokenizer.ggml.add_eos_token").value_or(v.add_eos);
  v.add_space_prefix =
      g.get_bool_opt("tokenizer.ggml.add_space_prefix").value_or(v.add_space_prefix);
  v.validate(g.path());
  return v;
}

void write_gguf_vocab(const Vocab& v, GgufWriter& w) {
  w.set("tokenizer.ggml.model", GgufValue::of_string(v.kind == VocabKind::Spm ? "llama" : "gpt2"));
  if (v.kind == VocabKind::Bpe) w.set("tokenizer.ggml.pre", GgufValue::of_string(v.pre));
  w.set("tokenizer.ggml.tokens", GgufValue::of_strings(v.tokens));
  if (!v.scores.empty()) w.set("tokenizer.ggml.scores", GgufValue::of_f32s(v.scores));
  std::vector<int32_t> types;
  for (auto t : v.types) types.push_back(static_cast<int32_t>(t));
  w.set("tokenizer.ggml.token_type", GgufValue::of_i32s(types));
  if (v.kind == VocabKind::Bpe) w.set("tokenizer.ggml.merges", GgufValue::of_strings(v.merges));
  if (v.bos >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::of_u32(v.bos));
  if (v.eos >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::of_u32(v.eos));
  if (v.unk >= 0) w.set("tokenizer.ggml.unknown_token_id", GgufValue::of_u32(v.unk));
  if (v.pad >= 0) w.set("tokenizer.ggml.padding_token_id", GgufValue::of_u32(v.pad));
  w.set("tokenizer.ggml.add_bos_token", GgufValue::of_bool(v.add_bos));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::of_bool(v.add_eos));
  if (v.kind == VocabKind::Spm)
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::of_bool(v.add_space_prefix));
}

}  // namespace lowbit

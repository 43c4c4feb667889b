// Tokenizers: SentencePiece BPE (score-ordered merges with byte fallback, as in Llama-2)
// and byte-level BPE (rank-ordered merges over GPT-2's byte-to-unicode alphabet, with a
// regex pre-tokenizer, as in GPT-2 / Llama-3 / Qwen2). Both behave as llama.cpp's
// tokenizers do for the same GGUF vocabulary, which is what the tests check.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace lowbit {

class GgufFile;
class GgufWriter;

// Same numbering as SentencePiece's piece types and GGUF's tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6
};

enum class VocabKind { Spm, Bpe };

struct Vocab {
  VocabKind kind = VocabKind::Spm;
  // BPE pre-tokenizer: "qwen2", "llama-bpe", "gpt2" (GGUF tokenizer.ggml.pre)
  std::string pre = "default";
  std::vector<std::string> tokens;
  std::vector<float> scores;      // SPM merge priority (higher merges first); empty for BPE
  std::vector<TokenType> types;
  std::vector<std::string> merges;  // BPE: "left right" in rank order
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = true, add_eos = false;
  bool add_space_prefix = true;  // SPM: prepend one space (SentencePiece add_dummy_prefix)

  size_t size() const { return tokens.size(); }
  // Pads with "[PAD<i>]" user-defined tokens up to `n` (models often round the embedding).
  void pad_to(size_t n);
  // Throws Format (naming `source`) on inconsistent sizes, out-of-range special ids,
  // duplicate token strings, or merges whose parts are not tokens.
  void validate(const std::string& source) const;
};

class Tokenizer {
 public:
  static std::unique_ptr<Tokenizer> create(Vocab vocab, const std::string& source = "vocabulary");
  virtual ~Tokenizer() = default;

  // add_special: BOS/EOS as the vocabulary asks. parse_special: control tokens written
  // in the text (e.g. "<|im_start|>") become their ids; user-defined tokens always do.
  std::vector<int32_t> encode(std::string_view text, bool add_special = true,
                              bool parse_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;
  // The bytes one token stands for (spaces restored, byte tokens as raw bytes).
  std::string token_to_piece(int32_t id) const;
  const Vocab& vocab() const { return vocab_; }
  int32_t find(std::string_view token) const;  // -1 when absent

 protected:
  explicit Tokenizer(Vocab v);
  void init_index(const std::string& source);  // fills token_to_id_ and special_by_length_
  // at_start: the fragment begins the text or follows a special token.
  virtual void encode_fragment(std::string_view text, bool at_start,
                               std::vector<int32_t>& out) const = 0;
  Vocab vocab_;
  std::unordered_map<std::string, int32_t> token_to_id_;
  std::vector<int32_t> special_by_length_;  // control + user-defined, longest first
};

// --- loaders (src/formats/vocab_*.cpp) ---
// SentencePiece tokenizer.model (protobuf ModelProto). Only BPE-type models.
Vocab read_spm_model(const std::string& path);
Vocab parse_spm_model(const uint8_t* data, size_t size, const std::string& source);
// Hugging Face byte-level BPE: a directory holding tokenizer.json, or vocab.json +
// merges.txt (+ tokenizer_config.json for added tokens).
Vocab read_hf_bpe(const std::string& dir);
Vocab parse_hf_tokenizer_json(const std::string& json_text, const std::string& source);
// llama2.c tokenizer (tok512.bin): int32 max_token_length, then per token: f32 score,
// int32 length, bytes. Spaces are stored as ' ' (restored to U+2581 here).
Vocab read_llama2c_tokenizer(const std::string& path, uint32_t n_vocab);
// GGUF tokenizer.ggml.* keys.
Vocab read_gguf_vocab(const GgufFile& g);
void write_gguf_vocab(const Vocab& v, GgufWriter& w);

// Finds the tokenizer files in a Hugging Face model directory (tokenizer.model, or
// tokenizer.json / vocab.json + merges.txt) and applies tokenizer_config.json.
Vocab read_hf_dir_vocab(const std::string& dir);

}  // namespace lowbit

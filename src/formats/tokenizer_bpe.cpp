// Byte-level BPE: a regex splits the text into words (the pre-tokenizer), each word's
// bytes are spelled in GPT-2's printable byte alphabet, and adjacent symbols are merged
// in order of merge rank (lowest first, ties leftmost) while the pair is in the merge list.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <map>

#include "lowbit/error.h"
#include "tokenizer_impl.h"

namespace lowbit {
namespace {

// Pre-tokenizer patterns as llama.cpp spells them (explicit case classes instead of
// (?i:...) so Unicode case folding cannot widen the contractions).
const char* pre_tokenizer_regex(const std::string& pre) {
  static const std::map<std::string, const char*> patterns = {
      {"gpt2",
       "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
      {"default",
       "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
      {"llama-bpe",
       "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
       "\\p{N}{1,3}| "
       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
      {"qwen2",
       "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
       "\\p{N}| "
       "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
  };
  auto it = patterns.find(pre);
  return it == patterns.end() ? nullptr : it->second;
}

class BpeTokenizer : public Tokenizer {
 public:
  BpeTokenizer(Vocab v, const std::string& source) : Tokenizer(std::move(v)) {
    init_index(source);
    const char* pattern = pre_tokenizer_regex(vocab_.pre);
    if (!pattern)
      fail(ErrorKind::Unsupported,
           "{}: BPE pre-tokenizer '{}' is not supported (expected qwen2, llama-bpe or gpt2)",
           source, vocab_.pre);
    // The merges are checked before the regex is compiled: the destructor does not run when
    // the constructor throws, so nothing may be allocated by hand yet (found by fuzz_gguf:
    // a merge without a space leaked the compiled regex).
    for (size_t r = 0; r < vocab_.merges.size(); ++r) {
      const std::string& m = vocab_.merges[r];
      size_t sp = m.find(' ', 1);
      if (sp == std::string::npos)
        fail(ErrorKind::Format, "{}: merge #{} '{}' is not two tokens separated by a space", source,
             r, m);
      merge_rank_.emplace(m, static_cast<int32_t>(r));
    }
    int err = 0;
    PCRE2_SIZE err_off = 0;
    regex_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                           PCRE2_UTF | PCRE2_UCP | PCRE2_NO_UTF_CHECK, &err, &err_off, nullptr);
    if (!regex_)
      fail(ErrorKind::Unsupported, "{}: cannot compile pre-tokenizer regex (error {} at {})",
           source, err, err_off);
    match_ = pcre2_match_data_create_from_pattern(regex_, nullptr);
  }
  ~BpeTokenizer() override {
    pcre2_match_data_free(match_);
    pcre2_code_free(regex_);
  }

 protected:
  void encode_fragment(std::string_view text, bool, std::vector<int32_t>& out) const override {
    // Invalid UTF-8 cannot go through a UTF regex; such text is split as one word.
    if (!valid_utf8(text)) {
      encode_word(text, out);
      return;
    }
    size_t pos = 0;
    while (pos < text.size()) {
      int rc = pcre2_match(regex_, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                           PCRE2_NO_UTF_CHECK, match_, nullptr);
      if (rc < 0) {
        encode_word(text.substr(pos), out);
        break;
      }
      PCRE2_SIZE* ov = pcre2_get_ovector_pointer(match_);
      if (ov[0] > pos) encode_word(text.substr(pos, ov[0] - pos), out);  // unmatched gap
      if (ov[1] == ov[0]) {  // empty match: step one character
        size_t n = utf8_chars(text.substr(ov[0], 4)).front().size();
        encode_word(text.substr(ov[0], n), out);
        pos = ov[0] + n;
        continue;
      }
      encode_word(text.substr(ov[0], ov[1] - ov[0]), out);
      pos = ov[1];
    }
  }

 private:
  static bool valid_utf8(std::string_view s) {
    for (auto ch : utf8_chars(s)) {
      const size_t want = utf8_sequence_length(static_cast<uint8_t>(ch[0]));
      if (want == 0 || ch.size() != want) return false;
      for (size_t i = 1; i < ch.size(); ++i)
        if ((static_cast<uint8_t>(ch[i]) & 0xc0) != 0x80) return false;
    }
    return true;
  }

  void encode_word(std::string_view word, std::vector<int32_t>& out) const {
    std::string text;
    for (char c : word) text += byte_to_unicode(static_cast<uint8_t>(c));
    // Adjacent pieces merge when "left right" is in the merge list; the lowest rank wins.
    std::string key;
    auto pieces =
        merge_pairs(text, [&](std::string_view l, std::string_view r) -> std::optional<double> {
          key.assign(l);
          key += ' ';
          key += r;
          auto it = merge_rank_.find(key);
          if (it == merge_rank_.end()) return std::nullopt;
          return -static_cast<double>(it->second);
        });
    for (auto piece : pieces) {
      int32_t id = find(piece);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (auto ch : utf8_chars(piece)) {  // fall back to single byte symbols
        int32_t bid = find(ch);
        if (bid >= 0) out.push_back(bid);
        else if (vocab_.unk >= 0) out.push_back(vocab_.unk);
      }
    }
  }

  pcre2_code* regex_ = nullptr;
  pcre2_match_data* match_ = nullptr;
  std::unordered_map<std::string, int32_t> merge_rank_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_bpe_tokenizer(Vocab v, const std::string& source) {
  return std::make_unique<BpeTokenizer>(std::move(v), source);
}

}  // namespace lowbit

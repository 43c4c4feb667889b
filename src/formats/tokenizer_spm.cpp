// SentencePiece BPE encoding: start from single UTF-8 characters and repeatedly merge the
// adjacent pair whose concatenation is a vocabulary token with the highest score (ties:
// leftmost first). Characters that end up outside the vocabulary become byte tokens
// <0xXX>. Spaces are written as U+2581 and one is prepended when add_space_prefix is set.
#include "tokenizer_impl.h"

namespace lowbit {
namespace {

class SpmTokenizer : public Tokenizer {
 public:
  SpmTokenizer(Vocab v, const std::string& source) : Tokenizer(std::move(v)) {
    init_index(source);
    for (int b = 0; b < 256; ++b) {
      char hex[8];
      std::snprintf(hex, sizeof hex, "<0x%02X>", b);
      int32_t id = find(hex);
      if (id < 0) id = find(std::string(1, static_cast<char>(b)));
      byte_token_[b] = id >= 0 ? id : vocab_.unk;
    }
  }

 protected:
  void encode_fragment(std::string_view fragment, bool at_start,
                       std::vector<int32_t>& out) const override {
    std::string text;
    if (at_start && vocab_.add_space_prefix) text = "\xe2\x96\x81";
    for (char c : fragment) {
      if (c == ' ') text += "\xe2\x96\x81";
      else text += c;
    }
    if (text.empty()) return;

    // Adjacent pieces merge when their concatenation is a token; the higher score wins.
    auto pieces =
        merge_pairs(text, [&](std::string_view l, std::string_view r) -> std::optional<double> {
          const int32_t id = find(std::string_view(l.data(), l.size() + r.size()));
          if (id < 0) return std::nullopt;
          return vocab_.scores[id];
        });
    for (auto piece : pieces) {
      const int32_t id = find(piece);
      if (id >= 0) {
        out.push_back(id);
      } else {
        for (char c : piece) out.push_back(byte_token_[static_cast<uint8_t>(c)]);
      }
    }
  }

 private:
  int32_t byte_token_[256];
};

}  // namespace

std::unique_ptr<Tokenizer> make_spm_tokenizer(Vocab v, const std::string& source) {
  return std::make_unique<SpmTokenizer>(std::move(v), source);
}

}  // namespace lowbit

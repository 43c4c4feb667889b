// SentencePiece BPE encoding: start from single UTF-8 characters and repeatedly merge the
// adjacent pair whose concatenation is a vocabulary token with the highest score (ties:
// leftmost first). Characters that end up outside the vocabulary become byte tokens
// <0xXX>. Spaces are written as U+2581 and one is prepended when add_space_prefix is set.
#include <queue>

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
  void encode_fragment(std::string_view fragment, bool at_start, std::vector<int32_t>& out) const override {
    std::string text;
    if (at_start && vocab_.add_space_prefix) text = "\xe2\x96\x81";
    for (char c : fragment) {
      if (c == ' ') text += "\xe2\x96\x81";
      else text += c;
    }
    if (text.empty()) return;

    struct Symbol { size_t pos, len; int prev, next; };
    std::vector<Symbol> sym;
    int idx = 0;
    for (auto ch : utf8_chars(text)) {
      sym.push_back({static_cast<size_t>(ch.data() - text.data()), ch.size(), idx - 1, idx + 1});
      ++idx;
    }
    sym.back().next = -1;

    struct Bigram { int left, right; float score; size_t len; };
    auto worse = [](const Bigram& a, const Bigram& b) { return a.score < b.score || (a.score == b.score && a.left > b.left); };
    std::priority_queue<Bigram, std::vector<Bigram>, decltype(worse)> queue(worse);
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const size_t len = sym[l].len + sym[r].len;
      int32_t id = find(std::string_view(text).substr(sym[l].pos, len));
      if (id < 0) return;
      queue.push({l, r, vocab_.scores[id], len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      Bigram b = queue.top();
      queue.pop();
      Symbol &l = sym[b.left], &r = sym[b.right];
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale entry
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = 0; i != -1; i = sym[i].next) {
      std::string_view piece = std::string_view(text).substr(sym[i].pos, sym[i].len);
      int32_t id = find(piece);
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

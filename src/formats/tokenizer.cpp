// Tokenizer front end shared by both algorithms: special-token partitioning, BOS/EOS,
// decoding. The algorithms live in tokenizer_spm.cpp and tokenizer_bpe.cpp.
#include "lowbit/tokenizer.h"

#include <algorithm>
#include <charconv>
#include <queue>
#include <set>

#include "lowbit/error.h"
#include "tokenizer_impl.h"

namespace lowbit {

void Vocab::pad_to(size_t n) {
  if (kind == VocabKind::Spm && scores.size() < tokens.size()) scores.resize(tokens.size(), 0.0f);
  while (tokens.size() < n) {
    tokens.push_back("[PAD" + std::to_string(tokens.size()) + "]");
    types.push_back(TokenType::UserDefined);
    if (!scores.empty() || kind == VocabKind::Spm)
      scores.push_back(0.0f);  // SPM needs one score per token
  }
}

void Vocab::validate(const std::string& src) const {
  if (tokens.empty()) fail(ErrorKind::Format, "{}: the vocabulary is empty", src);
  if (types.size() != tokens.size())
    fail(ErrorKind::Format, "{}: {} token types for {} tokens", src, types.size(), tokens.size());
  if (kind == VocabKind::Spm && scores.size() != tokens.size())
    fail(ErrorKind::Format, "{}: {} scores for {} tokens", src, scores.size(), tokens.size());
  auto check_id = [&](int32_t id, const char* what) {
    if (id < -1 || id >= static_cast<int64_t>(tokens.size()))
      fail(ErrorKind::Format, "{}: {} token id {} is outside the vocabulary of {} tokens", src,
           what, id, tokens.size());
  };
  check_id(bos, "BOS");
  check_id(eos, "EOS");
  check_id(unk, "UNK");
  check_id(pad, "PAD");
  if (kind == VocabKind::Bpe && merges.empty())
    fail(ErrorKind::Format, "{}: byte-level BPE vocabulary has no merges", src);
}

Tokenizer::Tokenizer(Vocab v) : vocab_(std::move(v)) {}

std::unique_ptr<Tokenizer> Tokenizer::create(Vocab v, const std::string& source) {
  v.validate(source);
  std::unique_ptr<Tokenizer> t = v.kind == VocabKind::Spm
                                     ? make_spm_tokenizer(std::move(v), source)
                                     : make_bpe_tokenizer(std::move(v), source);
  return t;
}

void Tokenizer::init_index(const std::string& source) {
  token_to_id_.reserve(vocab_.size());
  for (size_t i = 0; i < vocab_.size(); ++i) {
    // Later duplicates lose, as in llama.cpp (the first id keeps the text).
    token_to_id_.emplace(vocab_.tokens[i], static_cast<int32_t>(i));
    if (vocab_.types[i] == TokenType::Control || vocab_.types[i] == TokenType::UserDefined)
      if (!vocab_.tokens[i].empty()) special_by_length_.push_back(static_cast<int32_t>(i));
  }
  std::stable_sort(special_by_length_.begin(), special_by_length_.end(), [&](int32_t a, int32_t b) {
    return vocab_.tokens[a].size() > vocab_.tokens[b].size();
  });
}

int32_t Tokenizer::find(std::string_view token) const {
  auto it = token_to_id_.find(std::string(token));
  return it == token_to_id_.end() ? -1 : it->second;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  // Split the text around special tokens: fragments are either raw text or one id.
  struct Fragment { std::string_view text; int32_t id; };
  std::vector<Fragment> frags;
  if (!text.empty()) frags.push_back({text, -1});
  for (int32_t id : special_by_length_) {
    if (!parse_special && vocab_.types[id] == TokenType::Control) continue;
    const std::string& tok = vocab_.tokens[id];
    std::vector<Fragment> next;
    for (const auto& f : frags) {
      if (f.id >= 0) {
        next.push_back(f);
        continue;
      }
      std::string_view rest = f.text;
      for (size_t pos; (pos = rest.find(tok)) != std::string_view::npos;) {
        if (pos) next.push_back({rest.substr(0, pos), -1});
        next.push_back({{}, id});
        rest = rest.substr(pos + tok.size());
      }
      if (!rest.empty()) next.push_back({rest, -1});
    }
    frags.swap(next);
  }
  std::vector<int32_t> out;
  if (add_special && vocab_.add_bos && vocab_.bos >= 0) out.push_back(vocab_.bos);
  // As llama.cpp does, a text fragment at the start or right after a special token
  // counts as the start of text (SentencePiece then prepends its space).
  bool after_special = true;
  for (const auto& f : frags) {
    if (f.id >= 0) out.push_back(f.id);
    else encode_fragment(f.text, after_special, out);
    after_special = f.id >= 0;
  }
  if (add_special && vocab_.add_eos && vocab_.eos >= 0) out.push_back(vocab_.eos);
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string s;
  bool at_start = true;
  for (int32_t id : ids) {
    if (id < 0 || id >= static_cast<int32_t>(vocab_.size()))
      fail(ErrorKind::Argument, "token id {} is outside the vocabulary of {} tokens", id,
           vocab_.size());
    if (skip_special && vocab_.types[id] == TokenType::Control) continue;
    std::string piece = token_to_piece(id);
    // SentencePiece drops the space it added in front of the text.
    if (at_start && vocab_.kind == VocabKind::Spm && vocab_.add_space_prefix && !piece.empty() &&
        piece[0] == ' ')
      piece.erase(0, 1);
    at_start = false;
    s += piece;
  }
  return s;
}

}  // namespace lowbit

namespace lowbit {

size_t utf8_sequence_length(uint8_t c) {
  return c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
}

std::vector<std::string_view> utf8_chars(std::string_view s) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = std::min(std::max<size_t>(1, utf8_sequence_length(static_cast<uint8_t>(s[i]))),
                              s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

namespace {
struct ByteMap {
  std::string to[256];
  std::unordered_map<std::string, int> from;
  ByteMap() {
    auto encode = [](uint32_t cp) {
      std::string s;
      if (cp < 0x80) {
        s += static_cast<char>(cp);
      } else {
        s += static_cast<char>(0xc0 | (cp >> 6));
        s += static_cast<char>(0x80 | (cp & 0x3f));
      }
      return s;
    };
    // Printable bytes map to themselves; the rest to code points 256, 257, ...
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
      to[b] = encode(printable ? b : next++);
      from[to[b]] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}
}  // namespace

std::vector<std::string_view> merge_pairs(std::string_view text, const PairPriority& priority) {
  struct Symbol { size_t pos, len; int prev, next; };
  std::vector<Symbol> sym;
  for (auto ch : utf8_chars(text)) {
    const int i = static_cast<int>(sym.size());
    sym.push_back({static_cast<size_t>(ch.data() - text.data()), ch.size(), i - 1, i + 1});
  }
  if (sym.empty()) return {};
  sym.back().next = -1;
  struct Pair { int left, right; double priority; size_t len; };
  auto worse = [](const Pair& a, const Pair& b) {
    return a.priority < b.priority || (a.priority == b.priority && a.left > b.left);
  };
  std::priority_queue<Pair, std::vector<Pair>, decltype(worse)> queue(worse);
  auto try_add = [&](int l, int r) {
    if (l < 0 || r < 0) return;
    auto p = priority(text.substr(sym[l].pos, sym[l].len), text.substr(sym[r].pos, sym[r].len));
    if (p) queue.push({l, r, *p, sym[l].len + sym[r].len});
  };
  for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    const Pair b = queue.top();
    queue.pop();
    Symbol &l = sym[b.left], &r = sym[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale: a side merged since
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  std::vector<std::string_view> pieces;
  for (int i = 0; i != -1; i = sym[i].next) pieces.push_back(text.substr(sym[i].pos, sym[i].len));
  return pieces;
}

const std::string& byte_to_unicode(uint8_t b) { return byte_map().to[b]; }
int byte_from_unicode(std::string_view ch) {
  auto it = byte_map().from.find(std::string(ch));
  return it == byte_map().from.end() ? -1 : it->second;
}

std::string Tokenizer::token_to_piece(int32_t id) const {
  const std::string& t = vocab_.tokens.at(id);
  const TokenType type = vocab_.types.at(id);
  if (type == TokenType::Control || type == TokenType::UserDefined || type == TokenType::Unknown)
    return t;
  if (vocab_.kind == VocabKind::Spm) {
    // from_chars, not stoi: a byte token such as "<0x\x15A>" is no hex number, and stoi's
    // std::invalid_argument escaped as a crash (found by fuzz_spm_model). Such a token is
    // spelled as text below.
    unsigned byte = 0;
    if (type == TokenType::Byte && t.size() == 6 && t.rfind("<0x", 0) == 0 &&
        std::from_chars(t.data() + 3, t.data() + 5, byte, 16).ptr == t.data() + 5)
      return std::string(1, static_cast<char>(byte));
    std::string s;
    for (size_t i = 0; i < t.size(); ++i) {
      if (t.compare(i, 3, "\xe2\x96\x81") == 0) {
        s += ' ';
        i += 2;
      } else {
        s += t[i];
      }
    }
    return s;
  }
  std::string s;
  for (auto ch : utf8_chars(t)) {
    int b = byte_from_unicode(ch);
    if (b >= 0) s += static_cast<char>(b);
    else s += ch;
  }
  return s;
}

}  // namespace lowbit

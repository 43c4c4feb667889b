// SentencePiece tokenizer.model reader: a protobuf ModelProto, decoded by hand.
//   ModelProto   1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece 1: piece (string), 2: score (float), 3: type (enum, = TokenType)
//   TrainerSpec  3: model_type (1 unigram, 2 bpe), 35: byte_fallback,
//                40: unk_id, 41: bos_id, 42: eos_id, 43: pad_id
//   NormalizerSpec 3: add_dummy_prefix (default true)
#include <cstring>

#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/tokenizer.h"

namespace lowbit {
namespace {

class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, size_t n, const std::string& src, const char* what)
      : p_(p), end_(p + n), src_(src), what_(what) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) fail(ErrorKind::Format, "{}: truncated varint in {}", src_, what_);
      uint8_t b = *p_++;
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    fail(ErrorKind::Format, "{}: varint longer than 10 bytes in {}", src_, what_);
  }
  // Reads a field key; returns the field number and sets `wire`.
  uint32_t key(uint32_t* wire) {
    uint64_t k = varint();
    *wire = k & 7;
    return static_cast<uint32_t>(k >> 3);
  }
  std::pair<const uint8_t*, size_t> bytes() {
    uint64_t n = varint();
    if (n > static_cast<uint64_t>(end_ - p_))
      fail(ErrorKind::Format, "{}: length {} in {} runs past the end ({} bytes left)", src_, n,
           what_, end_ - p_);
    auto r = std::make_pair(p_, static_cast<size_t>(n));
    p_ += n;
    return r;
  }
  float fixed32() {
    if (end_ - p_ < 4) fail(ErrorKind::Format, "{}: truncated float in {}", src_, what_);
    float f;
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case 0: varint(); break;
      case 1: advance(8); break;
      case 2: bytes(); break;
      case 5: advance(4); break;
      default:
        fail(ErrorKind::Format, "{}: unknown protobuf wire type {} in {}", src_, wire, what_);
    }
  }

 private:
  void advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n)
      fail(ErrorKind::Format, "{}: truncated field in {}", src_, what_);
    p_ += n;
  }
  const uint8_t* p_;
  const uint8_t* end_;
  const std::string& src_;
  const char* what_;
};

}  // namespace

Vocab parse_spm_model(const uint8_t* data, size_t size, const std::string& src) {
  Vocab v;
  v.kind = VocabKind::Spm;
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  int model_type = 1;
  ProtoReader top(data, size, src, "ModelProto");
  while (!top.done()) {
    uint32_t wire;
    uint32_t field = top.key(&wire);
    if (field == 1 && wire == 2) {
      auto [p, n] = top.bytes();
      ProtoReader pr(p, n, src, "SentencePiece");
      std::string piece;
      float score = 0;
      int type = 1;
      while (!pr.done()) {
        uint32_t w;
        uint32_t f = pr.key(&w);
        if (f == 1 && w == 2) {
          auto [q, m] = pr.bytes();
          piece.assign(reinterpret_cast<const char*>(q), m);
        } else if (f == 2 && w == 5) {
          score = pr.fixed32();
        } else if (f == 3 && w == 0) {
          type = static_cast<int>(pr.varint());
        } else {
          pr.skip(w);
        }
      }
      if (type < 1 || type > 6)
        fail(ErrorKind::Format, "{}: piece #{} '{}' has unknown type {}", src, v.tokens.size(),
             piece, type);
      v.tokens.push_back(piece);
      v.scores.push_back(score);
      v.types.push_back(static_cast<TokenType>(type));
    } else if (field == 2 && wire == 2) {
      auto [p, n] = top.bytes();
      ProtoReader tr(p, n, src, "TrainerSpec");
      while (!tr.done()) {
        uint32_t w;
        uint32_t f = tr.key(&w);
        if (w == 0 && (f == 3 || (f >= 40 && f <= 43))) {
          auto val = static_cast<int32_t>(static_cast<int64_t>(tr.varint()));
          if (f == 3) model_type = val;
          if (f == 40) v.unk = val;
          if (f == 41) v.bos = val;
          if (f == 42) v.eos = val;
          if (f == 43) v.pad = val;
        } else {
          tr.skip(w);
        }
      }
    } else if (field == 3 && wire == 2) {
      auto [p, n] = top.bytes();
      ProtoReader nr(p, n, src, "NormalizerSpec");
      while (!nr.done()) {
        uint32_t w;
        uint32_t f = nr.key(&w);
        if (f == 3 && w == 0) v.add_space_prefix = nr.varint() != 0;
        else nr.skip(w);
      }
    } else {
      top.skip(wire);
    }
  }
  if (v.tokens.empty())
    fail(ErrorKind::Format, "{}: no pieces found; not a SentencePiece model", src);
  if (model_type != 2)
    fail(ErrorKind::Unsupported,
         "{}: SentencePiece model type {} is not supported (only BPE, type 2)", src, model_type);
  v.validate(src);
  return v;
}

Vocab read_spm_model(const std::string& path) {
  auto f = MappedFile::open(path);
  return parse_spm_model(f->data(), f->size(), path);
}

Vocab read_llama2c_tokenizer(const std::string& path, uint32_t n_vocab) {
  auto f = MappedFile::open(path);
  const uint8_t* p = f->data();
  const uint8_t* end = p + f->size();
  auto need = [&](size_t n, const std::string& what) {
    if (static_cast<size_t>(end - p) < n)
      fail(ErrorKind::Format, "{}: truncated while reading {} (need {} bytes, {} left)", path, what,
           n, end - p);
  };
  need(4, "max_token_length");
  int32_t max_len;
  std::memcpy(&max_len, p, 4);
  p += 4;
  if (max_len <= 0 || max_len > 4096)
    fail(ErrorKind::Format, "{}: max_token_length {} is out of range", path, max_len);
  Vocab v;
  v.kind = VocabKind::Spm;
  v.unk = 0;
  v.bos = 1;
  v.eos = 2;
  for (uint32_t i = 0; i < n_vocab; ++i) {
    const std::string what = fmt::format("token #{}", i);
    need(8, what);
    float score;
    int32_t len;
    std::memcpy(&score, p, 4);
    std::memcpy(&len, p + 4, 4);
    p += 8;
    if (len < 0 || len > max_len)
      fail(ErrorKind::Format, "{}: token #{} has length {} (max_token_length {})", path, i, len,
           max_len);
    need(len, what);
    std::string s(reinterpret_cast<const char*>(p), len);
    p += len;
    TokenType type = TokenType::Normal;
    if (i == 0) {
      type = TokenType::Unknown;
      s = "<unk>";
    } else if (i == 1 || i == 2) {
      type = TokenType::Control;  // exported as "\n<s>\n" and "\n</s>\n"
      s = i == 1 ? "<s>" : "</s>";
    } else if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s.back() == '>') {
      type = TokenType::Byte;
    } else {
      std::string r;
      for (char c : s) {
        if (c == ' ') r += "\xe2\x96\x81";
        else r += c;
      }
      s = r;
    }
    v.tokens.push_back(s);
    v.scores.push_back(score);
    v.types.push_back(type);
  }
  v.validate(path);
  return v;
}

}  // namespace lowbit

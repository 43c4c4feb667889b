#include "logits_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "core/output_guard.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"

namespace lowbit {
namespace {
constexpr uint64_t kHeaderBytes = 8 + 6 * 4 + 8;  // magic, six u32, u64 token count
}  // namespace

LogitsWriter::LogitsWriter(const std::string& path, const LogitsHeader& h)
    : file_(path), top_k_(h.top_k) {
  file_.write("LBLOGIT1", 8);
  const uint32_t u[6] = {h.n_ctx, h.n_vocab, h.n_chunks, h.protocol, h.top_k, h.first_scored};
  file_.write(u, sizeof u);
  const uint64_t n = h.tokens.size();
  file_.write(&n, 8);
  file_.write(h.tokens.data(), 4 * n);
}

void LogitsWriter::write(const float* logp, size_t n_vocab, float logp_target) {
  file_.write(&logp_target, 4);
  if (top_k_ == 0) {
    std::vector<uint16_t> h(n_vocab);
    for (size_t i = 0; i < n_vocab; ++i) h[i] = f32_to_f16(std::max(logp[i], -65000.0f));
    file_.write(h.data(), 2 * n_vocab);
    return;
  }
  std::vector<int32_t> ids(n_vocab);
  std::iota(ids.begin(), ids.end(), 0);
  const size_t k = std::min<size_t>(top_k_, n_vocab);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return logp[a] > logp[b]; });
  std::vector<uint8_t> rec(8 * top_k_);
  for (size_t i = 0; i < top_k_; ++i) {
    const int32_t id = i < k ? ids[i] : -1;
    const float lp = i < k ? logp[id] : -INFINITY;
    std::memcpy(&rec[8 * i], &id, 4);
    std::memcpy(&rec[8 * i + 4], &lp, 4);
  }
  file_.write(rec.data(), rec.size());
}

LogitsReader::LogitsReader(const std::string& path) : path_(path) {
  const output_guard::InputFile in = output_guard::open_input_file(path);
  f_ = ::fdopen(in.fd, "rb");
  if (!f_) {
    ::close(in.fd);
    fail(ErrorKind::Io, "{}: cannot open", path);
  }
  size_ = in.size;
  // The destructor does not run when the constructor throws: close the file here (found by
  // fuzz_logits: every rejected file leaked its descriptor until fopen failed).
  try {
    read_header();
  } catch (...) {
    std::fclose(f_);
    throw;
  }
  input_id_ = in.id;
  output_guard::remember_input(in.id);
}

void LogitsReader::read_header() {
  const std::string& path = path_;
  char magic[8];
  uint32_t u[6];
  uint64_t n = 0;
  if (std::fread(magic, 1, 8, f_) != 8 || std::memcmp(magic, "LBLOGIT1", 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit logits file (expected magic LBLOGIT1)", path);
  if (std::fread(u, 4, 6, f_) != 6 || std::fread(&n, 8, 1, f_) != 1)
    fail(ErrorKind::Format, "{}: truncated header", path);
  h_ = {u[0], u[1], u[2], u[3], u[4], u[5], {}};
  if (h_.n_vocab == 0 || h_.n_vocab > (1u << 24) || h_.top_k > h_.n_vocab)
    fail(ErrorKind::Format, "{}: implausible header (n_vocab {}, top_k {}, {} tokens)", path,
         h_.n_vocab, h_.top_k, n);
  // Sizes are checked against the file before anything is allocated (found by fuzz_logits: a
  // 40-byte file claiming 2^32 tokens made the reader zero 16 GB).
  if (n > (size_ - kHeaderBytes) / 4)
    fail(ErrorKind::Format, "{}: {} tokens run past the end of the file ({} bytes)", path, n,
         size_);
  h_.tokens.resize(n);
  if (std::fread(h_.tokens.data(), 4, n, f_) != n)
    fail(ErrorKind::Format, "{}: truncated token list", path);
}

LogitsReader::~LogitsReader() {
  if (f_) std::fclose(f_);
  output_guard::forget_input(input_id_);
}

void LogitsReader::next(BaseRecord& r) {
  const uint64_t record = 4 + (h_.top_k == 0 ? 2ull * h_.n_vocab : 8ull * h_.top_k);
  const long at = std::ftell(f_);
  if (at < 0 || static_cast<uint64_t>(at) > size_ || record > size_ - static_cast<uint64_t>(at))
    fail(ErrorKind::Format, "{}: ends before the last scored position", path_);
  bool ok = std::fread(&r.logp_target, 4, 1, f_) == 1;
  if (h_.top_k == 0) {
    std::vector<uint16_t> h(h_.n_vocab);
    ok = ok && std::fread(h.data(), 2, h.size(), f_) == h.size();
    r.logp.resize(h_.n_vocab);
    for (size_t i = 0; i < h.size(); ++i) r.logp[i] = f16_to_f32(h[i]);
  } else {
    r.top.resize(h_.top_k);
    for (auto& [id, lp] : r.top)
      ok = ok && std::fread(&id, 4, 1, f_) == 1 && std::fread(&lp, 4, 1, f_) == 1;
  }
  if (!ok) fail(ErrorKind::Format, "{}: ends before the last scored position", path_);
}

}  // namespace lowbit

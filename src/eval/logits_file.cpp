#include "logits_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <numeric>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"

namespace lowbit {
namespace {
constexpr uint64_t kHeaderBytes = 8 + 6 * 4 + 8;  // magic, six u32, u64 token count
}  // namespace

LogitsWriter::LogitsWriter(const std::string& path, const LogitsHeader& h) : path_(path), top_k_(h.top_k) {
  tmp_ = path + ".tmp." + std::to_string(getpid());
  f_ = std::fopen(tmp_.c_str(), "wb");
  if (!f_) fail(ErrorKind::Io, "{}: cannot create", path);
  std::fwrite("LBLOGIT1", 1, 8, f_);
  const uint32_t u[6] = {h.n_ctx, h.n_vocab, h.n_chunks, h.protocol, h.top_k, h.first_scored};
  std::fwrite(u, 4, 6, f_);
  const uint64_t n = h.tokens.size();
  std::fwrite(&n, 8, 1, f_);
  std::fwrite(h.tokens.data(), 4, n, f_);
}

LogitsWriter::~LogitsWriter() {
  if (f_) std::fclose(f_);
  if (!done_) std::remove(tmp_.c_str());
}

void LogitsWriter::write(const float* logp, size_t n_vocab, float logp_target) {
  std::fwrite(&logp_target, 4, 1, f_);
  if (top_k_ == 0) {
    std::vector<uint16_t> h(n_vocab);
    for (size_t i = 0; i < n_vocab; ++i) h[i] = f32_to_f16(std::max(logp[i], -65000.0f));
    std::fwrite(h.data(), 2, n_vocab, f_);
    return;
  }
  std::vector<int32_t> ids(n_vocab);
  std::iota(ids.begin(), ids.end(), 0);
  const size_t k = std::min<size_t>(top_k_, n_vocab);
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int32_t a, int32_t b) { return logp[a] > logp[b]; });
  for (size_t i = 0; i < top_k_; ++i) {
    const int32_t id = i < k ? ids[i] : -1;
    const float lp = i < k ? logp[id] : -INFINITY;
    std::fwrite(&id, 4, 1, f_);
    std::fwrite(&lp, 4, 1, f_);
  }
}

void LogitsWriter::commit() {
  if (std::fclose(f_) != 0) {
    f_ = nullptr;
    fail(ErrorKind::Io, "{}: write failed", path_);
  }
  f_ = nullptr;
  if (std::rename(tmp_.c_str(), path_.c_str()) != 0) fail(ErrorKind::Io, "{}: cannot rename temporary file", path_);
  done_ = true;
}

LogitsReader::LogitsReader(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "rb");
  if (!f_) fail(ErrorKind::Io, "{}: cannot open", path);
  // The destructor does not run when the constructor throws: close the file here (found by
  // fuzz_logits: every rejected file leaked its descriptor until fopen failed).
  try {
    read_header();
  } catch (...) {
    std::fclose(f_);
    throw;
  }
}

void LogitsReader::read_header() {
  const std::string& path = path_;
  char magic[8];
  uint32_t u[6];
  uint64_t n = 0;
  if (std::fread(magic, 1, 8, f_) != 8 || std::memcmp(magic, "LBLOGIT1", 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit logits file (expected magic LBLOGIT1)", path);
  if (std::fread(u, 4, 6, f_) != 6 || std::fread(&n, 8, 1, f_) != 1) fail(ErrorKind::Format, "{}: truncated header", path);
  h_ = {u[0], u[1], u[2], u[3], u[4], u[5], {}};
  if (h_.n_vocab == 0 || h_.n_vocab > (1u << 24) || n > (1ull << 32) || h_.top_k > h_.n_vocab)
    fail(ErrorKind::Format, "{}: implausible header (n_vocab {}, top_k {}, {} tokens)", path, h_.n_vocab, h_.top_k, n);
  // Sizes are checked against the file before anything is allocated (found by fuzz_logits: a
  // 40-byte file claiming 2^32 tokens made the reader zero 16 GB).
  struct stat st;
  if (fstat(fileno(f_), &st) != 0) fail(ErrorKind::Io, "{}: cannot stat", path);
  size_ = static_cast<uint64_t>(st.st_size);
  if (n > (size_ - kHeaderBytes) / 4)
    fail(ErrorKind::Format, "{}: {} tokens run past the end of the file ({} bytes)", path, n,
         size_);
  h_.tokens.resize(n);
  if (std::fread(h_.tokens.data(), 4, n, f_) != n) fail(ErrorKind::Format, "{}: truncated token list", path);
}

LogitsReader::~LogitsReader() {
  if (f_) std::fclose(f_);
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
    for (auto& [id, lp] : r.top) ok = ok && std::fread(&id, 4, 1, f_) == 1 && std::fread(&lp, 4, 1, f_) == 1;
  }
  if (!ok) fail(ErrorKind::Format, "{}: ends before the last scored position", path_);
}

}  // namespace lowbit

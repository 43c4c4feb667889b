#include "logits_file.h"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <numeric>

#include "core/output_guard.h"
#include "lowbit/error.h"
#include "lowbit/float_convert.h"

namespace lowbit {

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
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(::fdopen(in.fd, "rb"), std::fclose);
  if (!file) {
    ::close(in.fd);
    fail(ErrorKind::Io, "{}: cannot open", path);
  }
  f_ = file.get();
  char magic[8];
  uint32_t u[6];
  uint64_t n = 0;
  if (std::fread(magic, 1, 8, f_) != 8 || std::memcmp(magic, "LBLOGIT1", 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit logits file (expected magic LBLOGIT1)", path);
  if (std::fread(u, 4, 6, f_) != 6 || std::fread(&n, 8, 1, f_) != 1) fail(ErrorKind::Format, "{}: truncated header", path);
  h_ = {u[0], u[1], u[2], u[3], u[4], u[5], {}};
  if (h_.n_vocab == 0 || h_.n_vocab > (1u << 24) || n > (in.size - 40) / 4 || h_.top_k > h_.n_vocab)
    fail(ErrorKind::Format, "{}: implausible header (n_vocab {}, top_k {}, {} tokens)", path, h_.n_vocab, h_.top_k, n);
  h_.tokens.resize(n);
  if (std::fread(h_.tokens.data(), 4, n, f_) != n) fail(ErrorKind::Format, "{}: truncated token list", path);
  file.release();  // from here the destructor closes it
  input_id_ = in.id;
  output_guard::remember_input(in);
}

LogitsReader::~LogitsReader() {
  if (f_) std::fclose(f_);
  output_guard::forget_input({-1, 0, input_id_});
}

void LogitsReader::next(BaseRecord& r) {
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

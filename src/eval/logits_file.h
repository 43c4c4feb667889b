// The base-distribution file of `lowbit perplexity --save-logits` (little-endian):
//   char[8] "LBLOGIT1"; u32 n_ctx, n_vocab, n_chunks, protocol, top_k, first_scored;
//   u64 n_tokens; i32 tokens[n_tokens];
//   then one record per scored position, chunk by chunk:
//     f32 logp_target     log-probability of the token that actually follows
//     top_k == 0: u16 logp[n_vocab]  (f16 bits of each token's log-probability)
//     top_k  > 0: top_k × (i32 id, f32 logp), most likely first
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/file_io.h"

namespace lowbit {

struct LogitsHeader {
  uint32_t n_ctx = 0, n_vocab = 0, n_chunks = 0, protocol = 0, top_k = 0, first_scored = 0;
  std::vector<int32_t> tokens;
};

// One scored position: log-probabilities of the base model.
struct BaseRecord {
  float logp_target = 0;
  std::vector<float> logp;                 // full: n_vocab entries
  std::vector<std::pair<int32_t, float>> top;  // top-k: (id, logp), descending
};

// Every write is checked (a full disk is an error naming the file); nothing is left at
// `path` unless commit() is reached.
class LogitsWriter {
 public:
  LogitsWriter(const std::string& path, const LogitsHeader& h);
  void write(const float* logp, size_t n_vocab, float logp_target);  // logp: full log-softmax
  void commit() { file_.commit(); }

 private:
  AtomicFileWriter file_;
  uint32_t top_k_;
};

class LogitsReader {
 public:
  explicit LogitsReader(const std::string& path);
  ~LogitsReader();
  const LogitsHeader& header() const { return h_; }
  void next(BaseRecord& r);  // throws Format when the file ends early

 private:
  void read_header();  // (the constructor closes the file when it throws)

  std::string path_;
  std::FILE* f_ = nullptr;
  LogitsHeader h_;
  uint64_t size_ = 0;  // of the file, to check each record fits before allocating it
  std::pair<uint64_t, uint64_t> input_id_{};  // (device, inode): not to be replaced meanwhile
};

}  // namespace lowbit

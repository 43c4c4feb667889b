// Inputs the fuzz targets once crashed on (fuzz/regressions/<target>_*): each must now be
// rejected with a lowbit::Error naming the problem. The fuzz build also replays them through
// the fuzz targets themselves (ctest fuzz_regressions_<target>).
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "eval/logits_file.h"
#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "test_support.h"

namespace lowbit {
namespace {

std::string regression(const std::string& name) {
  return std::string(LOWBIT_SOURCE_DIR) + "/fuzz/regressions/" + name;
}

size_t open_descriptors() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator("/proc/self/fd")) ++n;
  return n;
}

// fuzz_imatrix: a '.counts' of 4.6e27 overflowed the conversion to uint64_t (UBSan).
TEST(FuzzRegression, ImatrixCountTooLargeIsAFormatError) {
  const std::string msg = test::expect_error(
      [] { read_calibration_stats(regression("imatrix_counts_overflow.gguf")); });
  EXPECT_NE(msg.find("blk.0.attn_q.weight.counts' is 4.59"), std::string::npos) << msg;
}

// fuzz_logits: a 138-byte file claiming 2^32 tokens made the reader allocate and zero 16 GB.
TEST(FuzzRegression, LogitsTokenCountPastTheFileIsAFormatError) {
  const std::string msg =
      test::expect_error([] { LogitsReader r(regression("logits_token_count_oom.logits")); });
  EXPECT_NE(msg.find("4294967296 tokens run past the end of the file (138 bytes)"),
            std::string::npos)
      << msg;
}

// fuzz_logits: a rejected file kept its descriptor open (the constructor threw before the
// destructor could close it), until fopen failed with EMFILE.
TEST(FuzzRegression, RejectedLogitsFilesAreClosed) {
  const size_t before = open_descriptors();
  for (int i = 0; i < 8; ++i)
    test::expect_error([] { LogitsReader r(regression("logits_token_count_oom.logits")); });
  EXPECT_EQ(open_descriptors(), before);
}

// A record that the file cannot hold is refused before anything is allocated for it.
TEST(FuzzRegression, LogitsRecordPastTheFileIsAFormatError) {
  test::TempDir dir;
  const uint32_t u[6] = {4, 1u << 24, 1, 0, 0, 1};  // n_ctx, n_vocab 2^24, full records
  const uint64_t n = 0;
  std::string bytes = "LBLOGIT1";
  bytes.append(reinterpret_cast<const char*>(u), sizeof u);
  bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
  bytes.append(8, '\0');  // a few bytes of a 32 MB record
  test::write_file(dir.file("base.logits"), bytes);
  LogitsReader r(dir.file("base.logits"));
  BaseRecord rec;
  const std::string msg = test::expect_error([&] { r.next(rec); });
  EXPECT_NE(msg.find("ends before the last scored position"), std::string::npos) << msg;
  EXPECT_TRUE(rec.logp.empty());
}

}  // namespace
}  // namespace lowbit

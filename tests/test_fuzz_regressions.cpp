// Inputs the fuzz targets once crashed on (fuzz/regressions/<target>_*): each must now be
// rejected with a lowbit::Error naming the problem. The fuzz build also replays them through
// the fuzz targets themselves (ctest fuzz_regressions_<target>).
#include <gtest/gtest.h>

#include <string>

#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "test_support.h"

namespace lowbit {
namespace {

std::string regression(const std::string& name) {
  return std::string(LOWBIT_SOURCE_DIR) + "/fuzz/regressions/" + name;
}

// fuzz_imatrix: a '.counts' of 4.6e27 overflowed the conversion to uint64_t (UBSan).
TEST(FuzzRegression, ImatrixCountTooLargeIsAFormatError) {
  const std::string msg = test::expect_error(
      [] { read_calibration_stats(regression("imatrix_counts_overflow.gguf")); });
  EXPECT_NE(msg.find("blk.0.attn_q.weight.counts' is 4.59"), std::string::npos) << msg;
}

}  // namespace
}  // namespace lowbit

// The same input gives the same bytes whatever the thread count (core/blas.h: products in
// blocks fixed by the shape; every reduction in a fixed order).
#include <gtest/gtest.h>

#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;

// Runs `args` + `-o OUT -t N` for each thread count and expects one set of bytes.
void expect_same_bytes(std::vector<std::string> args, const std::vector<int>& threads) {
  test::TempDir d;
  std::string first;
  for (int t : threads) {
    const std::string out = d.file("out-" + std::to_string(t) + ".gguf");
    std::vector<std::string> run = args;
    for (const std::string& a : {std::string("-o"), out, std::string("-t"), std::to_string(t)})
      run.push_back(a);
    const auto r = test::run_cli(run);
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const std::string bytes = test::read_file(out);
    if (first.empty())
      first = bytes;
    else
      EXPECT_TRUE(bytes == first) << args[0] << " " << args[1] << ": -t " << t << " differs from -t "
                                  << threads[0];
  }
}

TEST(Determinism, FilesDoNotDependOnTheThreadCount) {
  const std::string model = shared_path("models/tinyllm-8m");
  const std::string text = shared_path("data/calibration/calib-en-1mb.txt");
  const std::vector<std::string> calib = {"--calib", text, "--calib-samples", "4",
                                          "--calib-ctx", "128", "-q"};
  auto with = [&](std::vector<std::string> a, bool calibrated) {
    if (calibrated) a.insert(a.end(), calib.begin(), calib.end());
    return a;
  };
  expect_same_bytes(with({"calibrate", model, "--hessian"}, true), {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q4_K_M", "--method", "rtn", "-q"}, false),
                    {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q4_K_M", "--method", "gptq"}, true), {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q3_K_M", "--method", "awq"}, true), {1, 3});
}

}  // namespace
}  // namespace lowbit

// The same input gives the same bytes whatever the thread count (core/blas.h: products in
// blocks fixed by the shape; every reduction in a fixed order).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "lowbit/job.h"
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
      EXPECT_TRUE(bytes == first) << args[0] << " " << args[1] << ": -t " << t
                                  << " differs from -t " << threads[0];
  }
}

TEST(Determinism, FilesDoNotDependOnTheThreadCount) {
  const std::string model = shared_path("models/tinyllm-8m");
  const std::string text = shared_path("data/calibration/calib-en-1mb.txt");
  const std::vector<std::string> calib = {"--calib", text, "--calib-samples", "4", "--calib-ctx",
                                          "128",     "-q"};
  auto with = [&](std::vector<std::string> a, bool calibrated) {
    if (calibrated) a.insert(a.end(), calib.begin(), calib.end());
    return a;
  };
  expect_same_bytes(with({"calibrate", model, "--hessian"}, true), {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q4_K_M", "--method", "rtn", "-q"}, false),
                    {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q4_K_M", "--method", "gptq"}, true),
                    {1, 2, 3});
  expect_same_bytes(with({"quantize", model, "--type", "Q3_K_M", "--method", "awq"}, true), {1, 3});
}

QuantizeJob small_gptq_job(const std::string& output) {
  QuantizeJob job;
  job.model = shared_path("models/tinyllm-8m");
  job.output = output;
  GgufTarget t;
  t.type = "Q4_K_M";
  job.target = t;
  job.method.kind = Method::Gptq;
  job.calib.text = shared_path("data/calibration/calib-en-1mb.txt");
  job.calib.samples = 4;
  job.calib.ctx = 128;
  job.threads = 2;
  return job;
}

TEST(Resume, AKilledRunResumesToTheSameBytes) {
  test::TempDir d;
  const std::string whole = d.file("whole.gguf"), out = d.file("resumed.gguf");
  run_quantize_job(small_gptq_job(whole));
  EXPECT_FALSE(std::filesystem::exists(whole + ".lowbit-checkpoint"));  // removed once written

  // kill -9 right after the fourth block (of 8) is done and checkpointed
  const pid_t pid = fork();
  if (pid == 0) {
    run_quantize_job(small_gptq_job(out), [](const Progress& p) {
      if (p.stage == Stage::Block && p.done == 4) raise(SIGKILL);
      return true;
    });
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  ASSERT_TRUE(std::filesystem::exists(out + ".lowbit-checkpoint/state.bin"));
  EXPECT_FALSE(std::filesystem::exists(out));

  // another job's checkpoint is refused by name
  QuantizeJob other = small_gptq_job(out);
  other.resume = true;
  other.calib.seed = 7;
  EXPECT_NE(test::expect_error([&] { run_quantize_job(other); }).find("lowbit-checkpoint"),
            std::string::npos);

  QuantizeJob resumed = small_gptq_job(out);
  resumed.resume = true;
  std::vector<size_t> blocks;
  run_quantize_job(resumed, [&](const Progress& p) {
    if (p.stage == Stage::Block) blocks.push_back(p.done);
    return true;
  });
  EXPECT_EQ(blocks, (std::vector<size_t>{5, 6, 7, 8}));  // only the blocks not done
  EXPECT_TRUE(test::read_file(out) == test::read_file(whole));
  EXPECT_FALSE(std::filesystem::exists(out + ".lowbit-checkpoint"));
}

}  // namespace
}  // namespace lowbit

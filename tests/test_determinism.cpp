// The same input gives the same bytes whatever the thread count (core/blas.h: products in
// blocks fixed by the shape; every reduction in a fixed order).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>

#include "lowbit/calibration.h"
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

// Runs `job` in a child process that kills itself with SIGKILL (kill -9) once `stage`
// reports `done`; true when the child ended that way.
bool killed_at(const QuantizeJob& job, Stage stage, size_t done) {
  const pid_t pid = fork();
  if (pid == 0) {
    run_quantize_job(job, [stage, done](const Progress& p) {
      if (p.stage == stage && p.done == done) raise(SIGKILL);
      return true;
    });
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST(Resume, AKilledRunResumesToTheSameBytes) {
  test::TempDir d;
  const std::string whole = d.file("whole.gguf"), out = d.file("resumed.gguf");
  run_quantize_job(small_gptq_job(whole));
  EXPECT_FALSE(std::filesystem::exists(whole + ".lowbit-checkpoint"));  // removed once written

  // kill -9 right after the fourth block (of 8) is done and checkpointed
  ASSERT_TRUE(killed_at(small_gptq_job(out), Stage::Block, 4));
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

// QAT killed at step 5 of 6 (checkpoints every 2 steps) continues from step 4 and writes
// the bytes of an uninterrupted run; the loss curve covers all six steps.
TEST(Resume, AKilledQatRunResumesToTheSameBytes) {
  test::TempDir d;
  auto job_to = [&](const std::string& out) {
    QuantizeJob job = small_gptq_job(out);
    job.method.kind = Method::Qat;
    job.method.qat.start = Method::Rtn;  // the end-to-end phase alone
    GgufTarget t;
    t.type = "Q4_0";
    job.target = t;
    job.calib.ctx = 64;
    job.distill.steps = 6;
    job.distill.checkpoint_every = 2;
    return job;
  };
  const std::string whole = d.file("whole.gguf"), out = d.file("resumed.gguf");
  run_quantize_job(job_to(whole));
  EXPECT_FALSE(std::filesystem::exists(whole + ".lowbit-checkpoint"));

  ASSERT_TRUE(killed_at(job_to(out), Stage::Train, 5));
  EXPECT_FALSE(std::filesystem::exists(out));
  ASSERT_TRUE(std::filesystem::exists(out + ".lowbit-checkpoint/distill.bin"));

  QuantizeJob resumed = job_to(out);
  resumed.resume = true;
  resumed.distill.loss_curve = d.file("loss.csv");
  run_quantize_job(resumed);
  EXPECT_EQ(test::read_file(out), test::read_file(whole));
  EXPECT_FALSE(std::filesystem::exists(out + ".lowbit-checkpoint"));
  const std::string csv = test::read_file(d.file("loss.csv"));
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), 7) << csv;  // the header and 6 steps
}

// A tensor-by-tensor job (static GPTQ here) with --resume keeps each finished tensor; killed,
// it continues from them. Runs over MPI ranks keep them the same way (tests/mpi/run.sh).
TEST(Resume, ATensorByTensorRunResumesToTheSameBytes) {
  test::TempDir d;
  CalibrationOptions co;
  co.n_samples = 4;
  co.n_ctx = 64;
  co.hessian = true;
  const std::string stats = d.file("h.gguf");
  write_calibration_stats(
      collect_calibration_stats(load_model(shared_path("models/tinyllm-8m")),
                                shared_path("data/calibration/calib-en-1mb.txt"), co),
      stats);
  auto job_to = [&](const std::string& out) {
    QuantizeJob job = small_gptq_job(out);
    job.calib.text.clear();
    job.calib.stats = stats;
    return job;
  };
  const std::string whole = d.file("whole.gguf"), out = d.file("resumed.gguf");
  run_quantize_job(job_to(whole));
  EXPECT_FALSE(std::filesystem::exists(whole + ".lowbit-checkpoint"));  // none without --resume

  QuantizeJob keeping = job_to(out);
  keeping.resume = true;  // nothing to resume yet: a fresh run that keeps its tensors
  ASSERT_TRUE(killed_at(keeping, Stage::Tensor, 20));  // kill -9 once 20 tensors are in
  EXPECT_FALSE(std::filesystem::exists(out));
  size_t kept = 0;
  for (const auto& e : std::filesystem::directory_iterator(out + ".lowbit-checkpoint"))
    kept += e.path().filename().string().rfind("done-", 0) == 0;
  EXPECT_GE(kept, 19u);

  QuantizeJob other = job_to(out);  // another job's checkpoint is refused
  other.resume = true;
  GgufTarget q3;
  q3.type = "Q3_K_M";
  other.target = q3;
  EXPECT_NE(test::expect_error([&] { run_quantize_job(other); }).find("another job"),
            std::string::npos);

  // Tensor 0's figures in its checkpoint (u32 name length, name, f64 rel_rms_error, ...)
  // changed: the resumed run must report them, since it takes the tensor from there.
  const std::string first = out + ".lowbit-checkpoint/done-0.bin";
  std::string saved = test::read_file(first);
  uint32_t len = 0;
  std::memcpy(&len, saved.data(), 4);
  const double marker = 12345.0;
  std::memcpy(saved.data() + 4 + len, &marker, 8);
  test::write_file(first, saved);

  QuantizeJob resumed = job_to(out);
  resumed.resume = true;
  const QuantizeReport r = run_quantize_job(resumed);
  EXPECT_EQ(r.tensors[0].rel_rms_error, marker);
  EXPECT_TRUE(test::read_file(out) == test::read_file(whole));
  EXPECT_FALSE(std::filesystem::exists(out + ".lowbit-checkpoint"));
}

}  // namespace
}  // namespace lowbit

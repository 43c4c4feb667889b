// Hostile and careless input: each case fails with one line naming the file, flag or key,
// exit 1, leaves no output and never touches the input (docs/RELIABILITY.md).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lowbit/calibration.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/job.h"
#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using test::shared_path;
using test::TempDir;

const std::string kWiki = "data/wikitext-2/wikitext-2-test.txt";

std::string stories() {
  return shared_path("models/stories260K/stories260K.bin");
}

void expect_failure(const test::CliResult& r, const std::string& what) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_NE(r.err.find(what), std::string::npos) << "expected '" << what << "' in: " << r.err;
  EXPECT_EQ(r.err.find("internal error"), std::string::npos) << r.err;
}

// The files of `dir` (not recursing), to check that nothing was left behind.
std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

// tinyllm-8m with its config.json changed by `edit`; the weights and tokenizer are links.
std::string model_with_config(const TempDir& d, const std::function<void(nlohmann::json&)>& edit) {
  const fs::path src = shared_path("models/tinyllm-8m"), dst = d.file("model");
  fs::create_directory(dst);
  for (const char* f : {"model.safetensors", "tokenizer.model", "tokenizer_config.json"})
    fs::create_symlink(src / f, dst / f);
  nlohmann::json j = nlohmann::json::parse(read_text_file((src / "config.json").string()));
  edit(j);
  test::write_file((dst / "config.json").string(), j.dump());
  return dst.string();
}

TEST(Hostile, AnOutputNeverReplacesAnInput) {
  TempDir d;
  const std::string model = d.file("m.gguf"), alias = d.file("alias.gguf");
  ASSERT_EQ(test::run_cli({"convert", stories(), "-o", model}).exit_code, 0);
  fs::create_symlink(model, alias);
  const std::string before = test::read_file(model), text = shared_path(kWiki);
  const std::vector<std::vector<std::string>> runs = {
      {"calibrate", model, "--calib", text, "-o", model, "-q"},
      {"calibrate", model, "--calib", text, "-o", text, "-q"},
      {"perplexity", model, "-f", text, "--chunks", "1", "--ctx", "64", "--save-logits", alias},
      {"convert", model, "-o", alias},
      {"quantize", model, "-o", alias, "--type", "Q8_0", "-q"},
      {"quantize", model, "-o", model, "--type", "Q4_K_M", "--calib", text, "-q"},
  };
  for (const auto& args : runs) {
    SCOPED_TRACE(args[0]);
    expect_failure(test::run_cli(args), "the output is the input");
    EXPECT_EQ(test::read_file(model), before);
  }
  EXPECT_EQ(entries(d.path()), (std::vector<std::string>{"alias.gguf", "m.gguf"}));
}

TEST(Hostile, ZeroOrNonFiniteConfigNumbersAreRejectedByName) {
  struct Case {
    std::function<void(nlohmann::json&)> edit;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](nlohmann::json& j) { j["rope_theta"] = 0; }, "rope_theta"},
      {[](nlohmann::json& j) { j["rope_theta"] = -5e5; }, "rope_theta"},
      {[](nlohmann::json& j) { j["rms_norm_eps"] = -1; }, "epsilon"},
      {[](nlohmann::json& j) {
         j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 0}};
       },
       "rope_scaling.factor"},
      {[](nlohmann::json& j) {
         j["rope_scaling"] = {{"rope_type", "llama3"},
                              {"factor", 8},
                              {"low_freq_factor", 4},
                              {"high_freq_factor", 4}};
       },
       "high_freq_factor"},
  };
  for (const Case& c : cases) {
    TempDir d;
    const std::string dir = model_with_config(d, c.edit);
    EXPECT_NE(test::expect_error([&] { load_model(dir); }).find(c.message), std::string::npos)
        << c.message;
  }
}

// llama.cpp's legacy imatrix layout: one entry, `values` as its squared sums.
void write_legacy_imatrix(const std::string& path, const std::string& name,
                          std::vector<float> values) {
  std::ofstream f(path, std::ios::binary);
  const int32_t n = 1, len = static_cast<int32_t>(name.size()), calls = 1;
  const int32_t nval = static_cast<int32_t>(values.size());
  f.write(reinterpret_cast<const char*>(&n), 4);
  f.write(reinterpret_cast<const char*>(&len), 4);
  f.write(name.data(), len);
  f.write(reinterpret_cast<const char*>(&calls), 4);
  f.write(reinterpret_cast<const char*>(&nval), 4);
  f.write(reinterpret_cast<const char*>(values.data()), 4 * values.size());
}

TEST(Hostile, StatisticsWithANaNAreRejectedNamingTheTensor) {
  TempDir d;
  std::vector<float> v(64, 1.0f);
  v[17] = NAN;
  write_legacy_imatrix(d.file("nan.dat"), "blk.0.attn_q.weight", v);
  const std::string e = test::expect_error([&] { read_calibration_stats(d.file("nan.dat")); });
  EXPECT_NE(e.find("blk.0.attn_q.weight"), std::string::npos) << e;
  EXPECT_NE(e.find("column 17"), std::string::npos) << e;
  v[17] = -1;
  write_legacy_imatrix(d.file("neg.dat"), "blk.0.attn_q.weight", v);
  EXPECT_NE(
      test::expect_error([&] { read_calibration_stats(d.file("neg.dat")); }).find("column 17"),
      std::string::npos);
}

TEST(Hostile, ConfigNumbersAreCheckedBeforeMemoryIsTaken) {
  TempDir d;
  // A vocabulary of 2^31 - 1 entries would be padded (gigabytes) before any shape check.
  const std::string big_vocab =
      model_with_config(d, [](nlohmann::json& j) { j["vocab_size"] = 2147483647; });
  EXPECT_NE(test::expect_error([&] { load_model(big_vocab); }).find("vocab_size"),
            std::string::npos);

  // 2^24 positions: the KV cache is sized by the context asked for, not by this.
  TempDir d2;
  const std::string long_ctx =
      model_with_config(d2, [](nlohmann::json& j) { j["max_position_embeddings"] = 1 << 24; });
  const auto r = test::run_cli({"perplexity", long_ctx, "-f", shared_path(kWiki), "--ctx", "64",
                                "--chunks", "1", "-q", "-t", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
}

TEST(Hostile, ConfigThatIsNotARegularFileIsRefusedWithoutBlocking) {
  for (const char* kind : {"device", "fifo", "directory"}) {
    SCOPED_TRACE(kind);
    TempDir d;
    const std::string dir = model_with_config(d, [](nlohmann::json&) {});
    const std::string config = dir + "/config.json";
    fs::remove(config);
    if (std::string(kind) == "device") fs::create_symlink("/dev/zero", config);
    if (std::string(kind) == "fifo") {
      ASSERT_EQ(mkfifo(config.c_str(), 0600), 0);
    }
    if (std::string(kind) == "directory") fs::create_directory(config);
    const std::string e = test::expect_error([&] { load_model(dir); });
    EXPECT_NE(e.find("config.json"), std::string::npos) << e;
    EXPECT_NE(e.find("not a regular file"), std::string::npos) << e;
  }
}

TEST(Hostile, SaveLogitsReportsAFullDiskAndLeavesNothing) {
  TempDir d;
  // The file size limit makes writes fail as a full disk does (SIGXFSZ ignored: EFBIG).
  const std::string cmd = "trap '' XFSZ; ulimit -f 16; exec '" + std::string(LOWBIT_CLI_PATH) +
                          "' perplexity '" + stories() + "' -f '" + shared_path(kWiki) +
                          "' --ctx 128 --chunks 4 -q --save-logits '" + d.file("base.logits") + "'";
  const auto r = test::run_process({"/bin/sh", "-c", cmd});
  expect_failure(r, "write failed");
  EXPECT_NE(r.err.find("base.logits"), std::string::npos) << r.err;
  EXPECT_TRUE(entries(d.path()).empty());
}

// Runs `body` in a child process and returns its wait status.
int in_child(const std::function<void()>& body) {
  const pid_t pid = fork();
  if (pid == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(Hostile, ASignalRemovesUnfinishedOutputs) {
  TempDir d;
  const int status = in_child([&] {
    clean_up_outputs_on_signals();
    AtomicFileWriter file(d.file("out.gguf"));
    file.write("partial");
    TemporaryDirectory dir(d.file("out-dir"));
    test::write_file(dir.file("model.safetensors"), "partial");
    raise(SIGTERM);
  });
  ASSERT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGTERM);
  EXPECT_TRUE(entries(d.path()).empty());

  // With a stop flag the first signal only asks the job to stop; the second one ends it.
  const int twice = in_child([&] {
    static std::atomic<bool> stop{false};
    clean_up_outputs_on_signals(&stop);
    AtomicFileWriter file(d.file("out.gguf"));
    raise(SIGINT);
    if (!stop || entries(d.path()).size() != 1) _exit(3);
    raise(SIGINT);
  });
  ASSERT_TRUE(WIFSIGNALED(twice)) << "exit " << WEXITSTATUS(twice);
  EXPECT_EQ(WTERMSIG(twice), SIGINT);
  EXPECT_TRUE(entries(d.path()).empty());
}

TEST(Hostile, TemporariesOfDeadProcessesAreRemovedByTheNextRun) {
  TempDir d;
  const pid_t dead = fork();
  if (dead == 0) _exit(0);
  waitpid(dead, nullptr, 0);
  const std::string out = d.file("out.gguf"), tag = std::to_string(dead);
  test::write_file(out + ".tmp." + tag, "stale");
  fs::create_directory(out + ".lowbit-tmp-" + tag);
  test::write_file(out + ".lowbit-tmp-" + tag + "/model.safetensors", "stale");
  test::write_file(out + ".tmp.1", "a live process's");  // pid 1 always runs
  write_file_atomic(out, "new");
  EXPECT_EQ(entries(d.path()), (std::vector<std::string>{"out.gguf", "out.gguf.tmp.1"}));
}

TEST(Hostile, ThreadCountsAreBoundedWithANote) {
  const auto r = test::run_cli({"run", stories(), "-p", "Once", "-n", "2", "-t", "100000"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("note: -t 100000"), std::string::npos) << r.err;
  expect_failure(test::run_cli({"run", stories(), "-p", "Once", "-t", "-3"}), "-t");
}

TEST(Hostile, CarelessSettingsAreRejectedNotIgnored) {
  TempDir d;
  const std::string text = shared_path(kWiki), model = stories();
  test::write_file(d.file("recipe.json"),
                   R"({"format": "lowbit-recipe", "tensors": [)"
                   R"({"name": "blk.0.attn_norm.weight", "type": "Q4_K"}]})");
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"quantize", model, "-o", d.file("a.gguf"), "--bpw", "0", "--calib", text}, "bpw 0"},
      {{"quantize", model, "-o", d.file("a.gguf"), "--bpw", "nan", "--calib", text}, "bpw nan"},
      {{"calibrate", model, "--calib", text, "-o", d.file("s.gguf"), "--calib-samples", "0"},
       "at least one window"},
      {{"quantize", model, "-o", d.file("a.gguf"), "--type", "Q8_0", "--calib", text, "--calib-ctx",
        "100000"},
       "context of 100000 tokens"},
      {{"perplexity", model, "-f", text, "--ctx", "100000"}, "context of 100000 tokens"},
      {{"perplexity", model, "-f", text, "--ctx", "64", "--chunks", "100000"},
       "100000 chunks asked for"},
      {{"quantize", model, "-o", d.file("a.gguf"), "--type", "Q8_0", "--recipe",
        d.file("recipe.json")},
       "blk.0.attn_norm.weight' is a vector"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.message);
    expect_failure(test::run_cli(c.args), c.message);
  }
  EXPECT_EQ(entries(d.path()), std::vector<std::string>{"recipe.json"});
}

TEST(Hostile, ImpossibleRequestsFailBeforeTheWork) {
  TempDir d;
  const std::string text = shared_path(kWiki);
  // calibrate into a missing directory: no window is computed first
  const auto r =
      test::run_cli({"calibrate", stories(), "--calib", text, "-o", d.file("no/s.gguf")});
  expect_failure(r, "no/s.gguf: cannot create output");
  EXPECT_EQ(r.err.find("calibrating"), std::string::npos) << r.err;

  // a budget below the smallest mix, or a recipe path in a missing directory: no sensitivity
  const Model m = load_model(shared_path("models/tinyllm-8m"));
  for (const bool tiny_budget : {true, false}) {
    QuantizeJob job;
    job.model = m.source;
    job.output = d.file("q.gguf");
    job.calib.text = text;
    GgufTarget t;
    t.type = "Q4_K_M";
    t.budget = Budget{0, tiny_budget ? 0.5 : 4.0};
    if (!tiny_budget) t.save_recipe = d.file("no/recipe.json");
    job.target = t;
    std::vector<Stage> stages;
    const std::string e = test::expect_error([&] {
      run_quantize_job(m, job, [&](const Progress& p) {
        stages.push_back(p.stage);
        return true;
      });
    });
    EXPECT_NE(e.find(tiny_budget ? "below the smallest possible mix" : "no/recipe.json"),
              std::string::npos)
        << e;
    EXPECT_TRUE(stages.empty()) << stage_name(stages.front());
  }
  EXPECT_TRUE(entries(d.path()).empty());
}

}  // namespace
}  // namespace lowbit

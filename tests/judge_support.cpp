#include "judge_support.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "lowbit/engine.h"
#include "lowbit/eval.h"

#include "test_support.h"

namespace lowbit::test {

void run_llamacpp_native(const std::vector<std::string>& args) {
  const std::string lib_dir = std::string(LOWBIT_SOURCE_DIR) +
                              "/tests/judge/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64";
  if (!std::filesystem::exists(lib_dir + "/libggml-base.so"))
    throw std::runtime_error("llama.cpp libraries missing at " + lib_dir +
                             " (run scripts/setup.sh)");
  std::vector<std::string> argv = {LLAMACPP_NATIVE_PATH, lib_dir};
  argv.insert(argv.end(), args.begin(), args.end());
  const CliResult r = run_process(argv);
  if (r.exit_code != 0) throw std::runtime_error("llamacpp_native failed: " + r.err);
}

nlohmann::json run_llama_judge(const std::vector<std::string>& args) {
  const std::string dir = std::string(LOWBIT_SOURCE_DIR) + "/tests/judge";
  if (!std::filesystem::exists(dir + "/node_modules/node-llama-cpp"))
    throw std::runtime_error(
        "llama.cpp judge not installed: run scripts/setup.sh (npm install in tests/judge)");
  std::vector<std::string> argv{"node", dir + "/llama_judge.mjs"};
  argv.insert(argv.end(), args.begin(), args.end());
  CliResult r = run_process(argv);
  if (r.exit_code != 0)
    throw std::runtime_error("llama.cpp judge failed (exit " + std::to_string(r.exit_code) +
                             "):\n" + r.err);
  return nlohmann::json::parse(r.out);
}

JudgeKld kld_against_judge(Engine& engine, const std::vector<int32_t>& tokens, size_t n_ctx,
                           size_t n_chunks, const std::string& dist_path) {
  const Model& m = engine.model();
  const size_t V = m.config.n_vocab;
  std::ifstream dist(dist_path, std::ios::binary);
  std::vector<float> p(V), logits;
  JudgeKld r;
  for (size_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> win(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    win[0] = m.vocab.bos;
    engine.reset();
    engine.eval(win.data(), n_ctx, logits, true);
    for (size_t j = n_ctx / 2; j + 1 < n_ctx; ++j) {
      dist.read(reinterpret_cast<char*>(p.data()), V * 4);
      if (!dist) throw std::runtime_error(dist_path + ": llama.cpp distributions end early");
      const float* row = logits.data() + j * V;
      const double lse = log_sum_exp(row, V);
      for (size_t i = 0; i < V; ++i)
        if (p[i] > 0) {
          const double lp = std::log(static_cast<double>(p[i]));
          r.mean_kld += p[i] * (lp - (row[i] - lse));
          r.mean_entropy -= p[i] * lp;
        }
      ++r.positions;
    }
  }
  r.mean_kld /= r.positions;
  r.mean_entropy /= r.positions;
  return r;
}

bool llamacpp_needs_importance(DType t) {
  return t == DType::IQ2_XXS || t == DType::IQ2_XS || t == DType::IQ1_S;
}

}  // namespace lowbit::test

#include "judge_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "lowbit/engine.h"

#include "test_support.h"

namespace lowbit::test {

nlohmann::json run_llama_judge(const std::vector<std::string>& args) {
  const std::string dir = std::string(LOWBIT_SOURCE_DIR) + "/tests/judge";
  if (!std::filesystem::exists(dir + "/node_modules/node-llama-cpp"))
    throw std::runtime_error("llama.cpp judge not installed: run scripts/setup.sh (npm ci in tests/judge)");
  TempDir tmp;
  std::string cmd = "node " + dir + "/llama_judge.mjs";
  for (const auto& a : args) cmd += " '" + a + "'";
  cmd += " >" + tmp.file("out") + " 2>" + tmp.file("err");
  int status = std::system(cmd.c_str());
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error("llama.cpp judge failed: " + cmd + "\n" + read_file(tmp.file("err")));
  return nlohmann::json::parse(read_file(tmp.file("out")));
}

JudgeKld kld_against_judge(Engine& engine, const std::vector<int32_t>& tokens, size_t n_ctx, size_t n_chunks,
                           const std::string& dist_path) {
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
      const double mx = *std::max_element(row, row + V);
      double sum = 0;
      for (size_t i = 0; i < V; ++i) sum += std::exp(row[i] - mx);
      const double lse = mx + std::log(sum);
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

}  // namespace lowbit::test

#include "judge_support.h"

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <filesystem>

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

}  // namespace lowbit::test

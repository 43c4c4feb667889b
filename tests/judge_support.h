// Runs llama.cpp (node-llama-cpp, tests/judge) on a GGUF file and parses its JSON answer.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace lowbit::test {

// Throws (failing the test loudly) when node or the judge's node_modules are missing.
nlohmann::json run_llama_judge(const std::vector<std::string>& args);

}  // namespace lowbit::test

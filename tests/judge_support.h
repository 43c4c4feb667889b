// Runs llama.cpp (node-llama-cpp, tests/judge) on a GGUF file and parses its JSON answer.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "lowbit/dtype.h"

namespace lowbit {
class Engine;
}

namespace lowbit::test {

struct JudgeKld {
  double mean_kld = 0;      // mean over positions of KL(llama.cpp || lowbit)
  double mean_entropy = 0;  // mean entropy of llama.cpp's distributions (nats)
  size_t positions = 0;
};

// Runs `engine` over the same windows as `llama_judge.mjs perplexity` (n_ctx tokens, BOS
// first, second half scored) and compares with the distributions it wrote to `dist_path`.
JudgeKld kld_against_judge(Engine& engine, const std::vector<int32_t>& tokens, size_t n_ctx,
                           size_t n_chunks, const std::string& dist_path);

// Throws (failing the test loudly) when node or the judge's node_modules are missing.
nlohmann::json run_llama_judge(const std::vector<std::string>& args);

// Runs tests/judge/llamacpp_native (dlopen bridge to llama.cpp's own libraries) with `args`
// after the library directory; throws when the libraries are missing or the command fails.
void run_llamacpp_native(const std::vector<std::string>& args);

// The types whose llama.cpp quantizer refuses to run without an importance matrix
// (ggml_quantize_requires_imatrix): tests hand it all-ones importance instead.
bool llamacpp_needs_importance(DType t);

}  // namespace lowbit::test

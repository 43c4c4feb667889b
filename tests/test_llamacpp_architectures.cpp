// llama.cpp as the judge of the architecture variants tinyllm does not exercise: Qwen2
// (q/k/v bias, NeoX RoPE, tied embeddings) and Qwen3 (per-head q/k RMSNorm, explicit
// head_dim). Random weights, scaled up so the distributions are far from uniform.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "judge_support.h"
#include "lowbit/engine.h"
#include "lowbit/eval.h"
#include "lowbit/synthetic.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

void expect_engine_matches_llama_cpp(ModelConfig c) {
  constexpr size_t kCtx = 64, kChunks = 2;
  TempDir dir;
  Vocab v = read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model"));
  Model m = make_synthetic_model(c, v, 11, DType::F32, 0.25f);
  write_model_gguf(m, dir.file("m.gguf"), DType::F32);
  Model g = load_model(dir.file("m.gguf"));
  std::mt19937 rng(5);
  std::vector<int32_t> tokens(kCtx * kChunks);
  for (auto& t : tokens) t = 3 + static_cast<int32_t>(rng() % (c.n_vocab - 3));
  test::write_file(dir.file("tokens.json"), nlohmann::json{{"tokens", tokens}}.dump());
  auto judge = test::run_llama_judge({"perplexity", dir.file("m.gguf"), dir.file("tokens.json"),
                                      std::to_string(kCtx), std::to_string(kChunks),
                                      dir.file("dist.bin"), std::to_string(c.n_vocab)});
  Engine engine(g, {2, kCtx});
  const auto k = test::kld_against_judge(engine, tokens, kCtx, kChunks, dir.file("dist.bin"));
  // The distributions must be informative (entropy well below uniform) for the check to mean
  // anything.
  EXPECT_LT(k.mean_entropy, 0.8 * std::log(static_cast<double>(c.n_vocab)));
  EXPECT_LT(k.mean_kld, 1e-4) << c.arch;
}

ModelConfig small(const std::string& arch) {
  ModelConfig c;
  c.arch = arch;
  c.n_vocab = 4096;
  c.n_embd = 128;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 2;
  c.n_ff = 256;
  c.head_dim = 32;
  c.n_ctx = 64;
  c.rope_theta = 1e6f;
  return c;
}

TEST(LlamaCppJudge, Qwen2BiasNeoxRopeTiedEmbeddingsMatch) {
  ModelConfig c = small("qwen2");
  c.attn_bias = true;
  c.tied_embeddings = true;
  expect_engine_matches_llama_cpp(c);
}

TEST(LlamaCppJudge, Qwen3QkNormAndExplicitHeadDimMatch) {
  ModelConfig c = small("qwen3");
  c.qk_norm = true;
  c.head_dim = 64;  // n_head * head_dim != n_embd
  expect_engine_matches_llama_cpp(c);
}

TEST(LlamaCppJudge, LlamaGqaMatches) { expect_engine_matches_llama_cpp(small("llama")); }

}  // namespace
}  // namespace lowbit

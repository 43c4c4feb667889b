// llama.cpp as the judge of the reference engine: same perplexity (within 0.1%) and the
// same next-token distributions (mean KLD < 1e-4) on tinyllm-8m, WikiText-2, ctx 512.
#include <gtest/gtest.h>

#include <cmath>

#include "judge_support.h"
#include "lowbit/engine.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

TEST(LlamaCppJudge, TinyllmPerplexityAndDistributionsMatchLlamaCpp) {
  constexpr size_t kCtx = 512, kChunks = 12;
  TempDir dir;
  write_model_gguf(load_model(shared_path("models/tinyllm-8m")), dir.file("m.gguf"), DType::F32);
  Model m = load_model(dir.file("m.gguf"));
  auto tokens = Tokenizer::create(m.vocab)->encode(
      read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")));
  nlohmann::json tj = {{"tokens", tokens}};
  test::write_file(dir.file("tokens.json"), tj.dump());
  auto judge = test::run_llama_judge({"perplexity", dir.file("m.gguf"), dir.file("tokens.json"),
                                      std::to_string(kCtx), std::to_string(kChunks),
                                      dir.file("dist.bin"), std::to_string(m.config.n_vocab)});

  Engine engine(m);
  PerplexityOptions o;
  o.n_ctx = kCtx;
  o.max_chunks = kChunks;
  auto ours = evaluate_perplexity(engine, tokens, o);
  const double theirs = judge["ppl"].get<double>();
  EXPECT_EQ(ours.n_tokens, judge["n"].get<size_t>());
  EXPECT_LT(std::fabs(ours.ppl / theirs - 1), 1e-3)
      << "lowbit " << ours.ppl << " llama.cpp " << theirs;

  // KL(llama.cpp || lowbit) at every scored position, from llama.cpp's full distributions.
  const auto k = test::kld_against_judge(engine, tokens, kCtx, kChunks, dir.file("dist.bin"));
  const double mean_kld = k.mean_kld;
  const size_t n = k.positions;
  RecordProperty("mean_kld", std::to_string(mean_kld));
  EXPECT_LT(mean_kld, 1e-4) << "mean KLD between llama.cpp and lowbit";
  std::printf("lowbit PPL %.5f, llama.cpp PPL %.5f, mean KLD %.3g over %zu positions\n", ours.ppl,
              theirs, mean_kld, n);
}

}  // namespace
}  // namespace lowbit

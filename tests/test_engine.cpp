#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <regex>

#include "lowbit/engine.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/generate.h"
#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

// expected_greedy_output.txt holds a Python bytes literal: expected_stdout = b'...'
std::string parse_python_bytes(const std::string& text) {
  const size_t a = text.find("b'"), b = text.rfind('\'');
  std::string s = text.substr(a + 2, b - a - 2), out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '\\') {
      out += s[i];
      continue;
    }
    const char e = s[++i];
    out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
  }
  return out;
}

TEST(Engine, Stories260kGreedyOutputMatchesLlama2c) {
  Model m = load_model(shared_path("models/stories260K/stories260K.bin"));
  auto tok = Tokenizer::create(m.vocab);
  Engine engine(m);
  GenerateOptions g;
  g.n_predict = 200;
  g.sampler.temperature = 0;
  g.stop_at_eos = false;
  auto out = generate(engine, {m.vocab.bos}, g);
  ASSERT_EQ(out.size(), 200u);
  const std::string want = parse_python_bytes(
      read_text_file(shared_path("models/stories260K/expected_greedy_output.txt")));
  EXPECT_EQ(tok->decode(out), want);
}

// The same weights through two loaders must give the same logits.
void expect_same_logits(const Model& a, const Model& b, const std::vector<int32_t>& tokens) {
  Engine ea(a), eb(b);
  std::vector<float> la, lb;
  ea.eval(tokens.data(), tokens.size(), la, true);
  eb.eval(tokens.data(), tokens.size(), lb, true);
  ASSERT_EQ(la.size(), lb.size());
  double max_diff = 0, max_abs = 0;
  for (size_t i = 0; i < la.size(); ++i) {
    max_diff = std::max(max_diff, static_cast<double>(std::fabs(la[i] - lb[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::fabs(la[i])));
  }
  EXPECT_LT(max_diff, 1e-4 * std::max(1.0, max_abs)) << "largest logit difference " << max_diff;
}

// Loads `path`, converts it to an f32 GGUF and compares the logits of both on `text`.
void expect_gguf_copy_gives_same_logits(const std::string& path, const std::string& text) {
  TempDir dir;
  Model original = load_model(path);
  write_model_gguf(original, dir.file("m.gguf"), DType::F32);
  Model gguf = load_model(dir.file("m.gguf"));
  expect_same_logits(original, gguf, Tokenizer::create(original.vocab)->encode(text));
}

TEST(Engine, HfDirectoryAndGgufGiveTheSameLogits) {
  expect_gguf_copy_gives_same_logits(shared_path("models/tinyllm-8m"),
                                     "The history of the United States began with the arrival of");
}

TEST(Engine, Llama2cAndGgufGiveTheSameLogits) {
  expect_gguf_copy_gives_same_logits(shared_path("models/stories260K/stories260K.bin"),
                                     "Once upon a time, a cat sat on the mat.");
}

TEST(Engine, KvCacheGenerationEqualsOneBatch) {
  Model m = load_model(shared_path("models/tinyllm-8m"));
  auto tokens =
      Tokenizer::create(m.vocab)->encode("It was the best of times, it was the worst of times");
  Engine batch(m), step(m);
  std::vector<float> all, one;
  batch.eval(tokens.data(), tokens.size(), all, true);
  const size_t V = m.config.n_vocab;
  for (size_t t = 0; t < tokens.size(); ++t) {
    step.eval(&tokens[t], 1, one, false);
    for (size_t i = 0; i < V; i += 97) ASSERT_NEAR(one[i], all[t * V + i], 1e-4) << "token " << t;
  }
}

TEST(Engine, HfProtocolScoresEveryToken) {
  Model m = load_model(shared_path("models/stories260K/stories260K.bin"));
  auto tokens = Tokenizer::create(m.vocab)->encode(std::string(3000, 'a') +
                                                   " Once upon a time there was a dog.");
  Engine e(m);
  PerplexityOptions o;
  o.n_ctx = 64;
  o.max_chunks = 3;
  o.protocol = PplProtocol::Hf;
  auto hf = evaluate_perplexity(e, tokens, o);
  EXPECT_EQ(hf.n_tokens, 3u * 63u);
  o.protocol = PplProtocol::LlamaCpp;
  auto ll = evaluate_perplexity(e, tokens, o);
  EXPECT_EQ(ll.n_tokens, 3u * 31u);
}

TEST(Engine, KldOfAModelAgainstItselfIsZero) {
  TempDir dir;
  Model m = load_model(shared_path("models/stories260K/stories260K.bin"));
  auto tokens = Tokenizer::create(m.vocab)->encode(
      read_text_file(shared_path("data/calibration/calib-en-1mb.txt")).substr(0, 5000));
  Engine e(m);
  PerplexityOptions o;
  o.n_ctx = 128;
  o.max_chunks = 4;
  o.save_logits = dir.file("base.bin");
  auto base = evaluate_perplexity(e, tokens, o);
  for (uint32_t k : {0u, 16u}) {  // full (f16) and top-k files
    o.save_top_k = k;
    evaluate_perplexity(e, tokens, o);
    PerplexityOptions q;
    q.kl_base = dir.file("base.bin");
    auto r = evaluate_perplexity(e, {}, q);
    ASSERT_TRUE(r.kld.has_value());
    EXPECT_EQ(r.kld->n, base.n_tokens);
    EXPECT_LT(r.kld->mean, 1e-4) << "top_k " << k;  // only the file's rounding
    EXPECT_EQ(r.kld->same_top1, 1.0);
    EXPECT_NEAR(r.kld->ppl_ratio, 1.0, 1e-3);
  }
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {
TEST(Engine, LinearInputHookSeesEveryWeightWithItsInput) {
  Model m = load_model(test::shared_path("models/stories260K/stories260K.bin"));
  Engine e(m);
  std::map<std::string, std::pair<size_t, size_t>> seen;  // weight -> (n_tokens, in_features)
  e.set_linear_input_hook([&](const std::string& w, const float* x, size_t n, size_t in) {
    EXPECT_TRUE(std::isfinite(x[n * in - 1]));
    seen[w] = {n, in};
  });
  std::vector<int32_t> toks = {1, 20, 30, 40};
  std::vector<float> logits;
  e.eval(toks.data(), toks.size(), logits, false);
  EXPECT_EQ(seen.size(), 5u * 7u + 1u);  // 7 linears per layer + the tied output head
  EXPECT_EQ(seen["blk.2.ffn_down.weight"], std::make_pair(size_t{4}, size_t{172}));
  EXPECT_EQ(seen["blk.0.attn_q.weight"], std::make_pair(size_t{4}, size_t{64}));
  EXPECT_EQ(seen["token_embd.weight"],
            std::make_pair(size_t{1}, size_t{64}));  // only the last token's logits
}
}  // namespace
}  // namespace lowbit

// llama.cpp as the judge: the GGUF files lowbit writes load in llama.cpp, and llama.cpp
// tokenizes text exactly as lowbit does, for the three vocabularies in ../shared.
#include <gtest/gtest.h>

#include "judge_support.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "lowbit/synthetic.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

std::string sample_text() {
  // A slice of WikiText-2 plus text that exercises contractions, digits, whitespace runs,
  // CRLF, tabs and multi-byte characters.
  return read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")).substr(0, 60000) +
         "They'll say \"don't\" -- 12345 and 3.14!\r\n\tTabs\t\tand   spaces \n\n\n caf\xc3\xa9 "
         "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e \xf0\x9f\x98\x80 "
         "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82";
}

void expect_same_tokens(const std::string& gguf) {
  TempDir dir;
  const std::string text = sample_text();
  test::write_file(dir.file("sample.txt"), text);
  auto judge = test::run_llama_judge({"tokenize", gguf, dir.file("sample.txt")});
  std::vector<int32_t> want = judge["tokens"].get<std::vector<int32_t>>();
  Model m = load_model(gguf);
  auto got = Tokenizer::create(m.vocab)->encode(text);
  ASSERT_GT(want.size(), 5000u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i)
    ASSERT_EQ(got[i], want[i]) << "first difference at token " << i;
}

TEST(LlamaCppJudge, TinyllmGgufLoadsAndTokenizesIdentically) {
  TempDir dir;
  write_model_gguf(load_model(shared_path("models/tinyllm-8m")), dir.file("tinyllm.gguf"),
                   DType::F16);
  expect_same_tokens(dir.file("tinyllm.gguf"));
}

ModelConfig tiny_config(const std::string& arch, uint32_t n_vocab) {
  ModelConfig c;
  c.arch = arch;
  c.attn_bias = arch == "qwen2";
  c.n_vocab = n_vocab;
  c.n_embd = 64;
  c.n_layer = 1;
  c.n_head = 2;
  c.n_head_kv = 1;
  c.n_ff = 128;
  c.head_dim = 32;
  c.n_ctx = 256;
  return c;
}

// A one-layer model with random weights carries the vocabulary into a GGUF for llama.cpp.
void expect_vocab_tokenizes_identically(const Vocab& v, const std::string& arch, uint32_t n_vocab) {
  TempDir dir;
  Model m = make_synthetic_model(tiny_config(arch, n_vocab), v, 7, DType::F16);
  write_model_gguf(m, dir.file("vocab.gguf"), DType::F16);
  expect_same_tokens(dir.file("vocab.gguf"));
}

TEST(LlamaCppJudge, QwenByteLevelBpeTokenizesIdentically) {
  expect_vocab_tokenizes_identically(read_hf_bpe(shared_path("tokenizers/qwen2.5")), "qwen2",
                                     151936);
}

TEST(LlamaCppJudge, Llama2SentencePieceTokenizesIdentically) {
  expect_vocab_tokenizes_identically(
      read_spm_model(shared_path("tokenizers/llama2/tokenizer.model")), "llama", 32000);
}

}  // namespace
}  // namespace lowbit

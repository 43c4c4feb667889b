#include <gtest/gtest.h>

#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/tokenizer.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

const char* kTricky =
    "Hello world, it's a TEST. They'll say \"don't\" -- 12345 and 3.14!\n\n"
    "  Indented  text\twith\ttabs\r\nUnicode: caf\xc3\xa9, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "
    "emoji \xf0\x9f\x98\x80.\n";

using test::expect_error;

TEST(Tokenizer, SpmTinyllmRoundTripsWikitext) {
  auto tok = Tokenizer::create(read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model")));
  std::string text =
      read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")).substr(0, 20000);
  auto ids = tok->encode(text);
  ASSERT_GT(ids.size(), 1000u);
  EXPECT_EQ(ids[0], 1);  // BOS
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_EQ(tok->decode(tok->encode(kTricky)), kTricky);  // byte fallback keeps every byte
}

TEST(Tokenizer, SpmMergesByScoreIntoWholeWords) {
  auto tok = Tokenizer::create(read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model")));
  auto ids = tok->encode(" the", false);
  // " the" becomes "▁▁the" or "▁" + "▁the" — either way the last token is the word "▁the".
  ASSERT_FALSE(ids.empty());
  EXPECT_EQ(tok->vocab().tokens[ids.back()], "\xe2\x96\x81the");
  EXPECT_EQ(tok->encode("", true), std::vector<int32_t>{1});
}

TEST(Tokenizer, SpmByteFallbackForUnknownCharacters) {
  auto tok = Tokenizer::create(read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model")));
  auto ids = tok->encode("\xf0\x9f\x98\x80", false);  // an emoji is not in a 4096-piece vocabulary
  std::vector<std::string> pieces;
  for (int32_t id : ids) pieces.push_back(tok->vocab().tokens[id]);
  ASSERT_GE(pieces.size(), 4u);
  EXPECT_EQ(pieces[pieces.size() - 4], "<0xF0>");
  EXPECT_EQ(pieces.back(), "<0x80>");
}

TEST(Tokenizer, Llama2SpmVocabulary) {
  Vocab v = read_spm_model(shared_path("tokenizers/llama2/tokenizer.model"));
  EXPECT_EQ(v.size(), 32000u);
  EXPECT_EQ(v.tokens[1], "<s>");
  EXPECT_EQ(v.types[3], TokenType::Byte);
  auto tok = Tokenizer::create(v);
  EXPECT_EQ(tok->decode(tok->encode(kTricky)), kTricky);
}

TEST(Tokenizer, QwenByteLevelBpe) {
  Vocab v = read_hf_bpe(shared_path("tokenizers/qwen2.5"));
  EXPECT_EQ(v.pre, "qwen2");
  EXPECT_EQ(v.tokens[151643], "<|endoftext|>");
  EXPECT_EQ(v.types[151643], TokenType::Control);
  auto tok = Tokenizer::create(v);
  EXPECT_EQ(tok->decode(tok->encode(kTricky), false), kTricky);
  // Digits are split one by one by the qwen2 pre-tokenizer.
  auto digits = tok->encode("12345", false);
  EXPECT_EQ(digits.size(), 5u);
  // Control tokens in text are plain text unless parse_special is set.
  EXPECT_GT(tok->encode("<|endoftext|>", false, false).size(), 1u);
  EXPECT_EQ(tok->encode("<|endoftext|>", false, true), std::vector<int32_t>{151643});
  // " world" is one token spelled with GPT-2's byte alphabet (space -> U+0120).
  auto w = tok->encode(" world", false);
  ASSERT_EQ(w.size(), 1u);
  EXPECT_EQ(v.tokens[w[0]], "\xc4\xa0world");
}

TEST(Tokenizer, GgufVocabRoundTrip) {
  TempDir dir;
  for (Vocab v : {read_spm_model(shared_path("models/tinyllm-8m/tokenizer.model")),
                  read_hf_bpe(shared_path("tokenizers/qwen2.5"))}) {
    GgufWriter w;
    write_gguf_vocab(v, w);
    w.write(dir.file("v.gguf"));
    auto g = GgufFile::open(dir.file("v.gguf"));
    Vocab r = read_gguf_vocab(*g);
    EXPECT_EQ(r.tokens, v.tokens);
    EXPECT_EQ(r.scores, v.scores);
    EXPECT_EQ(r.types, v.types);
    EXPECT_EQ(r.merges, v.merges);
    EXPECT_EQ(r.pre, v.kind == VocabKind::Bpe ? v.pre : r.pre);
    EXPECT_EQ(r.bos, v.bos);
    EXPECT_EQ(r.eos, v.eos);
    EXPECT_EQ(r.add_bos, v.add_bos);
  }
}

TEST(Tokenizer, TokenizerJsonMissingMerges) {
  auto msg = expect_error(
      [] { parse_hf_tokenizer_json(R"({"model":{"type":"BPE","vocab":{"a":0}}})", "tok.json"); });
  EXPECT_NE(msg.find("tok.json: missing array key 'model.merges'"), std::string::npos) << msg;
}

TEST(Tokenizer, TokenizerJsonMergeWithUnknownToken) {
  auto msg = expect_error([] {
    parse_hf_tokenizer_json(
        R"({"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b","a c"]}})",
        "tok.json");
  });
  EXPECT_NE(msg.find("tok.json: merge #1 'a c': token 'c' is not in the vocabulary"),
            std::string::npos)
      << msg;
}

TEST(Tokenizer, TokenizerJsonMergedTokenMissing) {
  auto msg = expect_error([] {
    parse_hf_tokenizer_json(
        R"({"model":{"type":"BPE","vocab":{"a":0,"b":1},"merges":[["a","b"]]}})", "tok.json");
  });
  EXPECT_NE(msg.find("merged token 'ab' is not in the vocabulary"), std::string::npos) << msg;
}

TEST(Tokenizer, TokenizerJsonMalformed) {
  auto msg = expect_error([] { parse_hf_tokenizer_json("{\"model\": [", "tok.json"); });
  EXPECT_NE(msg.find("tok.json: not valid JSON"), std::string::npos) << msg;
  msg = expect_error(
      [] { parse_hf_tokenizer_json(R"({"model":{"type":"Unigram","vocab":[]}})", "tok.json"); });
  EXPECT_NE(msg.find("key 'model.type': 'Unigram' is not supported"), std::string::npos) << msg;
  msg = expect_error([] {
    parse_hf_tokenizer_json(R"({"model":{"vocab":{"a":0,"b":0},"merges":[]}})", "tok.json");
  });
  EXPECT_NE(msg.find("id 0 is given to both"), std::string::npos) << msg;
}

// Ids far past the ones in use (fuzz/regressions/tokenizer_json_sparse_id_oom.json).
TEST(Tokenizer, TokenizerJsonSparseIdsAreRefused) {
  auto msg = expect_error([] {
    parse_hf_tokenizer_json(
        R"({"model":{"type":"BPE","vocab":{"H":0,"e":1,"l":16770686},"merges":[]}})", "tok.json");
  });
  EXPECT_NE(
      msg.find("tok.json: token 'l' has id 16770686, which leaves more than 65536 ids unused"),
      std::string::npos)
      << msg;
  msg = expect_error([] {
    parse_hf_tokenizer_json(
        R"({"model":{"type":"BPE","vocab":{"a":0},"merges":[]},)"
        R"("added_tokens":[{"id":900000,"content":"<s>"}]})",
        "tok.json");
  });
  EXPECT_NE(msg.find("added token '<s>' has id 900000, which leaves more than"), std::string::npos)
      << msg;
  msg = expect_error(
      [] { parse_hf_tokenizer_json(R"({"model":{"vocab":{"a":-1},"merges":[]}})", "tok.json"); });
  EXPECT_NE(msg.find("token 'a' has id -1 out of range"), std::string::npos) << msg;
  // A small hole is a real tokenizer's habit and stays allowed.
  Vocab v = parse_hf_tokenizer_json(R"({"model":{"vocab":{"a":0,"b":5},"merges":[]}})", "tok.json");
  ASSERT_EQ(v.tokens.size(), 6u);
  EXPECT_EQ(v.tokens[3], "[PAD3]");
}

TEST(Tokenizer, VocabJsonWithoutMergesTxt) {
  TempDir dir;
  test::write_file(dir.file("vocab.json"), R"({"a":0})");
  auto msg = expect_error([&] { read_hf_bpe(dir.path()); });
  EXPECT_NE(msg.find("vocab.json is there but merges.txt is missing"), std::string::npos) << msg;
}

TEST(Tokenizer, SpmModelTruncated) {
  std::string bytes = read_text_file(shared_path("models/tinyllm-8m/tokenizer.model"));
  auto msg = expect_error([&] {
    parse_spm_model(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size() / 2 + 3,
                    "tokenizer.model");
  });
  EXPECT_NE(msg.find("tokenizer.model:"), std::string::npos) << msg;
  EXPECT_TRUE(msg.find("runs past the end") != std::string::npos ||
              msg.find("truncated") != std::string::npos)
      << msg;
}

TEST(Tokenizer, SpmModelGarbage) {
  const uint8_t junk[] = {0x0f, 0xff, 0xff};
  auto msg = expect_error([&] { parse_spm_model(junk, sizeof junk, "junk.model"); });
  EXPECT_NE(msg.find("junk.model: unknown protobuf wire type 7"), std::string::npos) << msg;
}

TEST(Tokenizer, Llama2cTokenizerTruncated) {
  TempDir dir;
  std::string bytes = read_text_file(shared_path("models/stories260K/tok512.bin"));
  test::write_file(dir.file("tok.bin"), bytes.substr(0, 100));
  auto msg = expect_error([&] { read_llama2c_tokenizer(dir.file("tok.bin"), 512); });
  EXPECT_NE(msg.find("truncated while reading token #"), std::string::npos) << msg;
}

TEST(Tokenizer, VocabValidateNamesTheProblem) {
  Vocab v;
  v.tokens = {"a", "b"};
  v.types = {TokenType::Normal, TokenType::Normal};
  v.scores = {0, 0};
  v.bos = 5;
  auto msg = expect_error([&] { v.validate("my.vocab"); });
  EXPECT_NE(msg.find("my.vocab: BOS token id 5 is outside the vocabulary of 2 tokens"),
            std::string::npos)
      << msg;
}

}  // namespace
}  // namespace lowbit

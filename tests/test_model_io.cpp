#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstring>
#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/float_convert.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "lowbit/safetensors.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using test::shared_path;
using test::TempDir;

using test::expect_error;

TEST(ModelIo, LoadsTinyllmDirectory) {
  Model m = load_model(shared_path("models/tinyllm-8m"));
  EXPECT_EQ(m.config.arch, "llama");
  EXPECT_EQ(m.config.n_embd, 256u);
  EXPECT_EQ(m.config.n_layer, 8u);
  EXPECT_EQ(m.config.n_head_kv, 4u);
  EXPECT_EQ(m.config.head_dim, 32u);
  EXPECT_EQ(m.tensors.size(), 2u + 1u + 8u * 9u);
  EXPECT_EQ(m.tensor("blk.3.attn_k.weight").shape, (std::vector<uint64_t>{128, 256}));
  EXPECT_EQ(m.tensor("output.weight").dtype, DType::BF16);
  EXPECT_EQ(m.vocab.size(), 4096u);
}

// safetensors -> GGUF -> safetensors must give back the original bytes (bf16, and f32
// which holds every bf16 exactly); f16 gives the f16 rounding of each value.
void round_trip(DType gguf_type) {
  TempDir dir;
  const std::string src = shared_path("models/tinyllm-8m");
  Model m = load_model(src);
  write_model_gguf(m, dir.file("m.gguf"), gguf_type);
  Model g = load_model(dir.file("m.gguf"));
  EXPECT_EQ(g.rope_layout, RopeLayout::Interleaved);
  write_model_safetensors(g, dir.file("back.safetensors"), DType::BF16);
  auto orig = SafetensorsCheckpoint::open_dir(src);
  auto back = SafetensorsFile::open(dir.file("back.safetensors"));
  ASSERT_EQ(back->tensors().size(), orig->tensors().size());
  size_t differing = 0;
  for (const auto& t : orig->tensors()) {
    const TensorView* b = back->find(t.name);
    ASSERT_NE(b, nullptr) << t.name;
    ASSERT_EQ(b->shape, t.shape) << t.name;
    if (gguf_type != DType::F16) {
      EXPECT_EQ(std::memcmp(b->data, t.data, t.nbytes), 0)
          << t.name << " differs after the round trip";
    } else {
      auto x = to_f32(t), y = to_f32(*b);
      for (size_t i = 0; i < x.size(); ++i) {
        float want = bf16_to_f32(f32_to_bf16(f16_to_f32(f32_to_f16(x[i]))));
        if (f32_bits(want) != f32_bits(y[i])) ++differing;
      }
    }
  }
  EXPECT_EQ(differing, 0u);
}

TEST(ModelIo, RoundTripThroughGgufF32IsBitExact) { round_trip(DType::F32); }
TEST(ModelIo, RoundTripThroughGgufBf16IsBitExact) { round_trip(DType::BF16); }
TEST(ModelIo, RoundTripThroughGgufF16WithinF16Rounding) { round_trip(DType::F16); }

TEST(ModelIo, GgufQkRowsArePermutedForLlamaCpp) {
  TempDir dir;
  Model m = load_model(shared_path("models/tinyllm-8m"));
  write_model_gguf(m, dir.file("m.gguf"), DType::F32);
  auto g = GgufFile::open(dir.file("m.gguf"));
  auto hf = to_f32(m.tensor("blk.0.attn_k.weight"));
  auto gg = to_f32(*g->find_tensor("blk.0.attn_k.weight"));
  const uint64_t cols = 256, hd = 32;
  // Interleaved row 2i+1 of head h holds HF row h*hd + hd/2 + i.
  for (uint64_t h : {0ull, 3ull})
    for (uint64_t i : {0ull, 5ull, 15ull}) {
      EXPECT_EQ(std::memcmp(&gg[(h * hd + 2 * i + 1) * cols], &hf[(h * hd + hd / 2 + i) * cols],
                            cols * 4),
                0);
      EXPECT_EQ(std::memcmp(&gg[(h * hd + 2 * i) * cols], &hf[(h * hd + i) * cols], cols * 4), 0);
    }
  // v is not permuted.
  EXPECT_EQ(to_f32(*g->find_tensor("blk.0.attn_v.weight")),
            to_f32(m.tensor("blk.0.attn_v.weight")));
}

TEST(ModelIo, Llama2cCheckpointLoads) {
  Model m = load_model(shared_path("models/stories260K/stories260K.bin"));
  EXPECT_EQ(m.config.n_embd, 64u);
  EXPECT_EQ(m.config.n_ff, 172u);
  EXPECT_EQ(m.config.n_layer, 5u);
  EXPECT_EQ(m.config.n_head, 8u);
  EXPECT_EQ(m.config.n_head_kv, 4u);
  EXPECT_EQ(m.config.n_vocab, 512u);
  EXPECT_TRUE(m.config.tied_embeddings);
  EXPECT_EQ(m.rope_layout, RopeLayout::Interleaved);
  EXPECT_EQ(m.vocab.tokens[1], "<s>");
}

TEST(Llama2c, TruncatedCheckpoint) {
  TempDir dir;
  std::string bytes = test::read_file(shared_path("models/stories260K/stories260K.bin"));
  test::write_file(dir.file("m.bin"), bytes.substr(0, bytes.size() - 100));
  fs::copy(shared_path("models/stories260K/tok512.bin"), dir.file("tok512.bin"));
  auto msg = expect_error([&] { load_model(dir.file("m.bin")); });
  EXPECT_NE(msg.find("m.bin: truncated: weights need"), std::string::npos) << msg;
}

TEST(Llama2c, LyingHeader) {
  TempDir dir;
  std::string bytes = test::read_file(shared_path("models/stories260K/stories260K.bin"));
  int32_t heads = 0;
  std::memcpy(&bytes[12], &heads, 4);
  test::write_file(dir.file("m.bin"), bytes);
  auto msg = expect_error(
      [&] { load_model(dir.file("m.bin"), {shared_path("models/stories260K/tok512.bin")}); });
  EXPECT_NE(msg.find("header field n_heads = 0 is out of range"), std::string::npos) << msg;
}

TEST(HfConfig, QwenAndLlama3Variants) {
  auto q = parse_hf_config(
      R"({"model_type":"qwen2","vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
    "num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128,)"
      R"("tie_word_embeddings":true,"rope_theta":1000000.0})",
      "c");
  EXPECT_EQ(q.arch, "qwen2");
  EXPECT_TRUE(q.attn_bias);
  EXPECT_TRUE(q.tied_embeddings);
  EXPECT_EQ(q.rope_theta, 1e6f);
  auto q3 = parse_hf_config(
      R"({"model_type":"qwen3","vocab_size":100,"hidden_size":64,"num_hidden_layers":2,)"
      R"("head_dim":32,
    "num_attention_heads":4,"num_key_value_heads":2,"intermediate_size":128})",
      "c");
  EXPECT_TRUE(q3.qk_norm);
  EXPECT_EQ(q3.head_dim, 32u);
  EXPECT_EQ(q3.q_dim(), 128u);
  auto l3 = parse_hf_config(
      R"({"model_type":"llama","vocab_size":100,"hidden_size":64,"num_hidden_layers":2,
    "num_attention_heads":4,"intermediate_size":128,"rope_theta":500000.0,
    "rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,)"
      R"("high_freq_factor":4.0,"original_max_position_embeddings":8192}})",
      "c");
  EXPECT_EQ(l3.rope_scaling.type, RopeScaling::Type::Llama3);
  auto f = rope_inv_freq(l3);
  ModelConfig plain = l3;
  plain.rope_scaling = {};
  auto base = rope_inv_freq(plain);
  EXPECT_EQ(f[0], base[0]);                          // highest frequency kept
  EXPECT_NEAR(f.back(), base.back() / 8.0f, 1e-12);  // lowest divided by the factor
}

TEST(HfConfig, ErrorsNameTheKey) {
  auto msg = expect_error([] { parse_hf_config(R"({"model_type":"gpt_neox"})", "config.json"); });
  EXPECT_NE(msg.find("config.json: key 'model_type': 'gpt_neox' is not supported"),
            std::string::npos)
      << msg;
  msg = expect_error(
      [] { parse_hf_config(R"({"model_type":"llama","vocab_size":10})", "config.json"); });
  EXPECT_NE(msg.find("config.json: missing key 'hidden_size'"), std::string::npos) << msg;
  msg = expect_error([] {
    parse_hf_config(
        R"({"model_type":"llama","vocab_size":"10","hidden_size":8,"num_hidden_layers":1,)"
        R"("num_attention_heads":2,"intermediate_size":8})",
        "config.json");
  });
  EXPECT_NE(msg.find("key 'vocab_size': expected an integer, got \"10\""), std::string::npos)
      << msg;
  msg = expect_error([] {
    parse_hf_config(
        R"({"model_type":"llama","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,)"
        R"("num_attention_heads":3,"num_key_value_heads":2,"intermediate_size":8})",
        "config.json");
  });
  EXPECT_NE(msg.find("3 attention heads are not a multiple of 2 key/value heads"),
            std::string::npos)
      << msg;
  msg = expect_error([] { parse_hf_config("{not json", "config.json"); });
  EXPECT_NE(msg.find("config.json: not valid JSON"), std::string::npos) << msg;
}

TEST(ModelIo, MissingTensorIsNamed) {
  TempDir dir;
  for (auto f : {"config.json", "tokenizer.model", "tokenizer_config.json"})
    fs::copy(shared_path("models/tinyllm-8m/") + f, dir.file(f));
  auto orig = SafetensorsCheckpoint::open_dir(shared_path("models/tinyllm-8m"));
  std::vector<OutputTensor> out;
  for (const auto& t : orig->tensors()) {
    if (t.name == "model.layers.2.mlp.up_proj.weight") continue;
    OutputTensor o;
    o.info = t;
    o.nbytes = t.nbytes;
    o.produce = [&t](std::vector<uint8_t>& b) { b.assign(t.data, t.data + t.nbytes); };
    out.push_back(o);
  }
  write_safetensors(dir.file("model.safetensors"), out);
  auto msg = expect_error([&] { load_model(dir.path()); });
  EXPECT_NE(msg.find("missing tensor 'blk.2.ffn_up.weight' (expected shape [768, 256])"),
            std::string::npos)
      << msg;
}

TEST(Cli, ConvertRejectsBadTypeAndLeavesNoOutput) {
  TempDir dir;
  auto r = test::run_cli(
      {"convert", shared_path("models/tinyllm-8m"), "-o", dir.file("x.gguf"), "--type", "q9"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.err.find("--type 'q9'"), std::string::npos) << r.err;
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Cli, ConvertIntoReadOnlyDirectoryFailsCleanly) {
  if (geteuid() == 0) {
    // root ignores directory permissions; use a path whose parent does not exist instead.
    auto r = test::run_cli(
        {"convert", shared_path("models/tinyllm-8m"), "-o", "/nonexistent-dir/x.gguf"});
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.err.find("/nonexistent-dir/x.gguf: cannot create output"), std::string::npos)
        << r.err;
    return;
  }
  TempDir dir;
  chmod(dir.path().c_str(), 0500);
  auto r = test::run_cli({"convert", shared_path("models/tinyllm-8m"), "-o", dir.file("x.gguf")});
  chmod(dir.path().c_str(), 0700);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Cli, InspectCorruptFileNamesIt) {
  TempDir dir;
  test::write_file(dir.file("bad.gguf"), std::string("GGUF\x03\0\0\0", 8));
  auto r = test::run_cli({"inspect", dir.file("bad.gguf")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find(dir.file("bad.gguf") + ": truncated while reading tensor count"),
            std::string::npos)
      << r.err;
}

// A llama2.c checkpoint is read as load_model reads it, not as a safetensors file.
TEST(Cli, InspectReadsLlama2cCheckpoints) {
  auto r = test::run_cli({"inspect", shared_path("models/stories260K/stories260K.bin")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("llama2.c checkpoint"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("layers 5"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("blk.4.ffn_down.weight"), std::string::npos) << r.out;
}

TEST(Cli, InspectPrintsTensorTable) {
  auto r = test::run_cli({"inspect", shared_path("models/tinyllm-8m")});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("model.layers.7.mlp.down_proj.weight"), std::string::npos);
  EXPECT_NE(r.out.find("75 tensors, 8392960 values"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace lowbit

namespace lowbit {
namespace {
// Found by fuzz_config_json: a number too large for a double must be a Format error.
TEST(HfConfig, NumberOutOfRangeIsAFormatError) {
  std::string text = test::read_file(std::string(LOWBIT_SOURCE_DIR) +
                                     "/fuzz/regressions/config_number_out_of_range.json");
  try {
    parse_hf_config(text, "config.json");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("config.json:"), std::string::npos) << e.what();
  }
}
}  // namespace
}  // namespace lowbit

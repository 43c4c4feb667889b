// The quantization plan (preset rules, overrides, fallbacks) and `lowbit quantize` end to end.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "lowbit/model.h"
#include "lowbit/quantize.h"
#include "lowbit/synthetic.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using test::shared_path;
using test::TempDir;

std::vector<uint32_t> selected(LayerSet s, uint32_t n) {
  std::vector<uint32_t> out;
  for (uint32_t i = 0; i < n; ++i)
    if (layer_selected(s, i, n)) out.push_back(i);
  return out;
}

TEST(QuantizePlan, LayerSetsSelectTheDocumentedLayers) {
  EXPECT_EQ(selected(LayerSet::MoreBits, 8), (std::vector<uint32_t>{0, 3, 6, 7}));
  EXPECT_EQ(selected(LayerSet::MoreBits, 32),
            (std::vector<uint32_t>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}));
  EXPECT_EQ(selected(LayerSet::FirstEighth, 16), (std::vector<uint32_t>{0, 1}));
  EXPECT_EQ(selected(LayerSet::FirstSixteenth, 8), std::vector<uint32_t>{});
}

TEST(QuantizePlan, FallbackTypesFollowBlockSizes) {
  EXPECT_EQ(fallback_type(DType::Q4_K, 256), DType::Q4_K);
  EXPECT_EQ(fallback_type(DType::Q4_K, 96), DType::Q5_0);
  EXPECT_EQ(fallback_type(DType::Q5_K, 96), DType::Q5_1);
  EXPECT_EQ(fallback_type(DType::Q6_K, 96), DType::Q8_0);
  EXPECT_EQ(fallback_type(DType::Q2_K, 96), DType::IQ4_NL);
  EXPECT_EQ(fallback_type(DType::Q4_K, 100), DType::F16);
}

Model small_model(uint32_t n_ff) {
  ModelConfig c;
  c.arch = "llama";
  c.n_vocab = 64;
  c.n_embd = 256;
  c.n_layer = 2;
  c.n_head = 4;
  c.n_head_kv = 1;
  c.head_dim = 64;
  c.n_ff = n_ff;
  c.n_ctx = 64;
  Vocab v;
  return make_synthetic_model(c, v, 3);
}

const TensorPlan& find(const std::vector<TensorPlan>& plan, const std::string& name) {
  for (const auto& p : plan)
    if (p.name == name) return p;
  throw std::runtime_error("no plan entry " + name);
}

TEST(QuantizePlan, RowsThatDoNotFitTheBlockFallBackWithANote) {
  const Model m = small_model(96);  // ffn_down rows have 96 values
  QuantizePlanOptions o;
  o.preset = "Q4_K_S";
  const auto plan = plan_quantization(m, o);
  const TensorPlan& down = find(plan, "blk.1.ffn_down.weight");
  EXPECT_EQ(down.type, DType::Q5_0);
  EXPECT_NE(down.note.find("rows of 96 values do not fit Q4_K"), std::string::npos) << down.note;
  EXPECT_EQ(find(plan, "blk.1.ffn_up.weight").type, DType::Q4_K);
  EXPECT_EQ(find(plan, "blk.0.attn_norm.weight").type, DType::F32);
}

TEST(QuantizePlan, GqaOfFourGivesAttnVMoreBitsInQ2K) {
  const Model m = small_model(256);  // 4 heads, 1 KV head
  QuantizePlanOptions o;
  o.preset = "q2_k";  // names are case-insensitive
  EXPECT_EQ(find(plan_quantization(m, o), "blk.0.attn_v.weight").type, DType::Q4_K);
}

TEST(QuantizePlan, OverridesPureAndHeadTypes) {
  const Model m = small_model(256);
  QuantizePlanOptions o;
  o.preset = "Q4_K_M";
  o.pure = true;
  o.tensor_types = {{"blk\\.1\\..*", DType::Q8_0}, {".*ffn_up.*", DType::Q2_K}};
  o.output_type = DType::Q5_K;
  o.token_embedding_type = DType::F16;
  const auto plan = plan_quantization(m, o);
  EXPECT_EQ(find(plan, "blk.0.attn_v.weight").type, DType::Q4_K);  // pure: no mix
  EXPECT_EQ(find(plan, "blk.1.ffn_up.weight").type, DType::Q8_0);  // first matching pattern wins
  EXPECT_EQ(find(plan, "blk.0.ffn_up.weight").type, DType::Q2_K);
  EXPECT_EQ(find(plan, "output.weight").type, DType::Q5_K);
  EXPECT_EQ(find(plan, "token_embd.weight").type, DType::F16);
}

TEST(QuantizePlan, BadPresetAndPatternsAreArgumentErrors) {
  const Model m = small_model(256);
  QuantizePlanOptions o;
  o.preset = "Q4_K_X";
  EXPECT_NE(test::expect_error([&] {
              plan_quantization(m, o);
            }).find("unknown quantization type 'Q4_K_X' (expected one of Q2_K"),
            std::string::npos);
  o.preset = "Q4_0";
  o.tensor_types = {{"nothing\\.here", DType::Q8_0}};
  EXPECT_NE(test::expect_error([&] {
              plan_quantization(m, o);
            }).find("tensor type pattern 'nothing\\.here': matches no tensor"),
            std::string::npos);
  o.tensor_types = {{"([", DType::Q8_0}};
  EXPECT_NE(
      test::expect_error([&] { plan_quantization(m, o); }).find("not a valid regular expression"),
      std::string::npos);
}

TEST(Cli, QuantizeWritesAFilePerplexityCanRunAndAJsonSummary) {
  TempDir dir;
  auto r = test::run_cli({"quantize", shared_path("models/tinyllm-8m"), "-o", dir.file("q.gguf"),
                          "--type", "Q4_K_M", "--tensor-type", "blk\\.0\\.ffn_up\\.weight=Q8_0",
                          "-t", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_NEAR(j["bits_per_weight"].get<double>(), 5.0, 0.1);
  EXPECT_EQ(j["file_bytes"].get<uint64_t>(), fs::file_size(dir.file("q.gguf")));
  bool saw_override = false;
  for (const auto& t : j["tensors"]) {
    if (t["name"] == "blk.0.ffn_up.weight") {
      saw_override = true;
      EXPECT_EQ(t["type"], "Q8_0");
      EXPECT_LT(t["rel_rms_error"].get<double>(), 0.01);
    }
    if (t["type"] == "Q4_K") {
      EXPECT_GT(t["rel_rms_error"].get<double>(), 0.02);
    }
  }
  EXPECT_TRUE(saw_override);
  auto p = test::run_cli({"perplexity", dir.file("q.gguf"), "-f",
                          shared_path("data/wikitext-2/wikitext-2-test.txt"), "--chunks", "1",
                          "--json", "-q"});
  ASSERT_EQ(p.exit_code, 0) << p.err;
  const double ppl = nlohmann::json::parse(p.out)["ppl"].get<double>();
  EXPECT_GT(ppl, 50);
  EXPECT_LT(ppl, 400);
}

TEST(Cli, QuantizeLlama2cCheckpointNotesFallbacks) {
  TempDir dir;
  auto r = test::run_cli({"quantize", shared_path("models/stories260K/stories260K.bin"), "-o",
                          dir.file("s.gguf"), "--type", "Q4_K_M", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("note: blk.0.ffn_down.weight: fallback: rows of 172 values do not fit"),
            std::string::npos)
      << r.err;
  const Model m = load_model(dir.file("s.gguf"));
  EXPECT_EQ(m.tensor("blk.0.ffn_down.weight").dtype, DType::F16);
  EXPECT_EQ(m.tensor("blk.0.ffn_up.weight").dtype, DType::Q5_0);
}

TEST(Cli, QuantizeRejectsBadInputAndLeavesNoOutput) {
  TempDir dir;
  const std::string model = shared_path("models/tinyllm-8m");
  struct Case { std::vector<std::string> args; std::string message; };
  const std::vector<Case> cases = {
      {{"--type", "Q4_K_X"}, "unknown quantization type 'Q4_K_X'"},
      {{"--tensor-type", "nope=Q8_0"}, "tensor type pattern 'nope': matches no tensor"},
      {{"--tensor-type", "blk.*=Q9"}, "tensor type 'Q9': not a tensor type"},
      {{"--output-tensor-type", "int3"}, "output tensor type 'int3'"},
      {{"--rotate-steps", "5"}, "starts from --rotate hadamard or random, not none"},
      {{"--rotate", "hadamard", "--rotate-steps", "5"}, "needs calibration text"},
      {{"--rotate", "hadamard", "--rotate-weights", "F16"}, "rotation learning weights 'F16'"},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"quantize", model, "-o", dir.file("x.gguf")};
    args.insert(args.end(), c.args.begin(), c.args.end());
    auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf"))) << c.message;
  }
  auto r = test::run_cli({"quantize", model, "-o", "/nonexistent-dir/x.gguf"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("/nonexistent-dir/x.gguf"), std::string::npos) << r.err;
  test::write_file(dir.file("config.json"),
                   R"({"architectures": ["GPT2LMHeadModel"], "model_type": "gpt2"})");
  r = test::run_cli({"quantize", dir.path(), "-o", dir.file("x.gguf")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("gpt2"), std::string::npos) << r.err;
  fs::remove(dir.file("config.json"));
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

}  // namespace
}  // namespace lowbit

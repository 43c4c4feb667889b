// The budget solver against brute force on small instances, byte-size parsing, recipe
// files (round trip and corrupt input), and the plan honouring a recipe.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/mixed.h"
#include "lowbit/quantize.h"
#include "test_support.h"

namespace lowbit {
namespace {

// The optimum by enumerating every combination.
double brute_force(const std::vector<MixTensor>& ts, uint64_t budget) {
  double best = INFINITY;
  std::vector<size_t> k(ts.size(), 0);
  while (true) {
    uint64_t b = 0;
    double l = 0;
    for (size_t i = 0; i < ts.size(); ++i)
      b += ts[i].options[k[i]].bytes, l += ts[i].options[k[i]].loss;
    if (b <= budget) best = std::min(best, l);
    size_t i = 0;
    while (i < ts.size() && ++k[i] == ts[i].options.size()) k[i++] = 0;
    if (i == ts.size()) break;
  }
  return best;
}

TEST(Budget, SolverFindsTheOptimumAndNeverExceedsTheBudget) {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    std::vector<MixTensor> ts(2 + rng() % 5);
    for (auto& t : ts) {
      t.name = "t";
      const size_t n = 1 + rng() % 4;  // n = 1: a fixed tensor
      uint64_t bytes = 100 + rng() % 900;
      double loss = 1.0 + (rng() % 1000) / 100.0;
      for (size_t j = 0; j < n; ++j) {  // more bytes, less loss, as real types
        t.options.push_back({DType::Q4_K, bytes, loss});
        bytes += 1 + rng() % 1500;
        loss *= 0.2 + (rng() % 70) / 100.0;
      }
    }
    uint64_t lo = 0, hi = 0;
    for (auto& t : ts) lo += t.options.front().bytes, hi += t.options.back().bytes;
    const uint64_t budget = lo + rng() % (hi - lo + 1);
    const MixSolution s = solve_budget(ts, budget);
    EXPECT_LE(s.bytes, budget);
    uint64_t b = 0;
    double l = 0;
    for (size_t i = 0; i < ts.size(); ++i)
      b += ts[i].options[s.choice[i]].bytes, l += ts[i].options[s.choice[i]].loss;
    EXPECT_EQ(b, s.bytes);
    EXPECT_DOUBLE_EQ(l, s.loss);
    EXPECT_NEAR(s.loss, brute_force(ts, budget), 1e-9) << "round " << round;
  }
}

TEST(Budget, HandCheckedInstanceAndInfeasibleBudget) {
  // Two tensors, each 100 B (loss 10) or 200 B (loss 1). With 300 B only one can be upgraded:
  // upgrade the first (10 -> 1 saves 9) rather than the second (8 -> 2 saves 6).
  std::vector<MixTensor> ts = {{"a", 0, {{DType::Q2_K, 100, 10}, {DType::Q4_K, 200, 1}}},
                               {"b", 0, {{DType::Q2_K, 100, 8}, {DType::Q4_K, 200, 2}}}};
  MixSolution s = solve_budget(ts, 300);
  EXPECT_EQ(s.choice, (std::vector<size_t>{1, 0}));
  EXPECT_EQ(s.bytes, 300u);
  EXPECT_DOUBLE_EQ(s.loss, 9.0);
  s = solve_budget(ts, 399);  // one byte short of upgrading both
  EXPECT_EQ(s.bytes, 300u);
  s = solve_budget(ts, 400);
  EXPECT_EQ(s.choice, (std::vector<size_t>{1, 1}));
  const std::string msg = test::expect_error([&] { solve_budget(ts, 199); });
  EXPECT_NE(msg.find("below the smallest possible mix (200 bytes)"), std::string::npos) << msg;
}

TEST(Budget, ParsesByteSizes) {
  EXPECT_EQ(parse_byte_size("123456"), 123456u);
  EXPECT_EQ(parse_byte_size("4.2MB"), 4200000u);
  EXPECT_EQ(parse_byte_size("120mb"), 120000000u);
  EXPECT_EQ(parse_byte_size("3KiB"), 3072u);
  EXPECT_EQ(parse_byte_size("1GiB"), 1073741824u);
  for (const char* bad : {"", "MB", "12XB", "-5MB", "0"}) {
    const std::string msg = test::expect_error([&] { parse_byte_size(bad); });
    EXPECT_NE(msg.find("expected a positive number"), std::string::npos) << bad << ": " << msg;
  }
}

TEST(Budget, RecipeRoundTripsAndCorruptRecipesNameTheEntry) {
  test::TempDir dir;
  std::vector<MixTensor> ts = {
      {"blk.0.attn_q.weight", 0, {{DType::Q3_K, 110, 0.5}, {DType::Q6_K, 210, 0.1}}},
      {"blk.0.attn_norm.weight", 0, {{DType::F32, 1024, 0}}}};
  MixSolution s = solve_budget(ts, 2000);
  write_recipe(dir.file("r.json"), ts, s, 2000);
  const auto r = read_recipe(dir.file("r.json"));
  EXPECT_EQ(r.at("blk.0.attn_q.weight"), DType::Q6_K);
  EXPECT_EQ(r.at("blk.0.attn_norm.weight"), DType::F32);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{", "not a JSON recipe"},
      {R"({"tensors": []})", "not a lowbit recipe"},
      {R"({"format": "lowbit-recipe", "tensors": [{"name": "x"}]})",
       "tensors[0] needs a \"name\" and a \"type\""},
      {R"({"format": "lowbit-recipe", "tensors": [{"name": "x", "type": "Q9_K"}]})",
       "tensors[0] ('x'): 'Q9_K' is not a type"},
  };
  for (const auto& [text, expected] : cases) {
    test::write_file(dir.file("bad.json"), text);
    const std::string msg = test::expect_error([&] { read_recipe(dir.file("bad.json")); });
    EXPECT_NE(msg.find(expected), std::string::npos) << text << " -> " << msg;
    EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  }
}

// A mix's general.file_type is llama.cpp's guess from the type holding most weights
// (llama_model_loader's switch): the ftype named after the type, else its _M preset.
TEST(Budget, MixFileTypeIsLlamaCppsGuess) {
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  const std::vector<std::pair<DType, uint32_t>> cases = {
      {DType::Q2_K, 10},    {DType::Q3_K, 12},    {DType::Q4_K, 15},   {DType::Q6_K, 18},
      {DType::IQ3_S, 26},   {DType::IQ3_XXS, 23}, {DType::IQ2_S, 28},  {DType::IQ2_XS, 20},
      {DType::IQ2_XXS, 19}, {DType::TQ1_0, 36},   {DType::IQ4_XS, 30}, {DType::IQ1_S, 24},
      {DType::IQ1_M, 31}};
  for (const auto& [type, ftype] : cases) {
    std::vector<TensorPlan> plan;
    for (const TensorView& t : m.tensors)
      plan.push_back({t.name, t.shape.size() < 2 ? DType::F32 : type, "", PlanReason::Chosen});
    EXPECT_EQ(mix_file_type(m, plan), ftype | 1024u) << dtype_name(type);
  }
}

TEST(Cli, QuantizeToABudgetWritesAReplayableRecipe) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string calib = test::shared_path("data/calibration/calib-en-1mb.txt");
  // clang-format off
  const std::vector<std::string> small = {"--calib", calib, "--calib-samples", "4",
                                          "--calib-ctx", "128", "--sensitivity-windows", "1",
                                          "--sensitivity-ctx", "64", "-q", "--json"};
  // clang-format on
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), small.begin(), small.end());
    return test::run_cli(args);
  };
  // The budget is a whole file: the Q3_K_M preset's, metadata and tokenizer included.
  auto r = test::run_cli(
      {"quantize", model, "-o", dir.file("q3.gguf"), "--type", "Q3_K_M", "-q", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const uint64_t budget = nlohmann::json::parse(r.out)["file_bytes"].get<uint64_t>();
  r = with({"quantize", model, "-o", dir.file("mix.gguf"), "--max-size", std::to_string(budget),
            "--method", "rtn", "--save-recipe", dir.file("mix.json")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  EXPECT_LE(report["file_bytes"].get<uint64_t>(), budget);
  EXPECT_EQ(report["file_bytes"].get<uint64_t>(), std::filesystem::file_size(dir.file("mix.gguf")));
  EXPECT_GT(report["file_bytes"].get<uint64_t>(), budget * 0.98);  // the budget is used, not wasted
  // A mix follows no preset: its file type is llama.cpp's guess (Q3_K or Q4_K most, flag 1024).
  const auto file = GgufFile::open(dir.file("mix.gguf"));
  const uint64_t file_type = file->get_uint("general.file_type");
  EXPECT_EQ(file_type & 1024, 1024u) << file_type;
  EXPECT_TRUE((file_type & 1023) == 12 || (file_type & 1023) == 15 || (file_type & 1023) == 10)
      << file_type;
  EXPECT_EQ(file->get_string("lowbit.quantize.preset"), "mix");
  const auto recipe = read_recipe(dir.file("mix.json"));
  std::set<DType> types;
  for (const auto& t : report["tensors"]) {
    EXPECT_EQ(dtype_name(recipe.at(t["name"].get<std::string>())), t["type"].get<std::string>())
        << t["name"];
    types.insert(recipe.at(t["name"].get<std::string>()));
  }
  EXPECT_GE(types.size(), 4u);  // a real mix: F32 norms and at least three quantized types
  r = test::run_cli(
      {"quantize", model, "-o", dir.file("replay.gguf"), "--recipe", dir.file("mix.json"), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(test::read_file(dir.file("replay.gguf")), test::read_file(dir.file("mix.gguf")));

  r = test::run_cli({"quantize", model, "-o", dir.file("x.gguf"), "--bpw", "3.5"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("a size budget needs calibration text"), std::string::npos) << r.err;
  r = with({"quantize", model, "-o", dir.file("x.gguf"), "--bpw", "3.5", "--recipe",
            dir.file("mix.json")});
  EXPECT_NE(r.err.find("excludes"), std::string::npos) << r.err;
  r = with({"quantize", model, "-o", dir.file("x.gguf"), "--max-size", "1MB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("below the smallest possible mix"), std::string::npos) << r.err;
  r = with({"quantize", model, "-o", dir.file("x.gguf"), "--max-size", "4.2XB"});
  EXPECT_NE(r.err.find("size '4.2XB'"), std::string::npos) << r.err;
  r = with(
      {"quantize", model, "-o", dir.file("x.gguf"), "--bpw", "2.2", "--mix-types", "IQ1_S,Q9_K"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("mix-types"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Q9_K"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(Cli, SweepWritesCsvAndPlot) {
  test::TempDir dir;
  // clang-format off
  auto r = test::run_cli({"sweep", test::shared_path("models/tinyllm-8m"),
                          "--calib", test::shared_path("data/calibration/calib-en-1mb.txt"),
                          "--calib-samples", "4", "--calib-ctx", "128",
                          "--sensitivity-windows", "1", "--sensitivity-ctx", "64",
                          "-f", test::shared_path("data/wikitext-2/wikitext-2-test.txt"),
                          "--chunks", "2", "--bpw", "2:4:2", "--presets", "Q4_K_M",
                          "-o", dir.path(), "-q"});
  // clang-format on
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // below the smallest mix
  EXPECT_NE(r.err.find("mix at 2 bpw skipped: budget of"), std::string::npos) << r.err;
  const std::string csv = test::read_file(dir.file("sweep.csv"));
  EXPECT_EQ(csv.rfind("kind,name,bits_per_weight,tensor_bytes,ppl,kld_mean,same_top1\nmix,4,", 0),
            0u)
      << csv;
  EXPECT_NE(csv.find("\npreset,Q4_K_M,4.99"), std::string::npos) << csv;
  const std::string svg = test::read_file(dir.file("sweep.svg"));
  EXPECT_NE(svg.find("<polyline"), std::string::npos);
  EXPECT_NE(svg.find(">Q4_K_M</text>"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.file("base.logits")));
  const std::string sens = test::read_file(dir.file("sensitivity.csv"));
  EXPECT_EQ(sens.rfind("tensor,type,bytes,loss,proxy,measured_kld\n", 0), 0u);
  EXPECT_NE(sens.find("\nblk.0.ffn_up.weight,Q3_K,"), std::string::npos);
  r = test::run_cli({"sweep", "x", "--calib", "y", "-f", "z", "-o", dir.path(), "--bpw", "5:3:1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("expected FROM:TO:STEP"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace lowbit

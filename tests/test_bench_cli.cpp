// `lowbit bench` and the engine flags of `run` / `perplexity`, through the real binary.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "test_support.h"

namespace lowbit {
namespace {

using test::run_cli;
using test::shared_path;

TEST(BenchCli, JsonReportsSpeedBandwidthAndTheBound) {
  auto r = run_cli({"bench", "--synthetic", "llama-8m", "--type", "Q4_K_M", "-p", "32", "-n", "8",
                    "-r", "2", "--probe-mib", "64", "--probe-passes", "2", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  for (const char* key :
       {"pp_tps", "tg_tps", "model_bytes", "bandwidth_gbs", "tg_bandwidth_fraction"})
    EXPECT_TRUE(j.contains(key)) << key;
  EXPECT_EQ(j["pp_runs"].size(), 2u);
  EXPECT_EQ(j["tg_runs"].size(), 2u);
  EXPECT_GT(j["pp_tps"].get<double>(), 0);
  EXPECT_GT(j["tg_tps"].get<double>(), 0);
  EXPECT_GT(j["bandwidth_gbs"].get<double>(), 0.1);
  EXPECT_GT(j["reference_pp_tps"].get<double>(), 0);
  // The fraction is generation speed over the bound the probe sets for these bytes.
  const double bound =
      j["bandwidth_gbs"].get<double>() * 1e9 / j["weight_bytes_per_token"].get<double>();
  EXPECT_NEAR(j["tg_bound_tps"].get<double>(), bound, 1e-6 * bound);
  EXPECT_NEAR(j["tg_bandwidth_fraction"].get<double>(), j["tg_tps"].get<double>() / bound, 1e-9);
  // Q4_K_M: Q4_K matrices with Q6_K for the head and part of attn_v / ffn_down.
  const std::string types = j["types"];
  EXPECT_NE(types.find("Q4_K"), std::string::npos) << types;
  EXPECT_NE(types.find("Q6_K"), std::string::npos) << types;
  EXPECT_GT(j["model_bytes"].get<double>(),
            j["weight_bytes_per_token"].get<double>());  // untied: the embedding is not read whole
}

TEST(BenchCli, TableNamesTheTestsAndTheBound) {
  auto r = run_cli({"bench", "--synthetic", "llama-8m", "--type", "Q8_0", "-p", "16", "-n", "4",
                    "-r", "1", "--probe-mib", "32", "--no-reference"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("| pp16"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| tg4"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("% of the bound"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("fp32 reference"), std::string::npos)
      << "--no-reference still ran the reference";
}

TEST(BenchCli, BadInputFailsWithAMessage) {
  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"bench"}, "give a MODEL or --synthetic"},
      {{"bench", "--synthetic", "llama-70b"}, "unknown synthetic shape 'llama-70b'"},
      {{"bench", "--synthetic", "llama-8m", "--type", "Q9_X"}, "unknown quantization type 'Q9_X'"},
      {{"bench", "--synthetic", "llama-8m", "--cache-type-k", "q4_k"}, "--cache-type-k q4_k"},
      {{"bench", "--synthetic", "llama-8m", "-r", "0"}, "-r 0"},
  };
  for (const Case& c : cases) {
    auto r = run_cli(c.args);
    EXPECT_NE(r.exit_code, 0) << c.message;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
  }
}

// In-flight quantization: a bf16 model runs quantized without a file, with either kernels.
TEST(RunCli, QuantizesInFlightAndGeneratesWithBothKernels) {
  const std::string model = shared_path("models/tinyllm-8m");
  for (const char* kernels : {"fast", "reference"}) {
    auto r =
        run_cli({"run", model, "-p", "The history of", "-n", "8", "--temp", "0", "--quantize",
                 "Q4_K", "--kernels", kernels, "--cache-type-k", "q8_0", "--cache-type-v", "f16"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_NE(r.err.find("quantized in memory to Q4_K"), std::string::npos) << r.err;
    EXPECT_GT(r.out.size(), std::string("The history of").size() + 8) << kernels << ": " << r.out;
  }
}

}  // namespace
}  // namespace lowbit

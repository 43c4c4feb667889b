// Layer-by-layer distillation (LKD, LearnedOptions::teacher_inputs): learned rounding on the
// unquantized model's inputs to each block.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

// (40 steps: on the teacher's inputs the start's error is smaller than on the quantized
// path's, and 8 steps of adaquant do not beat it, so the start would be kept.)
TEST(LayerwiseDistill, BlocksLearnOnTheTeachersInputs) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  auto run = [&](const std::string& out, const char* inputs) {
    return test::run_cli({"quantize",
                          model,
                          "-o",
                          out,
                          "--type",
                          "Q2_K",
                          "--method",
                          "adaquant",
                          "--calib",
                          test::shared_path("data/calibration/calib-en-1mb.txt"),
                          "--calib-samples",
                          "4",
                          "--calib-ctx",
                          "64",
                          "--steps",
                          "40",
                          "--batch",
                          "2",
                          "--learn-inputs",
                          inputs,
                          "-q",
                          "--json"});
  };
  const std::string lkd = dir.file("lkd.gguf"), seq = dir.file("seq.gguf");
  auto r = run(lkd, "teacher");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto report = nlohmann::json::parse(r.out);
  EXPECT_NE(report.at("method").get<std::string>().find(" inputs=teacher"), std::string::npos);
  size_t learned = 0;
  for (const auto& b : report.at("learned_blocks")) learned += !b.at("kept_start").get<bool>();
  EXPECT_GT(learned, 0u) << r.out;
  ASSERT_EQ(run(seq, "quantized").exit_code, 0);
  // Block 0 sees other inputs (the unquantized embedding), so its learning differs.
  const Model ma = load_model(lkd), mb = load_model(seq);
  const TensorView &a = ma.tensor("blk.0.ffn_down.weight"), &b = mb.tensor("blk.0.ffn_down.weight");
  ASSERT_EQ(a.nbytes, b.nbytes);
  EXPECT_NE(std::vector<uint8_t>(a.data, a.data + a.nbytes),
            std::vector<uint8_t>(b.data, b.data + b.nbytes));
  const auto bad = run(dir.file("bad.gguf"), "fp");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("--learn-inputs"), std::string::npos) << bad.err;
}

}  // namespace
}  // namespace lowbit

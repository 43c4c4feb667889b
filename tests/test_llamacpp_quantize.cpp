// llama.cpp as the judge of `lowbit quantize`: every preset's file loads in llama.cpp with
// the same perplexity as lowbit computes on it (this proves the byte layouts), and the
// preset mixes give each tensor the type llama.cpp's own quantizer gives it.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "judge_support.h"
#include "lowbit/engine.h"
#include "lowbit/eval.h"
#include "lowbit/file_io.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

std::map<std::string, DType> tensor_types(const std::string& path) {
  std::map<std::string, DType> out;
  const Model m = load_model(path);
  for (const TensorView& t : m.tensors) out[t.name] = t.dtype;
  return out;
}

// llama.cpp rounds activations to 8 bits inside its quantized dot products, so single
// positions differ slightly; over 10 windows (2550 scored tokens) the perplexities agree to
// better than 0.07% for every preset, while a wrong byte layout changes them by far more.
TEST(LlamaCppJudge, EveryPresetLoadsInLlamaCppWithTheSamePerplexity) {
  constexpr size_t kCtx = 512, kChunks = 10;
  TempDir dir;
  const Model src = load_model(shared_path("models/tinyllm-8m"));
  auto tokens = Tokenizer::create(src.vocab)->encode(read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")));
  tokens.resize(kCtx * kChunks);
  test::write_file(dir.file("tokens.json"), nlohmann::json({{"tokens", tokens}}).dump());
  PerplexityOptions po;
  po.n_ctx = kCtx;
  po.max_chunks = kChunks;
  Engine f32_engine(src);
  const double base_ppl = evaluate_perplexity(f32_engine, tokens, po).ppl;

  for (const Preset& p : presets()) {
    SCOPED_TRACE(p.name);
    const std::string path = dir.file(std::string(p.name) + ".gguf");
    QuantizeOptions qo;
    qo.plan.preset = p.name;
    qo.n_threads = 2;
    quantize_model_gguf(src, path, qo);
    const auto judge = test::run_llama_judge({"perplexity", path, dir.file("tokens.json"), std::to_string(kCtx), std::to_string(kChunks)});
    Model qm = load_model(path);
    Engine engine(qm);
    const double ours = evaluate_perplexity(engine, tokens, po).ppl, theirs = judge["ppl"].get<double>();
    EXPECT_LT(std::fabs(ours / theirs - 1), 1e-3) << "lowbit " << ours << " llama.cpp " << theirs;
    // A consistent but wrong quantizer would pass the line above; the model must still work.
    EXPECT_LT(ours / base_ppl, 1.12) << "PPL " << ours << " vs unquantized " << base_ppl;
    std::printf("%-7s lowbit PPL %.4f  llama.cpp PPL %.4f  (unquantized %.4f)\n", p.name, ours, theirs, base_ppl);
  }
}

// The calibrated methods change only codes, scales and (AWQ) norm weights: their files must
// load in llama.cpp and compute what lowbit computes, like the plain presets.
TEST(LlamaCppJudge, CalibratedMethodFilesLoadInLlamaCppWithTheSamePerplexity) {
  constexpr size_t kCtx = 512, kChunks = 4;
  TempDir dir;
  const std::string model = shared_path("models/tinyllm-8m");
  const Model src = load_model(model);
  auto tokens = Tokenizer::create(src.vocab)->encode(read_text_file(shared_path("data/wikitext-2/wikitext-2-test.txt")));
  tokens.resize(kCtx * kChunks);
  test::write_file(dir.file("tokens.json"), nlohmann::json({{"tokens", tokens}}).dump());
  PerplexityOptions po;
  po.n_ctx = kCtx;
  po.max_chunks = kChunks;
  for (const char* method : {"gptq", "awq+gptq"}) {
    SCOPED_TRACE(method);
    const std::string path = dir.file(std::string("m") + (method[0] == 'g' ? "g" : "a") + ".gguf");
    auto r = test::run_cli({"quantize", model, "-o", path, "--type", "Q3_K_M", "--method", method, "--calib",
                            shared_path("data/calibration/calib-en-1mb.txt"), "--calib-samples", "8", "--calib-ctx", "128",
                            "--awq-grid", "4", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const auto judge = test::run_llama_judge({"perplexity", path, dir.file("tokens.json"), std::to_string(kCtx), std::to_string(kChunks)});
    Model qm = load_model(path);
    Engine engine(qm);
    const double ours = evaluate_perplexity(engine, tokens, po).ppl, theirs = judge["ppl"].get<double>();
    EXPECT_LT(std::fabs(ours / theirs - 1), 1e-3) << "lowbit " << ours << " llama.cpp " << theirs;
    std::printf("Q3_K_M %-8s lowbit PPL %.4f  llama.cpp PPL %.4f\n", method, ours, theirs);
  }
}

TEST(LlamaCppJudge, PresetMixesGiveEveryTensorLlamaCppsType) {
  TempDir dir;
  const Model src = load_model(shared_path("models/tinyllm-8m"));
  write_model_gguf(src, dir.file("f32.gguf"), DType::F32);
  const Model f32 = load_model(dir.file("f32.gguf"));
  for (const Preset& p : presets()) {
    SCOPED_TRACE(p.name);
    test::run_llamacpp_native({"quantize-model", dir.file("f32.gguf"), dir.file("llama.gguf"), std::to_string(p.file_type), "2"});
    const auto theirs = tensor_types(dir.file("llama.gguf"));
    QuantizePlanOptions po;
    po.preset = p.name;
    const auto plan = plan_quantization(f32, po);
    ASSERT_EQ(plan.size(), theirs.size());
    for (const TensorPlan& t : plan) {
      ASSERT_TRUE(theirs.count(t.name)) << t.name;
      EXPECT_EQ(dtype_name(t.type), std::string(dtype_name(theirs.at(t.name)))) << t.name;
    }
  }
}

}  // namespace
}  // namespace lowbit

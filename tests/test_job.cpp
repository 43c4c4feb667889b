// The job API (lowbit/job.h, lowbit/job_options.h): its rules, the method registry, the
// observer's cancellation, and the streaming GGUF writer behind it.
#include <gtest/gtest.h>

#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "lowbit/job.h"
#include "lowbit/job_options.h"
#include "lowbit/topology.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

QuantizeJob job_for(const test::TempDir& dir, const std::string& out = "out.gguf") {
  QuantizeJob j;
  j.model = test::shared_path("models/tinyllm-8m");
  j.output = dir.file(out);
  return j;
}

TEST(Job, EveryMethodIsRegisteredByNameAndWritesATarget) {
  const std::vector<std::string> names = method_names();
  for (const char* n : {"rtn", "imatrix", "gptq", "awq", "awq+gptq", "smoothquant", "adaround",
                        "adaquant", "autoround"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  for (const std::string& n : names) {
    const auto m = method_from_name(n);
    ASSERT_TRUE(m) << n;
    EXPECT_EQ(method_name(*m), n);
  }
  EXPECT_FALSE(method_from_name("spinquant"));
}

// The default method: GPTQ with calibration text (GGUF and affine), importance-weighted
// rounding with saved statistics (GGUF), rounding to nearest otherwise.
TEST(Job, DefaultMethodFollowsTheCalibrationGiven) {
  test::TempDir dir;
  QuantizeJob j = job_for(dir);
  EXPECT_EQ(resolved_method(j), Method::Rtn);
  j.calib.text = "c.txt";
  EXPECT_EQ(resolved_method(j), Method::Gptq);
  j.target = AffineTarget{};
  EXPECT_EQ(resolved_method(j), Method::Gptq);
  j.target = W8A8Target{};
  EXPECT_EQ(resolved_method(j), Method::Rtn);
  j = job_for(dir);
  j.calib.stats = "s.gguf";
  EXPECT_EQ(resolved_method(j), Method::Imatrix);
  j.method.kind = Method::Awq;
  EXPECT_EQ(resolved_method(j), Method::Awq);
}

TEST(Job, RulesAreCheckedBeforeAnyFileIsReadAndNameTheSetting) {
  test::TempDir dir;
  struct Case {
    std::function<void(QuantizeJob&)> change;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[](QuantizeJob& j) { j.method.kind = Method::Gptq; }, "method gptq needs calibration text"},
      {[](QuantizeJob& j) {
         j.method.kind = Method::Awq, j.calib.text = "c.txt", j.target = AffineTarget{};
       },
       "method awq writes GGUF types, not the affine int layout (which takes rtn, gptq, qat)"},
      {[](QuantizeJob& j) { j.method.kind = Method::SmoothQuant; },
       "method smoothquant writes W8A8"},
      {[](QuantizeJob& j) { j.method.kind = Method::SmoothQuant, j.target = W8A8Target{}; },
       "method smoothquant needs calibration text"},
      {[](QuantizeJob& j) {
         j.method.kind = Method::AwqGptq, j.calib.text = "c.txt", j.method.gptq.damp = -1;
       },
       "gptq damping -1"},
      {[](QuantizeJob& j) { j.calib.text = "c.txt", j.calib.stats = "s.gguf"; }, "not both"},
      {[](QuantizeJob& j) { j.method.kind = Method::AutoRound; },
       "method autoround needs calibration text"},
      {[](QuantizeJob& j) {
         j.method.kind = Method::AdaRound, j.calib.text = "c.txt", j.target = AffineTarget{};
       },
       "method adaround writes GGUF types, not the affine int layout"},
      {[](QuantizeJob& j) {
         j.method.kind = Method::AdaQuant, j.calib.text = "c.txt", j.method.learned.lr = -1;
       },
       "learning rate -1"},
      {[](QuantizeJob& j) {
         j.method.awq.clip = true, j.method.kind = Method::Gptq, j.calib.text = "c.txt";
       },
       "it needs method awq, not gptq"},
      {[](QuantizeJob& j) { j.output = j.model; }, "the output is the input"},
      {[](QuantizeJob& j) { j.output += ".bin"; }, "must end in .gguf"},
      {[](QuantizeJob& j) {
         GgufTarget t;
         t.type = "Q4_K_X";
         j.target = t;
       },
       "unknown quantization type 'Q4_K_X'"},
      {[](QuantizeJob& j) {
         GgufTarget t;
         t.budget = Budget{1000000, 0};
         j.target = t;
       },
       "a size budget needs calibration text"},
      {[](QuantizeJob& j) {
         GgufTarget t;
         t.budget = Budget{1000000, 3.5};
         j.target = t;
         j.calib.text = "c.txt";
       },
       "exactly one above 0"},
      {[](QuantizeJob& j) {
         GgufTarget t;
         t.budget = Budget{1000000, 0};
         t.sensitivity.candidates = {DType::Q2_K, DType::IQ2_XS, DType::Q4_K};
         j.target = t;
         j.calib.text = "c.txt", j.method.kind = Method::AutoRound;
       },
       "the budget's type IQ2_XS is a codebook type"},
      {[](QuantizeJob& j) {
         j.method.kind = Method::SmoothQuant, j.method.smoothquant.alpha = 1.5,
         j.target = W8A8Target{}, j.calib.text = "c.txt";
       },
       "alpha 1.5"},
      {[](QuantizeJob& j) {
         AffineTarget t;
         t.spec.bits = 9;
         j.target = t;
       },
       "bits must be 2..8"},
      {[](QuantizeJob& j) { j.rotation.kind = RotationKind::Hadamard, j.calib.stats = "s.gguf"; },
       "statistics file 's.gguf' was measured on the unrotated model"},
      {[](QuantizeJob& j) {
         j.rotation.ffn_down = true, j.method.kind = Method::Awq, j.calib.text = "c.txt";
       },
       "method awq does not support the online rotation of ffn_down"},
      {[](QuantizeJob& j) {
         j.rotation.ffn_down = true, j.method.kind = Method::Qat, j.calib.text = "c.txt";
       },
       "qat from adaquant does not support the online rotation of ffn_down"},
      {[](QuantizeJob& j) { j.rotation.ffn_down = true, j.target = AffineTarget{}; },
       "the target must be GGUF"},
      {[](QuantizeJob& j) { j.rotation.kind = RotationKind::Hadamard, j.rotation.learn.steps = 5; },
       "a learned rotation (--rotate-steps) needs calibration text"},
      {[](QuantizeJob& j) { j.distill.rounding.act_bits = 4, j.calib.text = "c.txt"; },
       "trained for by --method qat and learned rotations"},
      {[](QuantizeJob& j) { j.rotation.learn.steps = 5, j.calib.text = "c.txt"; },
       "starts from --rotate hadamard or random, not none"},
      {[](QuantizeJob& j) { j.rotation.learn.steps = -1; }, "rotation learning steps -1"},
      {[](QuantizeJob& j) {
         j.rotation.kind = RotationKind::Random, j.rotation.learn.steps = 5;
         j.calib.text = "c.txt", j.rotation.learn.lr = 0;
       },
       "rotation learning step 0"},
      {[](QuantizeJob& j) {
         j.rotation.kind = RotationKind::Random, j.rotation.learn.steps = 5;
         j.calib.text = "c.txt", j.distill.rounding.act_bits = 4;
         j.distill.rounding.static_ranges = true;
       },
       "static ranges (act-ranges) would change with the rotation"},
  };
  for (const Case& c : cases) {
    QuantizeJob j = job_for(dir);
    c.change(j);
    EXPECT_NE(test::expect_error([&] { validate(j); }).find(c.message), std::string::npos)
        << c.message;
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Job, SettingsByNameGiveTheSameJobAsTheTypedFields) {
  JobSettings s;
  s.job.model = "m";
  s.job.output = "o";
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"type", "int8"},
                                                                      {"method", "smoothquant"},
                                                                      {"sq-alpha", "0.75"},
                                                                      {"act-scheme", "static"},
                                                                      {"calib", "c.txt"},
                                                                      {"calib-samples", "16"},
                                                                      {"threads", "1"}})
    set_job_option(s, k, v);
  const QuantizeJob j = make_job(s);
  ASSERT_TRUE(std::holds_alternative<W8A8Target>(j.target));
  EXPECT_TRUE(std::get<W8A8Target>(j.target).static_activations);
  EXPECT_EQ(j.method.kind, Method::SmoothQuant);
  EXPECT_EQ(j.method.smoothquant.alpha, 0.75);
  EXPECT_EQ(j.calib.samples, 16u);
  EXPECT_EQ(j.threads, 1);

  JobSettings g;
  for (auto [k, v] :
       std::vector<std::pair<std::string, std::string>>{{"type", "Q3_K_M"},
                                                        {"method", "gptq"},
                                                        {"damp", "0.05"},
                                                        {"act-order", "true"},
                                                        {"max-size", "4.2MB"},
                                                        {"tensor-type", "blk\\.0\\..*=Q8_0"},
                                                        {"awq-objective", "layer"}})
    set_job_option(g, k, v);
  const QuantizeJob jg = make_job(g);
  const auto& t = std::get<GgufTarget>(jg.target);
  EXPECT_EQ(t.type, "Q3_K_M");
  EXPECT_EQ(t.budget->bytes, 4200000u);
  ASSERT_EQ(t.tensor_types.size(), 1u);
  EXPECT_EQ(t.tensor_types[0].type, DType::Q8_0);
  EXPECT_EQ(*jg.method.gptq.damp, 0.05);
  EXPECT_TRUE(*jg.method.gptq.act_order);
  EXPECT_EQ(jg.method.awq.objective, AwqObjective::Layer);

  JobSettings l;
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"method", "adaround"},
                                                                      {"steps", "50"},
                                                                      {"lr", "0.2"},
                                                                      {"batch", "2"},
                                                                      {"adaround-reg", "0.05"},
                                                                      {"start", "rtn"}})
    set_job_option(l, k, v);
  const QuantizeJob jl = make_job(l);
  EXPECT_EQ(jl.method.kind, Method::AdaRound);
  EXPECT_EQ(jl.method.learned.steps, 50);
  EXPECT_EQ(jl.method.learned.lr, 0.2);
  EXPECT_EQ(jl.method.learned.batch, 2);
  EXPECT_EQ(jl.method.learned.reg, 0.05);
  EXPECT_FALSE(jl.method.learned.gptq_start);

  JobSettings r;
  set_job_option(r, "rotate", "random");
  set_job_option(r, "rotate-seed", "7");
  const QuantizeJob jr = make_job(r);
  EXPECT_EQ(jr.rotation.kind, RotationKind::Random);
  EXPECT_EQ(jr.rotation.seed, 7u);
  set_job_option(r, "rotate-steps", "40");
  set_job_option(r, "rotate-lr", "0.05");
  set_job_option(r, "rotate-weights", "Q4_0");
  const QuantizeJob jl2 = make_job(r);
  EXPECT_EQ(jl2.rotation.learn.steps, 40);
  EXPECT_EQ(jl2.rotation.learn.lr, 0.05);
  EXPECT_EQ(jl2.rotation.learn.weights, DType::Q4_0);
  EXPECT_NE(rotation_label(jl2.rotation).find("learned=40"), std::string::npos);
  EXPECT_NE(test::expect_error([&] { set_job_option(r, "rotate-weights", "F16"); }).find("'F16'"),
            std::string::npos);
  EXPECT_EQ(make_job(JobSettings{}).rotation.kind, RotationKind::None);

  JobSettings lr;
  set_job_option(lr, "lowrank", "8");
  set_job_option(lr, "lowrank-alpha", "0.5");
  set_job_option(lr, "lowrank-only", "ffn_.*");
  const QuantizeJob jlr = make_job(lr);
  EXPECT_EQ(jlr.lowrank.rank, 8u);
  EXPECT_EQ(jlr.lowrank_alpha, 0.5);
  EXPECT_EQ(jlr.lowrank.only, "ffn_.*");
  EXPECT_EQ(make_job(JobSettings{}).lowrank.rank, 0u);

  JobSettings bad;
  EXPECT_NE(test::expect_error([&] {
              set_job_option(bad, "calib-samples", "12x");
            }).find("calib-samples: '12x'"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              set_job_option(bad, "range", "max");
            }).find("not one of minmax, mse, percentile"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              set_job_option(bad, "rotate", "walsh");
            }).find("not one of hadamard, none, random"),
            std::string::npos);
  EXPECT_NE(test::expect_error([&] {
              set_job_option(bad, "colour", "red");
            }).find("unknown setting 'colour'"),
            std::string::npos);
  // a budget's types: GGUF block types, each once
  JobSettings mix;
  set_job_option(mix, "mix-types", "Q2_K,iq2_s,Q2_K,Q6_K");
  EXPECT_EQ(mix.gguf.sensitivity.candidates,
            (std::vector<DType>{DType::Q2_K, DType::IQ2_S, DType::Q6_K}));
  for (const char* list : {"Q2_K,Q4_0_S24", "F16,Q4_K", "Q2_K,,Q4_K", "Q9_K"})
    EXPECT_NE(test::expect_error([&] { set_job_option(bad, "mix-types", list); }).find("mix-types"),
              std::string::npos)
        << list;
}

// An AdaRound job on calibration text to the GGUF type or preset `type`.
QuantizeJob adaround_job(const test::TempDir& dir, const std::string& type) {
  QuantizeJob j = job_for(dir);
  j.method.kind = Method::AdaRound;
  j.calib.text = test::shared_path("data/calibration/calib-en-1mb.txt");
  std::get<GgufTarget>(j.target).type = type;
  return j;
}

// AdaRound and AutoRound train a grid per value, which the codebook types do not have: the
// job is refused before any calibration pass (the observer sees no calibration stage).
TEST(Job, LearnedRoundingRefusesCodebookTypesBeforeCalibrating) {
  test::TempDir dir;
  const QuantizeJob j = adaround_job(dir, "IQ2_M");
  bool calibrated = false;
  const std::string msg = test::expect_error([&] {
    run_quantize_job(j, [&](const Progress& p) {
      calibrated = calibrated || p.stage == Stage::Calibrate || p.stage == Stage::Block;
      return true;
    });
  });
  EXPECT_NE(msg.find("'blk.0.ffn_down.weight' is IQ3_S, a codebook type"), std::string::npos)
      << msg;
  EXPECT_FALSE(calibrated);
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// A calibrated method sees what an importance matrix holds, so a preset takes llama.cpp's mix
// for a file made with one: IQ3_XXS keeps ffn_down at IQ3_XXS (without one, the first
// eighth of the layers get Q4_K). The learned methods' refusal names the planned type.
TEST(Job, CalibratedMethodsTakeThePresetMixOfAnImportanceMatrix) {
  test::TempDir dir;
  const QuantizeJob j = adaround_job(dir, "IQ3_XXS");
  const std::string msg = test::expect_error([&] { run_quantize_job(j); });
  EXPECT_NE(msg.find("'blk.0.ffn_down.weight' is IQ3_XXS"), std::string::npos) << msg;
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

TEST(Job, CancellingFromTheObserverLeavesNoFile) {
  test::TempDir dir;
  QuantizeJob j = job_for(dir);
  size_t calls = 0;
  const std::string msg = test::expect_error([&] {
    run_quantize_job(j, [&](const Progress& p) {
      EXPECT_EQ(p.stage, Stage::Tensor);
      return ++calls < 3;
    });
  });
  EXPECT_NE(msg.find("cancelled during tensor 3/"), std::string::npos) << msg;
  EXPECT_EQ(calls, 3u);
  EXPECT_TRUE(fs::is_empty(dir.path()));
  try {
    run_quantize_job(j, [](const Progress&) { return false; });
    ADD_FAILURE() << "not cancelled";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), ErrorKind::Cancelled);
  }
}

TEST(Job, RoundingInRowChunksWritesTheSameBytes) {
  test::TempDir dir;
  const Model m = load_model(test::shared_path("models/tinyllm-8m"));
  QuantizeOptions o;
  o.plan.preset = "Q4_K_M";
  const QuantizeReport whole = quantize_model_gguf(m, dir.file("a.gguf"), o);
  o.chunk_values = 1000;  // a few rows at a time
  const QuantizeReport chunked = quantize_model_gguf(m, dir.file("b.gguf"), o);
  EXPECT_EQ(test::read_file(dir.file("a.gguf")), test::read_file(dir.file("b.gguf")));
  for (size_t i = 0; i < whole.tensors.size(); ++i)
    EXPECT_NEAR(whole.tensors[i].rel_rms_error, chunked.tensors[i].rel_rms_error, 1e-9)
        << whole.tensors[i].name;
}

// llama3-style models carry rope_freqs.weight, which the writer adds before the model's own
// tensors: the streamed tensors must still land in their own places.
TEST(Job, ModelsWithRopeFrequencyFactorsKeepThemAndEveryTensor) {
  test::TempDir dir;
  Model m = load_model(test::shared_path("models/tinyllm-8m"));
  for (uint32_t i = 0; i < m.config.head_dim / 2; ++i)
    m.rope_freq_factors.push_back(1.0f + 0.25f * (i % 4));
  for (Method method : {Method::Rtn, Method::Gptq}) {
    QuantizeJob j = job_for(dir, std::string(method_name(method)) + ".gguf");
    j.method.kind = method;
    j.calib.text = test::shared_path("data/calibration/calib-en-1mb.txt");
    j.calib.samples = 2;
    j.calib.ctx = 64;
    run_quantize_job(m, j);
    const Model q = load_model(j.output);
    EXPECT_EQ(q.rope_freq_factors, m.rope_freq_factors) << method_name(method);
    const auto f = GgufFile::open(j.output);
    ASSERT_TRUE(f->find_tensor("rope_freqs.weight")) << method_name(method);
    const QuantizeReport plain =
        quantize_model_gguf(load_model(j.model), dir.file("plain.gguf"), {});
    for (const TensorReport& t : plain.tensors)
      EXPECT_EQ(q.tensor(t.name).shape, t.shape) << t.name;
  }
}

TEST(GgufStream, TensorsInAnyOrderGiveTheSameFileAndAMissingOneNoFile) {
  test::TempDir dir;
  GgufWriter w;
  w.set("general.architecture", GgufValue::of_string("llama"));
  for (int i = 0; i < 3; ++i) {
    OutputTensor t;
    t.info = {"t" + std::to_string(i), DType::F32, {uint64_t(5 + i)}};
    t.nbytes = (5 + i) * 4;
    t.produce = [i, n = t.nbytes](std::vector<uint8_t>& b) {
      b.assign(n, static_cast<uint8_t>(i + 1));
    };
    w.add_tensor(std::move(t));
  }
  w.write(dir.file("pull.gguf"));
  {
    GgufStreamWriter s(w, dir.file("stream.gguf"));
    for (size_t i : {2, 0, 1}) {
      std::vector<uint8_t> b;
      w.tensors()[i].produce(b);
      s.write(i, 4, b.data() + 4, b.size() - 4);  // the tail first, then the head
      s.write(i, 0, b.data(), 4);
    }
    EXPECT_NE(
        test::expect_error([&] { s.write(1, 20, nullptr, 8); }).find("written past its 24 bytes"),
        std::string::npos);
    s.commit();
  }
  EXPECT_EQ(test::read_file(dir.file("pull.gguf")), test::read_file(dir.file("stream.gguf")));
  {
    GgufStreamWriter s(w, dir.file("partial.gguf"));
    s.write(0, std::vector<uint8_t>(20, 1));
    EXPECT_NE(test::expect_error([&] { s.commit(); }).find("tensor 't1' has 0 of its 24 bytes"),
              std::string::npos);
  }
  EXPECT_FALSE(fs::exists(dir.file("partial.gguf")));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir.path()), fs::directory_iterator()), 2);
}

TEST(Topology, GroupsNameTheLinearsSharingAnInputAndItsProducer) {
  ModelConfig c;
  c.attn_bias = true;
  const auto g = block_input_groups(c, 3);
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0].weights, (std::vector<std::string>{"blk.3.attn_q.weight", "blk.3.attn_k.weight",
                                                    "blk.3.attn_v.weight"}));
  EXPECT_EQ(g[0].source, InputSource::Norm);
  EXPECT_EQ(g[0].producer, "blk.3.attn_norm.weight");
  EXPECT_EQ(g[1].source, InputSource::KvHeadRows);
  EXPECT_EQ(g[1].producer_bias, "blk.3.attn_v.bias");
  EXPECT_EQ(g[3].producer, "blk.3.ffn_up.weight");
  EXPECT_EQ(input_group_key("blk.12.attn_v.weight"), "blk.12.attn_q.weight");
  EXPECT_EQ(input_group_key("blk.0.ffn_up.weight"), "blk.0.ffn_gate.weight");
  EXPECT_EQ(input_group_key("blk.0.ffn_down.weight"), "blk.0.ffn_down.weight");
  EXPECT_EQ(input_group_key("output.weight"), "output.weight");
  EXPECT_EQ(input_group_key("blk.0.attn_v.bias"), "blk.0.attn_v.bias");
}

}  // namespace
}  // namespace lowbit

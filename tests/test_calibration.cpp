// Calibration statistics: window sampling, collection through the engine, and the
// imatrix files (lowbit's GGUF, llama.cpp's GGUF names and legacy .dat).
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "lowbit/calibration.h"
#include "lowbit/file_io.h"
#include "lowbit/gguf.h"
#include "lowbit/model.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::shared_path;
using test::TempDir;

TEST(Calibration, WindowsAreSeededStartWithBosAndNeedEnoughText) {
  std::vector<int32_t> tokens(1000);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<int32_t>(i + 10);
  const auto a = sample_windows(tokens, 8, 64, 5, 1), b = sample_windows(tokens, 8, 64, 5, 1);
  const auto c = sample_windows(tokens, 8, 64, 6, 1);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  for (const auto& w : a) {
    ASSERT_EQ(w.size(), 64u);
    EXPECT_EQ(w[0], 1);
    EXPECT_EQ(w[2], w[1] + 1);  // consecutive text
  }
  EXPECT_NE(test::expect_error([&] {
              sample_windows(tokens, 1, 2000, 1, 1);
            }).find("fewer than one window of 2000"),
            std::string::npos);
}

TEST(Calibration, CollectsEveryLinearInputOnTinyllm) {
  const Model m = load_model(shared_path("models/tinyllm-8m"));
  const auto tokens = Tokenizer::create(m.vocab)->encode(
      read_text_file(shared_path("data/calibration/calib-en-1mb.txt")).substr(0, 20000), false);
  CalibrationOptions o;
  o.n_samples = 3;
  o.n_ctx = 64;
  const CalibrationStats s = collect_calibration_stats(m, tokens, o);
  // 7 linear weights per layer plus the output head.
  EXPECT_EQ(s.by_weight.size(), 7u * m.config.n_layer + 1);
  const InputStats& q = s.by_weight.at("blk.2.attn_q.weight");
  EXPECT_EQ(q.count, 3u * 64);
  EXPECT_EQ(q.sum_sq.size(), m.config.n_embd);
  EXPECT_EQ(q.sum_sq, s.by_weight.at("blk.2.attn_v.weight").sum_sq);  // same input
  EXPECT_EQ(s.by_weight.at("blk.2.ffn_down.weight").sum_sq.size(), m.config.n_ff);
  for (float v : q.importance()) EXPECT_GT(v, 0.0f);
  for (size_t j = 0; j < q.absmax.size(); ++j)
    EXPECT_LE(q.importance()[j], q.absmax[j] * q.absmax[j] * 1.0001f);
}

CalibrationStats small_stats() {
  CalibrationStats s;
  s.n_windows = 2;
  s.window_len = 16;
  s.dataset = "x.txt";
  s.by_weight["blk.0.attn_q.weight"] = {32, {1.0, 4.0, 9.0}, {1.0f, 2.0f, 3.0f}, {}};
  s.by_weight["output.weight"] = {32, {2.0, 2.0}, {0.5f, 0.5f}, {}};
  return s;
}

TEST(Calibration, GgufStatsRoundTrip) {
  TempDir dir;
  write_calibration_stats(small_stats(), dir.file("s.gguf"));
  const CalibrationStats r = read_calibration_stats(dir.file("s.gguf"));
  EXPECT_EQ(r.n_windows, 2u);
  EXPECT_EQ(r.window_len, 16u);
  ASSERT_EQ(r.by_weight.size(), 2u);
  const InputStats& q = r.by_weight.at("blk.0.attn_q.weight");
  EXPECT_EQ(q.count, 32u);
  EXPECT_EQ(q.sum_sq, (std::vector<double>{1.0, 4.0, 9.0}));
  EXPECT_EQ(q.absmax, (std::vector<float>{1.0f, 2.0f, 3.0f}));
  EXPECT_FLOAT_EQ(q.importance()[2], 9.0f / 32);
}

TEST(Calibration, GgufStatsKeepTheHessianAndCheckItsShape) {
  TempDir dir;
  CalibrationStats s = small_stats();
  InputStats& q = s.by_weight.at("blk.0.attn_q.weight");
  q.xtx = {32, 1, 2, 1, 64, 3, 2, 3, 96};  // Σ x xᵀ over count = 32 rows
  write_calibration_stats(s, dir.file("h.gguf"));
  const CalibrationStats r = read_calibration_stats(dir.file("h.gguf"));
  const std::vector<double> want = q.hessian(),
                            got = r.by_weight.at("blk.0.attn_q.weight").hessian();
  ASSERT_EQ(got.size(), 9u);
  for (size_t i = 0; i < 9; ++i) EXPECT_NEAR(got[i], want[i], 1e-6 * std::abs(want[i])) << i;
  EXPECT_DOUBLE_EQ(got[4], 2.0);
  EXPECT_TRUE(r.by_weight.at("output.weight").xtx.empty());  // written without one

  // A Hessian whose size disagrees with the weight's column count names its tensor.
  auto f32 = [](const std::string& name, std::vector<uint64_t> shape, std::vector<float> v) {
    OutputTensor t;
    t.info = {name, DType::F32, std::move(shape)};
    t.nbytes = v.size() * 4;
    t.produce = [v](std::vector<uint8_t>& b) { b = from_f32(v.data(), v.size(), DType::F32); };
    return t;
  };
  GgufWriter w;
  w.add_tensor(f32("blk.0.attn_q.weight.in_sum2", {3}, {1, 2, 3}));
  w.add_tensor(f32("blk.0.attn_q.weight.counts", {1}, {4}));
  w.add_tensor(f32("blk.0.attn_q.weight.in_hessian", {2, 2}, {1, 0, 0, 1}));
  w.write(dir.file("bad.gguf"));
  const std::string msg = test::expect_error([&] { read_calibration_stats(dir.file("bad.gguf")); });
  EXPECT_NE(msg.find("tensor 'blk.0.attn_q.weight.in_hessian' must be F32 [3, 3]"),
            std::string::npos)
      << msg;
}

TEST(Calibration, ReadsLlamaCppLegacyDat) {
  TempDir dir;
  std::string bytes;
  auto put_i32 = [&](int32_t v) { bytes.append(reinterpret_cast<const char*>(&v), 4); };
  put_i32(1);
  const std::string name = "blk.0.ffn_up.weight";
  put_i32(static_cast<int32_t>(name.size()));
  bytes += name;
  put_i32(10);  // ncall
  put_i32(2);   // nval
  for (float v : {3.0f, 6.0f}) bytes.append(reinterpret_cast<const char*>(&v), 4);
  put_i32(7);  // chunk count
  test::write_file(dir.file("imatrix.dat"), bytes);
  const CalibrationStats s = read_calibration_stats(dir.file("imatrix.dat"));
  ASSERT_EQ(s.by_weight.count(name), 1u);
  const auto imp = s.by_weight.at(name).importance();
  EXPECT_FLOAT_EQ(imp[1] / imp[0], 2.0f);
  EXPECT_EQ(s.n_windows, 7u);

  test::write_file(dir.file("cut.dat"), bytes.substr(0, 40));
  const std::string msg = test::expect_error([&] { read_calibration_stats(dir.file("cut.dat")); });
  EXPECT_NE(msg.find(dir.file("cut.dat") + ": truncated while reading values"), std::string::npos)
      << msg;
}

TEST(Calibration, GgufStatsWithoutCountsNameTheTensor) {
  TempDir dir;
  GgufWriter w;
  std::vector<float> v = {1, 2};
  OutputTensor t;
  t.info = {"blk.0.attn_q.weight.in_sum2", DType::F32, {2}};
  t.nbytes = 8;
  t.produce = [v](std::vector<uint8_t>& b) { b = from_f32(v.data(), 2, DType::F32); };
  w.add_tensor(std::move(t));
  w.write(dir.file("bad.gguf"));
  const std::string msg = test::expect_error([&] { read_calibration_stats(dir.file("bad.gguf")); });
  EXPECT_NE(
      msg.find("tensor 'blk.0.attn_q.weight.in_sum2' has no matching 'blk.0.attn_q.weight.counts'"),
      std::string::npos)
      << msg;
}

TEST(Cli, CalibrateThenQuantizeWithTheStatistics) {
  TempDir dir;
  const std::string model = shared_path("models/tinyllm-8m");
  auto r = test::run_cli({"calibrate", model, "--calib",
                          shared_path("data/calibration/calib-en-1mb.txt"), "-o",
                          dir.file("s.gguf"), "--calib-samples", "4", "--calib-ctx", "128", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"quantize", model, "-o", dir.file("q.gguf"), "--type", "Q4_K_M", "--imatrix",
                     dir.file("s.gguf"), "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  auto g = GgufFile::open(dir.file("q.gguf"));
  EXPECT_EQ(g->get_string("lowbit.quantize.method"), "rtn-importance");
  r = test::run_cli({"quantize", model, "-o", dir.file("x.gguf"), "--method", "imatrix"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("method imatrix needs statistics (an imatrix file) or calibration text"),
            std::string::npos)
      << r.err;
  write_calibration_stats(small_stats(), dir.file("other.gguf"));
  CalibrationStats foreign;
  foreign.by_weight["enc.layer.0.weight"] = {1, {1.0}, {}, {}};
  write_calibration_stats(foreign, dir.file("foreign.gguf"));
  r = test::run_cli(
      {"quantize", model, "-o", dir.file("x.gguf"), "--imatrix", dir.file("foreign.gguf")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("the statistics name none of this model's weights"), std::string::npos)
      << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

TEST(Cli, GptqFromSavedHessiansBeatsRoundingOnEveryLayerOutput) {
  TempDir dir;
  const std::string model = shared_path("models/tinyllm-8m"),
                    calib = shared_path("data/calibration/calib-en-1mb.txt");
  auto r = test::run_cli({"calibrate", model, "--calib", calib, "-o", dir.file("h.gguf"),
                          "--calib-samples", "8", "--calib-ctx", "128", "--hessian", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"quantize", model, "-o", dir.file("q.gguf"), "--type", "Q3_K_M", "--method",
                     "gptq", "--stats", dir.file("h.gguf"), "-q", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(GgufFile::open(dir.file("q.gguf"))
                ->get_string("lowbit.quantize.method")
                .rfind("gptq static stats=h.gguf calib=8x128", 0),
            0u);
  size_t compared = 0;
  double gptq = 0, rtn = 0;
  const nlohmann::json report = nlohmann::json::parse(r.out);
  for (const auto& t : report["tensors"]) {
    if (t["rel_output_error_rtn"].get<double>() == 0) continue;
    ++compared;
    gptq += t["rel_output_error"].get<double>();
    rtn += t["rel_output_error_rtn"].get<double>();
  }
  EXPECT_EQ(compared, 7u * 8 + 1);  // every linear weight and the head
  EXPECT_LT(gptq, 0.9 * rtn);

  // The affine layout takes the same file; statistics without Hessians are refused by name.
  r = test::run_cli({"quantize", model, "-o", dir.file("a.gguf"), "--type", "int4", "--method",
                     "gptq", "--stats", dir.file("h.gguf"), "-q"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"calibrate", model, "--calib", calib, "-o", dir.file("s.gguf"),
                     "--calib-samples", "2", "--calib-ctx", "64", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"quantize", model, "-o", dir.file("x.gguf"), "--method", "gptq", "--stats",
                     dir.file("s.gguf")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("s.gguf: method gptq needs the Hessian of"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("calibrate with Hessians"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir.file("x.gguf")));
}

}  // namespace
}  // namespace lowbit

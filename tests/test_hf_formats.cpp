// GPTQ and AWQ checkpoints (src/quant/hf_formats.h): the packed layouts decode to exactly
// what lowbit's own layout decodes to, the exported directories load back bit for bit, and
// corrupted parts or configs fail naming the tensor or key.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "formats/model_writer.h"
#include "lowbit/affine.h"
#include "lowbit/float_convert.h"
#include "lowbit/model.h"
#include "lowbit/safetensors.h"
#include "quant/affine_gguf.h"
#include "quant/hf_formats.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
using quant::HfQuantConfig;

// One linear packed in a layout: the parts' bytes and views named "w.qweight", ...
struct Packed {
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<TensorView> views;
  std::vector<const TensorView*> parts() const {
    std::vector<const TensorView*> p;
    for (const TensorView& v : views) p.push_back(&v);
    return p;
  }
  int32_t word(size_t part, size_t i) const {
    int32_t w;
    std::memcpy(&w, bytes[part].data() + 4 * i, 4);
    return w;
  }
};

Packed pack(AffineFormat f, const AffineTensor& t, const AffineSpec& s, uint64_t rows,
            uint64_t cols) {
  Packed p;
  p.bytes = quant::pack_affine(f, t, s, rows, cols);
  const auto parts = quant::packed_parts(f, s, rows, cols, "w");
  for (size_t k = 0; k < parts.size(); ++k)
    p.views.push_back(TensorView{{"w" + parts[k].suffix, parts[k].type, parts[k].shape},
                                 p.bytes[k].data(),
                                 p.bytes[k].size()});
  return p;
}

HfQuantConfig config_for(AffineFormat f, const AffineSpec& s) {
  const nlohmann::json cfg = {{"quantization_config", quant::hf_quantization_config(f, s, "rtn")}};
  return quant::read_hf_quant_config(cfg.dump(), "config.json").value();
}

// lowbit's own decoding, with the scales rounded to f16 as every layout stores them.
std::vector<float> reference(AffineTensor t, const AffineSpec& s, uint64_t rows, uint64_t cols) {
  const std::vector<uint8_t> h = from_f32(t.scales.data(), t.scales.size(), DType::F16);
  t.scales = to_f32(TensorView{{"s", DType::F16, {t.scales.size()}}, h.data(), h.size()});
  std::vector<float> y(rows * cols);
  affine_dequantize(t, rows, cols, s, y.data());
  return y;
}

uint8_t code_at(const AffineTensor& t, const AffineSpec& s, uint64_t cols, uint64_t j, uint64_t i) {
  std::vector<uint8_t> row(cols);
  unpack_bits(&t.codes[j * packed_row_bytes(cols, s.bits)], cols, s.bits, row.data());
  return row[i];
}

struct Case {
  AffineFormat format;
  int bits;
  int64_t group;
  bool symmetric;
};

TEST(HfFormats, PackedLayoutsDecodeBitExactly) {
  const uint64_t rows = 64, cols = 256;
  const std::vector<float> x = test::gaussian(rows * cols, 7);
  for (const Case c :
       {Case{AffineFormat::Gptq, 2, 32, true}, Case{AffineFormat::Gptq, 3, 32, true},
        Case{AffineFormat::Gptq, 4, 128, true}, Case{AffineFormat::Gptq, 4, 64, false},
        Case{AffineFormat::Gptq, 8, 0, true}, Case{AffineFormat::Gptq, 3, 128, false},
        Case{AffineFormat::Awq, 4, 32, true}, Case{AffineFormat::Awq, 4, 128, false},
        Case{AffineFormat::CompressedTensors, 4, 128, true},
        Case{AffineFormat::CompressedTensors, 3, 32, false},
        Case{AffineFormat::CompressedTensors, 5, 0, true},
        Case{AffineFormat::CompressedTensors, 7, 64, false},
        Case{AffineFormat::CompressedTensors, 8, 0, false}}) {
    AffineSpec s;
    s.bits = c.bits, s.group = c.group, s.symmetric = c.symmetric;
    SCOPED_TRACE(std::string(affine_format_name(c.format)) + " " + s.describe());
    const AffineTensor t = affine_quantize(x.data(), rows, cols, s);
    const Packed p = pack(c.format, t, s, rows, cols);
    const HfQuantConfig cfg = config_for(c.format, s);
    EXPECT_EQ(cfg.zeros_minus_one, c.format == AffineFormat::Gptq && c.symmetric);
    EXPECT_EQ(cfg.bits, c.bits);
    EXPECT_EQ(cfg.group_size, c.group > 0 ? c.group : -1);
    if (c.format == AffineFormat::CompressedTensors) {
      EXPECT_EQ(cfg.symmetric, c.symmetric);
    }
    uint64_t r = 0, n = 0;
    const std::vector<float> y = quant::dequantize_hf_linear(cfg, "w", p.parts(), "ck", &r, &n);
    ASSERT_EQ(r, rows);
    ASSERT_EQ(n, cols);
    const std::vector<float> want = reference(t, s, rows, cols);
    EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * 4), 0);
    // The layouts' conventions, element by element (not just self-consistency).
    const uint64_t groups = s.groups_per_row(cols);
    if (c.format == AffineFormat::Gptq && c.bits == 4) {
      // qweight [cols/8, rows]: word (w, j) holds inputs 8w..8w+7 of output j, LSB first.
      for (uint64_t j : {0u, 5u, 63u})
        for (uint64_t i : {0u, 3u, 9u, 255u})
          EXPECT_EQ((p.word(0, (i / 8) * rows + j) >> (4 * (i % 8))) & 15,
                    code_at(t, s, cols, j, i));
      // qzeros [groups, rows/8]: output j's zero (minus one for "gptq") in nibble j % 8.
      for (uint64_t j : {0u, 13u})
        EXPECT_EQ((p.word(1, j / 8) >> (4 * (j % 8))) & 15,
                  (t.zeros[j * groups] - (c.symmetric ? 1 : 0)) & 15);
    }
    if (c.format == AffineFormat::Awq) {
      // qweight [cols, rows/8]: nibble k of word (i, b) holds output 8b + {0,2,4,6,1,3,5,7}[k].
      const int order[8] = {0, 2, 4, 6, 1, 3, 5, 7};
      for (uint64_t i : {0u, 77u})
        for (int k = 0; k < 8; ++k)
          EXPECT_EQ((p.word(0, i * (rows / 8) + 2) >> (4 * k)) & 15,
                    code_at(t, s, cols, 16 + order[k], i));
    }
    if (c.format == AffineFormat::CompressedTensors) {
      // weight_packed [rows, words]: 32/bits codes per word, none crossing into the next.
      const uint64_t per = 32 / c.bits, words = (cols + per - 1) / per;
      const uint32_t mask = (1u << c.bits) - 1;
      for (uint64_t j : {0u, 9u, 63u})
        for (uint64_t i : {0u, 10u, 29u, 255u})
          EXPECT_EQ(
              (static_cast<uint32_t>(p.word(0, j * words + i / per)) >> (c.bits * (i % per))) &
                  mask,
              code_at(t, s, cols, j, i));
      // weight_zero_point [words of rows, groups] (asymmetric only), weight_shape [rows, cols]
      ASSERT_EQ(p.views.size(), c.symmetric ? 3u : 4u);
      if (!c.symmetric) {
        for (uint64_t j : {0u, 12u, 63u})
          EXPECT_EQ((static_cast<uint32_t>(p.word(2, (j / per) * groups + groups - 1)) >>
                     (c.bits * (j % per))) &
                        mask,
                    t.zeros[j * groups + groups - 1]);
      }
      int64_t shape[2];
      std::memcpy(shape, p.bytes.back().data(), 16);
      EXPECT_EQ(shape[0], 64);
      EXPECT_EQ(shape[1], 256);
      continue;
    }
    // scales [groups, rows]
    const std::vector<float> sc = to_f32(p.views[2]);
    EXPECT_NEAR(sc[(groups - 1) * rows + 3], t.scales[3 * groups + groups - 1],
                1e-3 * std::abs(t.scales[3 * groups + groups - 1]));
  }
}

// GPTQ v1 stores z - 1 per field: a zero point of 0 is stored as 15 (4 bits) and must read
// back as 0, not 16.
TEST(HfFormats, GptqV1ZeroPointOfZeroReadsBack) {
  const uint64_t rows = 32, cols = 64;
  const std::vector<float> x = test::gaussian(rows * cols, 5);
  AffineSpec a;
  a.bits = 4, a.group = 32, a.symmetric = false;
  AffineTensor t = affine_quantize(x.data(), rows, cols, a);
  t.zeros[0] = 0, t.zeros[5] = 15;
  Packed p = pack(AffineFormat::Gptq, t, a, rows, cols);  // gptq_v2: z as it is
  for (size_t w = 0; w < p.bytes[1].size() / 4; ++w) {    // to v1: each field z - 1, masked
    uint32_t v = static_cast<uint32_t>(p.word(1, w)), out = 0;
    for (int k = 0; k < 8; ++k) out |= (((v >> (4 * k)) - 1) & 15u) << (4 * k);
    std::memcpy(p.bytes[1].data() + 4 * w, &out, 4);
  }
  HfQuantConfig v1 = config_for(AffineFormat::Gptq, a);
  v1.zeros_minus_one = true;
  uint64_t r, n;
  const std::vector<float> y = quant::dequantize_hf_linear(v1, "w", p.parts(), "ck", &r, &n);
  const std::vector<float> want = reference(t, a, rows, cols);
  EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * 4), 0);
}

TEST(HfFormats, LayoutsRefuseWhatTheyCannotHold) {
  struct Bad {
    AffineFormat format;
    int bits;
    int64_t group;
    uint64_t rows;
    const char* message;
  };
  for (const Bad b :
       {Bad{AffineFormat::Gptq, 5, 128, 64, "GPTQ stores 2, 3, 4 or 8 bits, not 5"},
        Bad{AffineFormat::Awq, 3, 128, 64, "AWQ stores 4 bits, not 3"},
        Bad{AffineFormat::Gptq, 4, 100, 64,
            "tensor 'w': 256 inputs do not divide into gptq groups of 100"},
        Bad{AffineFormat::Awq, 4, 32, 12, "tensor 'w': AWQ packs 8 outputs per word; 12"}}) {
    AffineSpec s;
    s.bits = b.bits, s.group = b.group;
    const std::string msg =
        test::expect_error([&] { quant::packed_parts(b.format, s, b.rows, 256, "w"); });
    EXPECT_NE(msg.find(b.message), std::string::npos) << msg;
  }
}

TEST(HfFormats, CorruptedPartsNameTheTensor) {
  const uint64_t rows = 32, cols = 128;
  const std::vector<float> x = test::gaussian(rows * cols, 3);
  AffineSpec s;
  s.group = 32;
  const AffineTensor t = affine_quantize(x.data(), rows, cols, s);
  const HfQuantConfig cfg = config_for(AffineFormat::Gptq, s);
  auto error_of = [&](const std::function<void(Packed&)>& spoil) {
    Packed p = pack(AffineFormat::Gptq, t, s, rows, cols);
    spoil(p);
    uint64_t r, n;
    return test::expect_error(
        [&] { quant::dequantize_hf_linear(cfg, "w", p.parts(), "ck", &r, &n); });
  };
  std::string msg = error_of([](Packed& p) { p.views[0].shape = {15, 32}; });
  EXPECT_NE(msg.find("ck: tensor 'w.qweight' has shape [15, 32], expected [16, 32]"),
            std::string::npos)
      << msg;
  msg = error_of([](Packed& p) { p.views[2].dtype = DType::BF16; });
  EXPECT_NE(msg.find("ck: tensor 'w.scales' is BF16, expected F16"), std::string::npos) << msg;
  msg = error_of([](Packed& p) { p.views[1].shape = {4, 8}, p.views[1].dtype = DType::F16; });
  EXPECT_NE(msg.find("tensor 'w.qzeros' is F16, expected I32"), std::string::npos) << msg;
  msg = error_of([](Packed& p) { p.views[3].dtype = DType::F32; });
  EXPECT_NE(msg.find("tensor 'w.g_idx' must be a vector of I32, not F32 [128]"), std::string::npos)
      << msg;
  msg = error_of([](Packed& p) { p.views.erase(p.views.begin() + 1); });
  EXPECT_NE(msg.find("ck: tensor 'w.qzeros' is missing"), std::string::npos) << msg;
  msg = error_of([](Packed& p) {
    int32_t bad = 9;
    std::memcpy(p.bytes[3].data() + 4 * 40, &bad, 4);
  });
  EXPECT_NE(msg.find("tensor 'w.g_idx'[40] = 9 is outside its 4 groups"), std::string::npos) << msg;
  msg = error_of([](Packed& p) {  // input 40 moved from group 1 to group 2
    int32_t other = 2;
    std::memcpy(p.bytes[3].data() + 4 * 40, &other, 4);
  });
  EXPECT_NE(msg.find("tensor 'w.g_idx' puts 31 inputs in group 1, not 32"), std::string::npos)
      << msg;
  // compressed-tensors: a weight_shape that disagrees with the packed codes, zeros outside
  // the codes' range.
  {
    AffineSpec a = s;
    a.symmetric = false;
    const AffineTensor ta = affine_quantize(x.data(), rows, cols, a);
    const HfQuantConfig ct = config_for(AffineFormat::CompressedTensors, a);
    Packed p = pack(AffineFormat::CompressedTensors, ta, a, rows, cols);
    const int64_t wrong_shape[2] = {32, 120};
    std::memcpy(p.bytes[3].data(), wrong_shape, 16);
    uint64_t r, n;
    std::string m =
        test::expect_error([&] { quant::dequantize_hf_linear(ct, "w", p.parts(), "ck", &r, &n); });
    EXPECT_NE(m.find("tensor 'w.weight_packed' has shape [32, 16], expected [32, 15]"),
              std::string::npos)
        << m;
    p = pack(AffineFormat::CompressedTensors, ta, a, rows, cols);
    p.views[2].dtype = DType::I8, p.views[2].shape = {rows, 4};  // old unpacked signed zeros
    p.bytes[2].assign(rows * 4, static_cast<uint8_t>(-100));
    p.views[2].data = p.bytes[2].data();
    m = test::expect_error([&] { quant::dequantize_hf_linear(ct, "w", p.parts(), "ck", &r, &n); });
    EXPECT_NE(m.find("ck: 'w' has a zero point of -92, outside its 4-bit codes"), std::string::npos)
        << m;
  }
  // A group size the config does not match: 4 groups of scales, config says 64 (2 groups).
  HfQuantConfig wrong = cfg;
  wrong.group_size = 64;
  Packed p = pack(AffineFormat::Gptq, t, s, rows, cols);
  p.views.pop_back();  // without g_idx the config's group size decides
  uint64_t r, n;
  msg =
      test::expect_error([&] { quant::dequantize_hf_linear(wrong, "w", p.parts(), "ck", &r, &n); });
  EXPECT_NE(msg.find("tensor 'w.scales' has 4 groups; 128 inputs in groups of 64 make 2"),
            std::string::npos)
      << msg;
}

TEST(HfFormats, ConfigErrorsNameTheKey) {
  auto read = [](const std::string& q) {
    return quant::read_hf_quant_config("{\"quantization_config\": " + q + "}", "config.json");
  };
  EXPECT_FALSE(quant::read_hf_quant_config("{\"hidden_size\": 8}", "config.json").has_value());
  EXPECT_FALSE(read(R"({"quant_method": "lowbit-affine", "bits": 4})").has_value());
  const HfQuantConfig v2 =
      read(
          R"({"quant_method": "gptq", "bits": 3, "group_size": -1, )"
          R"("checkpoint_format": "gptq_v2"})")
          .value();
  EXPECT_EQ(v2.bits, 3);
  EXPECT_EQ(v2.group_size, -1);
  EXPECT_FALSE(v2.zeros_minus_one);
  const std::pair<const char*, const char*> bad[] = {
      {R"({"quant_method": "hqq"})",
       "config.json: quantization_config.quant_method 'hqq' is not read (gptq, awq, "
       "compressed-tensors, bitsandbytes)"},
      {R"({"quant_method": "bitsandbytes"})",
       "bitsandbytes with neither load_in_4bit nor load_in_8bit"},
      {R"({"quant_method": "bitsandbytes", "load_in_4bit": true,
          "bnb_4bit_quant_storage": "bfloat16"})",
       "quantization_config.bnb_4bit_quant_storage 'bfloat16' is not read (uint8)"},
      {R"({"quant_method": "gptq", "bits": 5, "group_size": 128})",
       "config.json: quantization_config.bits 5 is not a gptq width"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 0})",
       "config.json: quantization_config.group_size 0"},
      {R"({"quant_method": "gptq", "bits": 4, "group_size": 128, "checkpoint_format": "marlin"})",
       "quantization_config.checkpoint_format 'marlin' is not read"},
      {R"({"quant_method": "awq", "bits": 4, "group_size": 128, "version": "gemv"})",
       "quantization_config.version 'gemv' is not read"},
      {R"({"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": false})",
       "AWQ without zero points is not read"},
      {R"({"quant_method": "gptq", "bits": "four", "group_size": 128})",
       "config.json: quantization_config:"},
      {R"({"quant_method": "gptq", "group_size": 128})", "config.json: quantization_config:"},
      {R"({"quant_method": "compressed-tensors", "format": "marlin-24"})",
       "quantization_config.format 'marlin-24' is not read (pack-quantized, int-quantized"},
      {R"({"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups":
          {"g": {"weights": {"num_bits": 8, "type": "float", "strategy": "channel"}}}})",
       "weights.type 'float' is not read with this format"},
      {R"({"quant_method": "compressed-tensors", "format": "float-quantized", "config_groups":
          {"g": {"weights": {"num_bits": 4, "type": "float", "strategy": "channel"}}}})",
       "float weights must be 8-bit symmetric (E4M3)"},
      {R"({"quant_method": "compressed-tensors", "format": "int-quantized", "config_groups":
          {"g": {"weights": {"num_bits": 8, "strategy": "block"}}}})",
       "weights.strategy 'block' is not read (group, channel, tensor)"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights":
          {"num_bits": 4, "strategy": "tensor"}}}})",
       "pack-quantized weights with one scale per tensor are not read"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"a": {"weights":
          {"num_bits": 4, "group_size": 128}}, "b": {"weights":
          {"num_bits": 8, "group_size": 128}}}})",
       "config_groups.b: groups whose weights differ are not read"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {}})",
       "quantization_config.config_groups holds no group"},
      {R"({"quant_method": "compressed-tensors", "config_groups": {"g": {"weights":
          {"num_bits": 9, "group_size": 32}}}})",
       "quantization_config.bits 9 is not a compressed-tensors width"},
  };
  for (const auto& entry : bad) {
    const char* q = entry.first;  // a named variable: clang 14 cannot capture a binding
    const std::string msg = test::expect_error([&] { read(q); });
    EXPECT_NE(msg.find(entry.second), std::string::npos) << q << " -> " << msg;
  }
}

// tinyllm-8m written in all three layouts loads back to the same weights, bit for bit.
TEST(HfFormats, ExportedCheckpointsLoadLikeLowbitsOwn) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::pair<std::vector<std::string>, std::vector<std::string>> runs[] = {
      {{"--type", "int4", "--group", "128"}, {"lowbit", "gptq", "awq", "compressed-tensors"}},
      {{"--type", "int3", "--group", "64", "--asym"}, {"lowbit", "gptq", "compressed-tensors"}},
  };
  for (const auto& [flags, formats] : runs) {
    std::vector<Model> loaded;
    for (const std::string& f : formats) {
      const std::string out = dir.file(flags[1] + "-" + f);
      std::vector<std::string> args = {"quantize", model, "-o", out, "--format", f, "-q"};
      args.insert(args.end(), flags.begin(), flags.end());
      const auto r = test::run_cli(args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      loaded.push_back(load_model(out));
    }
    const nlohmann::json cfg =
        nlohmann::json::parse(test::read_file(dir.file(flags[1] + "-gptq/config.json")));
    const auto& q = cfg["quantization_config"];
    EXPECT_EQ(q["quant_method"], "gptq");
    EXPECT_EQ(q["bits"], flags[1] == "int4" ? 4 : 3);
    EXPECT_EQ(q["checkpoint_format"], flags.size() == 4 ? "gptq" : "gptq_v2");
    EXPECT_TRUE(fs::exists(dir.file(flags[1] + "-gptq/quantize_config.json")));
    const Model& own = loaded[0];
    for (size_t k = 1; k < loaded.size(); ++k) {
      SCOPED_TRACE(formats[k] + " " + flags[1]);
      ASSERT_EQ(loaded[k].tensors.size(), own.tensors.size());
      for (const TensorView& t : own.tensors) {
        const TensorView& u = loaded[k].tensor(t.name);
        ASSERT_EQ(u.shape, t.shape) << t.name;
        const std::vector<float> a = to_f32(t), b = to_f32(u);
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << t.name;
      }
    }
  }
}

TEST(HfFormats, CliRefusesFormatsThatCannotHoldTheTarget) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::pair<std::vector<std::string>, const char*> bad[] = {
      {{"--type", "Q4_K_M", "--format", "gptq"}, "format gptq holds int2..int8 weights"},
      {{"--type", "int3", "--format", "awq"}, "AWQ stores 4 bits, not 3"},
      {{"--type", "int5", "--format", "gptq"}, "GPTQ stores 2, 3, 4 or 8 bits, not 5"},
      {{"--type", "int4", "--group", "-1", "--format", "gptq"}, "gptq has no per-tensor scale"},
      {{"--type", "int8", "--method", "w8a8", "--format", "gptq"}, "format gptq holds"},
  };
  for (const auto& [flags, want] : bad) {
    std::vector<std::string> args = {"quantize", model, "-o", dir.file("o"), "-q"};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << flags[1];
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  }
  EXPECT_TRUE(fs::is_empty(dir.path()));
}

// A GPTQ checkpoint whose config names a scheme lowbit cannot read fails naming the key.
TEST(HfFormats, UnknownSchemeInAConfigNamesTheKey) {
  test::TempDir dir;
  const auto r = test::run_cli({"quantize", test::shared_path("models/tinyllm-8m"), "-o",
                                dir.file("g"), "--type", "int4", "--format", "gptq", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json cfg = nlohmann::json::parse(test::read_file(dir.file("g/config.json")));
  cfg["quantization_config"]["quant_method"] = "exl3";
  { std::ofstream(dir.file("g/config.json")) << cfg.dump(); }
  const std::string msg = test::expect_error([&] { load_model(dir.file("g")); });
  EXPECT_NE(msg.find("config.json: quantization_config.quant_method 'exl3' is not read"),
            std::string::npos)
      << msg;
}

// convert --calib: the linears no GGUF type holds (int3 -> Q3_K) are rounded by GPTQ with
// Hessians of the checkpoint's own activations, which lowers their output error.
TEST(HfFormats, ConvertWithCalibrationRoundsTheRestByGptq) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string calib = test::shared_path("data/calibration/calib-en-1mb.txt");
  auto r = test::run_cli(
      {"quantize", model, "-o", dir.file("ck"), "--type", "int3", "--format", "gptq", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = test::run_cli({"convert", dir.file("ck"), "-o", dir.file("ck.gguf"), "--calib", calib,
                     "--calib-samples", "8", "--calib-ctx", "128", "--json", "-q"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const nlohmann::json report = nlohmann::json::parse(r.out);
  EXPECT_NE(report["method"].get<std::string>().find("gptq"), std::string::npos);
  double gptq = 0, rtn = 0;
  int linears = 0;
  for (const auto& t : report["tensors"])
    if (t["type"] == "Q3_K") {
      ++linears;
      EXPECT_GT(t["rel_output_error"].get<double>(), 0) << t["name"];
      gptq += t["rel_output_error"].get<double>(), rtn += t["rel_output_error_rtn"].get<double>();
    }
  EXPECT_EQ(linears, 56);
  EXPECT_LT(gptq, rtn);
  // A float model has no grid to keep: --calib is refused before any work.
  r = test::run_cli({"convert", model, "-o", dir.file("f.gguf"), "--calib", calib});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("--calib applies to an integer checkpoint written as GGUF"),
            std::string::npos)
      << r.err;
  EXPECT_FALSE(fs::exists(dir.file("f.gguf")));
}

// Which grids a GGUF block type holds, and that the blocks decode to the grid's values.
TEST(HfFormats, GgufBlocksKeepTheGridsTheyHold) {
  const uint64_t rows = 16, cols = 256;
  const std::vector<float> x = test::gaussian(rows * cols, 11);
  struct Want {
    int bits;
    int64_t group;
    bool symmetric;
    std::optional<DType> type;
  };
  for (const Want c : {Want{4, 32, true, DType::Q4_0}, Want{4, 128, false, DType::Q4_1},
                       Want{5, 64, true, DType::Q5_0}, Want{5, 0, false, DType::Q5_1},
                       Want{8, 0, true, DType::Q8_0}, Want{8, -1, true, DType::Q8_0},
                       Want{8, 32, false, std::nullopt}, Want{3, 32, true, std::nullopt},
                       Want{4, 16, true, std::nullopt}, Want{2, 128, false, std::nullopt}}) {
    AffineWeight w;
    w.spec.bits = c.bits, w.spec.group = c.group, w.spec.symmetric = c.symmetric;
    w.rows = rows, w.cols = cols;
    SCOPED_TRACE(w.spec.describe());
    w.t = affine_quantize(x.data(), rows, cols, w.spec);
    const std::vector<float> want = reference(w.t, w.spec, rows, cols);
    for (float& s : w.t.scales) s = f16_to_f32(f32_to_f16(s));  // f16, as a loader gives them
    const std::optional<DType> t = quant::gguf_type_holding(w);
    EXPECT_EQ(t, c.type);
    if (!t) {
      EXPECT_NE(quant::gguf_type_for_requantizing(w), DType::F16);
      continue;
    }
    const std::vector<uint8_t> blocks = quant::encode_affine_blocks(w, *t);
    const std::vector<float> y =
        to_f32(TensorView{{"w", *t, {rows, cols}}, blocks.data(), blocks.size()});
    ASSERT_EQ(y.size(), want.size());
    if (c.symmetric) {
      EXPECT_EQ(std::memcmp(y.data(), want.data(), y.size() * 4), 0);
    } else {  // exact but for the f16 rounding of the offset -s*z
      for (size_t i = 0; i < y.size(); ++i)
        ASSERT_NEAR(y[i], want[i], 1e-3 * std::abs(want[i]) + 1e-3) << i;
    }
  }
}

// convert --type auto: a GPTQ int4 checkpoint becomes Q4_0 GGUF with the same weights, bit
// for bit; an int3 one is rounded again onto Q3_K and says so.
TEST(HfFormats, ConvertToGgufKeepsTheCodes) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  for (const char* type : {"int4", "int3"}) {
    SCOPED_TRACE(type);
    const std::string ck = dir.file(std::string(type) + "-gptq");
    const std::string gguf = ck + ".gguf";
    auto r = test::run_cli({"quantize", model, "-o", ck, "--type", type, "--format", "gptq", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    r = test::run_cli({"convert", ck, "-o", gguf, "--json"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const bool kept = std::string(type) == "int4";
    const nlohmann::json report = nlohmann::json::parse(r.out);
    for (const auto& t : report["tensors"])
      if (t["name"] == "blk.2.attn_q.weight") {
        EXPECT_EQ(t["type"], kept ? "Q4_0" : "Q3_K");
      }
    EXPECT_NE(r.err.find(kept ? "56 linears with their codes kept, 0 rounded again"
                              : "0 linears with their codes kept, 56 rounded again"),
              std::string::npos)
        << r.err;
    const Model source = load_model(ck), out = load_model(gguf);
    for (const auto& [name, w] : source.affine_weights) {
      const std::vector<float> a = to_f32(source.tensor(name));
      const std::vector<float> b = load_rows(out, out.tensor(name), RopeLayout::Halves);
      ASSERT_EQ(a.size(), b.size());
      if (kept) {
        EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * 4), 0) << name;
      } else {
        double e = 0, n = 0;
        for (size_t i = 0; i < a.size(); ++i) e += (a[i] - b[i]) * (a[i] - b[i]), n += a[i] * a[i];
        EXPECT_LT(std::sqrt(e / n), 0.2) << name;
        EXPECT_GT(std::sqrt(e / n), 0.0) << name;
      }
    }
  }
  // A float model has no codes to keep: auto writes F16 as before.
  const auto r = test::run_cli({"convert", model, "-o", dir.file("f16.gguf")});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(load_model(dir.file("f16.gguf")).tensor("blk.0.ffn_up.weight").dtype, DType::F16);
}

// compressed-tensors int-quantized (W8A8: int8 codes in ".weight", per-channel scales, a
// static input scale) and float-quantized (FP8 E4M3, 128 x 128 block scales), made from
// tinyllm-8m here as llm-compressor lays them out: the loader decodes s * code exactly.
TEST(HfFormats, CompressedTensorsInt8AndFp8CheckpointsLoad) {
  test::TempDir dir;
  const std::string src = test::shared_path("models/tinyllm-8m");
  const Model m = load_model(src);
  for (const bool fp8 : {false, true}) {
    SCOPED_TRACE(fp8 ? "fp8" : "int8");
    const std::string out = dir.file(fp8 ? "fp8" : "int8");
    const nlohmann::json weights =
        fp8 ? nlohmann::json{{"num_bits", 8},
                             {"type", "float"},
                             {"symmetric", true},
                             {"strategy", "block"},
                             {"block_structure", {128, 128}}}
            : nlohmann::json{
                  {"num_bits", 8}, {"type", "int"}, {"symmetric", true}, {"strategy", "channel"}};
    const nlohmann::json qc = {
        {"quant_method", "compressed-tensors"},
        {"format", fp8 ? "float-quantized" : "int-quantized"},
        {"config_groups",
         {{"group_0",
           {{"targets", {"Linear"}},
            {"weights", weights},
            {"input_activations",
             {{"num_bits", 8}, {"type", fp8 ? "float" : "int"}, {"strategy", "tensor"}}}}}}},
        {"ignore", {"lm_head"}}};
    test::HfDirWriter ck(src, out, qc.dump());
    auto add = [&ck](const std::string& name, DType dt, std::vector<uint64_t> shape,
                     std::vector<uint8_t> bytes) {
      ck.add(name, dt, std::move(shape), std::move(bytes));
    };
    std::map<std::string, std::vector<float>> expected;  // GGUF name -> decoded weight
    for (const TensorView& t : m.tensors) {
      const std::string hf = gguf_to_hf_name(t.name);
      const std::vector<float> x = to_f32(t);
      if (t.name.rfind("blk.", 0) != 0 || t.shape.size() != 2) {
        add(hf, DType::F32, t.shape, from_f32(x.data(), x.size(), DType::F32));
        continue;
      }
      const uint64_t rows = t.shape[0], cols = t.shape[1];
      const std::string base = hf.substr(0, hf.size() - 7);  // without ".weight"
      std::vector<float>& y = expected[t.name];
      y.resize(x.size());
      if (fp8) {  // scale per 128 x 128 tile: its max |w| / 448
        const uint64_t br = (rows + 127) / 128, bc = (cols + 127) / 128;
        std::vector<float> s(br * bc, 0);
        for (uint64_t r = 0; r < rows; ++r)
          for (uint64_t i = 0; i < cols; ++i)
            s[(r / 128) * bc + i / 128] =
                std::max(s[(r / 128) * bc + i / 128], std::abs(x[r * cols + i]) / 448);
        std::vector<uint8_t> codes(x.size());
        for (uint64_t r = 0; r < rows; ++r)
          for (uint64_t i = 0; i < cols; ++i) {
            const float si = s[(r / 128) * bc + i / 128];
            codes[r * cols + i] = f32_to_e4m3(x[r * cols + i] / si);
            y[r * cols + i] = e4m3_to_f32(codes[r * cols + i]) * si;
          }
        add(base + ".weight", DType::F8_E4M3, {rows, cols}, codes);
        add(base + ".weight_scale", DType::F32, {br, bc}, from_f32(s.data(), s.size(), DType::F32));
      } else {  // one scale per row: max |w| / 127
        std::vector<float> s(rows, 0);
        std::vector<uint8_t> codes(x.size());
        for (uint64_t r = 0; r < rows; ++r) {
          for (uint64_t i = 0; i < cols; ++i)
            s[r] = std::max(s[r], std::abs(x[r * cols + i]) / 127);
          for (uint64_t i = 0; i < cols; ++i) {
            const int q = static_cast<int>(std::nearbyint(x[r * cols + i] / s[r]));
            codes[r * cols + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
            y[r * cols + i] = s[r] * static_cast<float>(q);
          }
        }
        add(base + ".weight", DType::I8, {rows, cols}, codes);
        add(base + ".weight_scale", DType::F32, {rows, 1},
            from_f32(s.data(), s.size(), DType::F32));
      }
      const float input_scale = 0.05f;  // read and not used
      add(base + ".input_scale", DType::F32, {1}, from_f32(&input_scale, 1, DType::F32));
    }
    ck.write();
    const Model q = load_model(out);
    EXPECT_EQ(q.tensors.size(), m.tensors.size());
    for (const auto& [name, y] : expected) {
      const std::vector<float> got = to_f32(q.tensor(name));
      ASSERT_EQ(got.size(), y.size());
      EXPECT_EQ(std::memcmp(got.data(), y.data(), y.size() * 4), 0) << name;
    }
    EXPECT_EQ(q.affine_weights.size(), fp8 ? 0u : expected.size());
    if (!fp8) {  // int8 per channel: the GGUF keeps every code in Q8_0
      const auto r = test::run_cli({"convert", out, "-o", dir.file("int8.gguf"), "-q"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_NE(r.err.find("56 linears with their codes kept, 0 rounded again"), std::string::npos)
          << r.err;
    }
  }
}

// W8A8 written as compressed-tensors int-quantized loads back with the same int8 weights,
// scales and static input scales as lowbit's own W8A8 layout, so the same perplexity.
TEST(HfFormats, W8A8AsCompressedTensorsRunsLikeLowbitsOwn) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const std::string calib = test::shared_path("data/calibration/calib-en-1mb.txt");
  for (const bool smooth : {false, true}) {
    SCOPED_TRACE(smooth ? "smoothquant static" : "w8a8 per-token");
    std::vector<Model> loaded;
    std::vector<double> ppl;
    for (const char* format : {"lowbit", "compressed-tensors"}) {
      const std::string out = dir.file(std::string(smooth ? "sq-" : "w8-") + format);
      std::vector<std::string> args = {"quantize", model,      "-o",   out, "--type",
                                       "int8",     "--format", format, "-q"};
      const std::vector<std::string> more =
          smooth
              ? std::vector<std::string>{"--method",    "smoothquant", "--act-scheme",    "static",
                                         "--calib",     calib,         "--calib-samples", "4",
                                         "--calib-ctx", "128"}
              : std::vector<std::string>{"--method", "w8a8"};
      args.insert(args.end(), more.begin(), more.end());
      auto r = test::run_cli(args);
      ASSERT_EQ(r.exit_code, 0) << r.err;
      loaded.push_back(load_model(out));
      r = test::run_cli({"perplexity", out, "-f",
                         test::shared_path("data/wikitext-2/wikitext-2-test.txt"), "--chunks", "1",
                         "--json", "-q"});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      ppl.push_back(nlohmann::json::parse(r.out)["ppl"].get<double>());
    }
    const nlohmann::json cfg = nlohmann::json::parse(test::read_file(
        dir.file(std::string(smooth ? "sq-" : "w8-") + "compressed-tensors/config.json")));
    const auto& acts = cfg["quantization_config"]["config_groups"]["group_0"]["input_activations"];
    EXPECT_EQ(cfg["quantization_config"]["format"], "int-quantized");
    EXPECT_EQ(acts["strategy"], smooth ? "tensor" : "token");
    EXPECT_EQ(acts["dynamic"], !smooth);
    const Model &own = loaded[0], &ct = loaded[1];
    ASSERT_EQ(ct.int8_weights.size(), own.int8_weights.size());
    ASSERT_EQ(own.int8_weights.size(), 56u);
    for (const auto& [name, w] : own.int8_weights) {
      const Int8Weight& u = ct.int8_weights.at(name);
      EXPECT_EQ(u.q, w.q) << name;
      EXPECT_EQ(u.scale, w.scale) << name;
      EXPECT_EQ(u.input_scale, w.input_scale) << name;
      if (smooth) {
        EXPECT_GT(u.input_scale, 0) << name;
      }
    }
    EXPECT_EQ(ppl[0], ppl[1]);
  }
}

// --type fp8 writes compressed-tensors float-quantized weights: E4M3 codes of w / s with
// s = max |w| / 448 per row (or per tensor), which load back as e4m3 * s exactly.
TEST(HfFormats, Fp8ExportLoadsBack) {
  test::TempDir dir;
  const std::string model = test::shared_path("models/tinyllm-8m");
  const Model source = load_model(model);
  for (const bool per_tensor : {false, true}) {
    SCOPED_TRACE(per_tensor ? "per tensor" : "per channel");
    const std::string out = dir.file(per_tensor ? "fp8t" : "fp8c");
    const auto r = test::run_cli(
        {"quantize", model, "-o", out, "--type", "fp8", "--group", per_tensor ? "-1" : "0", "-q"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
    const nlohmann::json q =
        nlohmann::json::parse(test::read_file(out + "/config.json"))["quantization_config"];
    EXPECT_EQ(q["format"], "float-quantized");
    EXPECT_EQ(q["config_groups"]["group_0"]["weights"]["type"], "float");
    EXPECT_EQ(q["config_groups"]["group_0"]["weights"]["strategy"],
              per_tensor ? "tensor" : "channel");
    const Model m = load_model(out);
    EXPECT_TRUE(m.affine_weights.empty());
    for (const char* name : {"blk.0.attn_q.weight", "blk.5.ffn_down.weight"}) {
      const std::vector<float> x = to_f32(source.tensor(name)), y = to_f32(m.tensor(name));
      const uint64_t rows = source.tensor(name).shape[0], cols = source.tensor(name).shape[1];
      std::vector<float> s(per_tensor ? 1 : rows, 0);
      for (uint64_t i = 0; i < x.size(); ++i)
        s[per_tensor ? 0 : i / cols] = std::max(s[per_tensor ? 0 : i / cols], std::abs(x[i]) / 448);
      double e = 0, n = 0;
      for (uint64_t i = 0; i < x.size(); ++i) {
        const float si = s[per_tensor ? 0 : i / cols];
        ASSERT_EQ(y[i], e4m3_to_f32(f32_to_e4m3(std::clamp(x[i] / si, -448.0f, 448.0f))) * si)
            << name << " " << i;
        e += (x[i] - y[i]) * (x[i] - y[i]), n += x[i] * x[i];
      }
      EXPECT_LT(std::sqrt(e / n), 0.05) << name;
      EXPECT_GT(rows, 0u);
    }
  }
  const std::pair<std::vector<std::string>, const char*> bad[] = {
      {{"--group", "32"}, "type fp8 has one scale per output channel (group 0) or per tensor"},
      {{"--format", "awq"}, "type fp8 is written as compressed-tensors, not format awq"},
      {{"--asym"}, "type fp8 has symmetric scales only"},
      {{"--method", "gptq"}, "not FP8 weights (which takes rtn)"},
      {{"--calib", test::shared_path("data/calibration/calib-en-1mb.txt")},
       "type fp8 rounds each weight on its own: calibration is not used"},
  };
  for (const auto& [flags, want] : bad) {
    std::vector<std::string> args = {"quantize", model, "-o", dir.file("bad"),
                                     "--type",   "fp8", "-q"};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.exit_code, 1) << flags[0];
    EXPECT_NE(r.err.find(want), std::string::npos) << r.err;
  }
  EXPECT_FALSE(fs::exists(dir.file("bad")));
}

}  // namespace
}  // namespace lowbit

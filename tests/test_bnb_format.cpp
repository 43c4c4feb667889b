// bitsandbytes checkpoints (src/quant/bnb_format.h): the worked example of the layout, a
// tinyllm-8m checkpoint in nf4 with double quantization, fp4 and LLM.int8 written here as
// transformers lays them out, and corrupted parts.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "lowbit/float_convert.h"
#include "lowbit/model.h"
#include "lowbit/safetensors.h"
#include "quant/bnb_format.h"
#include "test_support.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;

// bitsandbytes' NF4 table (get_4bit_type("nf4")) and FP4 table (raw / 12).
const float kNf4[16] = {-1.0f,
                        -0.6961928009986877f,
                        -0.5250730514526367f,
                        -0.39491748809814453f,
                        -0.28444138169288635f,
                        -0.18477343022823334f,
                        -0.09105003625154495f,
                        0.0f,
                        0.07958029955625534f,
                        0.16093020141124725f,
                        0.24611230194568634f,
                        0.33791524171829224f,
                        0.44070982933044434f,
                        0.5626170039176941f,
                        0.7229568362236023f,
                        1.0f};
const float kFp4Raw[16] = {0, 0.0625f, 8, 12, 4, 6, 2, 3, -0.0f, -0.0625f, -8, -12, -4, -6, -2, -3};

TensorView view(const std::string& name, DType dt, std::vector<uint64_t> shape,
                const std::vector<uint8_t>& bytes) {
  return TensorView{{name, dt, std::move(shape)}, bytes.data(), bytes.size()};
}

std::vector<uint8_t> f32_bytes(const std::vector<float>& v) {
  return from_f32(v.data(), v.size(), DType::F32);
}

// The layout's worked example: a [2, 4] weight whose codes are 0..7 in row-major order is
// stored as 0x01 0x23 0x45 0x67; element (1, 2) is code 6.
TEST(Bnb, WorkedExampleDecodesElementOneTwo) {
  const std::vector<uint8_t> w = {0x01, 0x23, 0x45, 0x67};
  const std::vector<uint8_t> absmax = f32_bytes({2.0f});
  const std::vector<uint8_t> table = f32_bytes(std::vector<float>(kNf4, kNf4 + 16));
  const std::string blob =
      R"({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [2, 4]})";
  const std::vector<uint8_t> state(blob.begin(), blob.end());
  const std::vector<TensorView> views = {
      view("p.weight", DType::U8, {4, 1}, w), view("p.weight.absmax", DType::F32, {1}, absmax),
      view("p.weight.quant_map", DType::F32, {16}, table),
      view("p.weight.quant_state.bitsandbytes__nf4", DType::U8, {state.size()}, state)};
  std::vector<const TensorView*> parts;
  for (const TensorView& v : views) parts.push_back(&v);
  uint64_t rows, cols;
  const std::vector<float> y = quant::dequantize_bnb_linear("p", parts, "ck", &rows, &cols);
  ASSERT_EQ(rows, 2u);
  ASSERT_EQ(cols, 4u);
  EXPECT_FLOAT_EQ(y[1 * 4 + 2], kNf4[6] * 2.0f);
  for (int k = 0; k < 8; ++k) EXPECT_FLOAT_EQ(y[k], kNf4[k] * 2.0f) << k;
  EXPECT_EQ(quant::bnb_linear_of("a.b.weight.quant_state.bitsandbytes__fp4"), "a.b");
  EXPECT_EQ(quant::bnb_linear_of("a.b.SCB"), "a.b");
  EXPECT_EQ(quant::bnb_linear_of("a.b.weight"), "");

  // Corrupted: a blob without a shape, a blocksize that is no power of 2, too few codes,
  // a table of the wrong length.
  auto error_with = [&](const std::string& blob2, size_t code_bytes, size_t table_values) {
    const std::vector<uint8_t> s2(blob2.begin(), blob2.end()),
        w2(w.begin(), w.begin() + code_bytes);
    const std::vector<uint8_t> t2 = f32_bytes(std::vector<float>(kNf4, kNf4 + table_values));
    const std::vector<TensorView> v2 = {
        view("p.weight", DType::U8, {code_bytes, 1}, w2), views[1],
        view("p.weight.quant_map", DType::F32, {table_values}, t2),
        view("p.weight.quant_state.bitsandbytes__nf4", DType::U8, {s2.size()}, s2)};
    std::vector<const TensorView*> p2;
    for (const TensorView& v : v2) p2.push_back(&v);
    return test::expect_error([&] { quant::dequantize_bnb_linear("p", p2, "ck", &rows, &cols); });
  };
  std::string msg = error_with(R"({"quant_type": "nf4", "blocksize": 64})", 4, 16);
  EXPECT_NE(msg.find("ck: 'p.weight.quant_state.bitsandbytes__nf4' is not a bitsandbytes quant "
                     "state"),
            std::string::npos)
      << msg;
  msg = error_with(R"({"blocksize": 48, "shape": [2, 4]})", 4, 16);
  EXPECT_NE(msg.find("blocksize 48 is not a power of 2 in 32..4096"), std::string::npos) << msg;
  msg = error_with(blob, 3, 16);
  EXPECT_NE(msg.find("tensor 'p.weight' (U8, 3 bytes) cannot hold 8 4-bit codes"),
            std::string::npos)
      << msg;
  msg = error_with(blob, 4, 15);
  EXPECT_NE(msg.find("tensor 'p.weight.quant_map' has 15 values, expected 16"), std::string::npos)
      << msg;
}

int nearest(const float* table, int n, float x) {
  int best = 0;
  for (int c = 1; c < n; ++c)
    if (std::abs(table[c] - x) < std::abs(table[best] - x)) best = c;
  return best;
}

// tinyllm-8m in three bitsandbytes flavours, encoded here from the layout's description;
// the loader must give back exactly the decoded values, and they must be near the source.
TEST(Bnb, TinyllmCheckpointsLoad) {
  test::TempDir dir;
  const std::string src = test::shared_path("models/tinyllm-8m");
  const Model m = load_model(src);
  for (const char* flavour : {"nf4-double", "fp4", "int8"}) {
    SCOPED_TRACE(flavour);
    const std::string kind(flavour);
    const std::string out = dir.file(flavour);
    const nlohmann::json qc = {{"quant_method", "bitsandbytes"},
                               {"load_in_4bit", kind != "int8"},
                               {"load_in_8bit", kind == "int8"},
                               {"bnb_4bit_quant_type", kind == "fp4" ? "fp4" : "nf4"},
                               {"bnb_4bit_use_double_quant", kind == "nf4-double"},
                               {"bnb_4bit_quant_storage", "uint8"}};
    test::HfDirWriter ck(src, out, qc.dump());
    auto add = [&ck](const std::string& name, DType dt, std::vector<uint64_t> shape,
                     std::vector<uint8_t> bytes) {
      ck.add(name, dt, std::move(shape), std::move(bytes));
    };
    std::vector<float> table(16);
    for (int c = 0; c < 16; ++c) table[c] = kind == "fp4" ? kFp4Raw[c] / 12 : kNf4[c];
    std::map<std::string, std::vector<float>> expected;
    for (const TensorView& t : m.tensors) {
      const std::string hf = gguf_to_hf_name(t.name);
      const std::vector<float> x = to_f32(t);
      if (t.name.rfind("blk.", 0) != 0 || t.shape.size() != 2) {
        add(hf, DType::F32, t.shape, f32_bytes(x));
        continue;
      }
      const uint64_t rows = t.shape[0], cols = t.shape[1], n = x.size();
      std::vector<float>& y = expected[t.name];
      y.resize(n);
      if (kind == "int8") {
        std::vector<float> scb(rows, 0);
        std::vector<uint8_t> q(n);
        for (uint64_t r = 0; r < rows; ++r) {
          for (uint64_t i = 0; i < cols; ++i) scb[r] = std::max(scb[r], std::abs(x[r * cols + i]));
          for (uint64_t i = 0; i < cols; ++i) {
            const int v = static_cast<int>(std::nearbyint(x[r * cols + i] * 127 / scb[r]));
            q[r * cols + i] = static_cast<uint8_t>(static_cast<int8_t>(v));
            y[r * cols + i] = static_cast<float>(v) * (scb[r] * 7.874015718698502e-3f);
          }
        }
        add(hf, DType::I8, {rows, cols}, q);
        add(hf.substr(0, hf.size() - 7) + ".SCB", DType::F32, {rows}, f32_bytes(scb));
        continue;
      }
      const uint64_t block = 64, blocks = (n + block - 1) / block;
      std::vector<float> absmax(blocks, 0);
      for (uint64_t k = 0; k < n; ++k)
        absmax[k / block] = std::max(absmax[k / block], std::abs(x[k]));
      nlohmann::json state = {{"quant_type", kind == "fp4" ? "fp4" : "nf4"},
                              {"blocksize", block},
                              {"dtype", "bfloat16"},
                              {"shape", {rows, cols}}};
      if (kind == "nf4-double") {  // absmax - offset as u8 codes of a 256-value map
        float offset = 0;
        for (float a : absmax) offset += a / blocks;
        std::vector<float> map(256), nested((blocks + 255) / 256, 0);
        for (int i = 0; i < 256; ++i) map[i] = (i - 127.5f) / 127.5f;
        for (uint64_t b = 0; b < blocks; ++b)
          nested[b / 256] = std::max(nested[b / 256], std::abs(absmax[b] - offset));
        std::vector<uint8_t> codes(blocks);
        for (uint64_t b = 0; b < blocks; ++b) {
          codes[b] = static_cast<uint8_t>(
              nearest(map.data(), 256, (absmax[b] - offset) / nested[b / 256]));
          absmax[b] = map[codes[b]] * nested[b / 256] + offset;
        }
        state["nested_blocksize"] = 256, state["nested_dtype"] = "float32",
        state["nested_offset"] = offset;
        add(hf + ".absmax", DType::U8, {blocks}, codes);
        add(hf + ".nested_absmax", DType::F32, {nested.size()}, f32_bytes(nested));
        add(hf + ".nested_quant_map", DType::F32, {256}, f32_bytes(map));
      } else {
        add(hf + ".absmax", DType::F32, {blocks}, f32_bytes(absmax));
      }
      std::vector<uint8_t> packed((n + 1) / 2, 0);
      for (uint64_t k = 0; k < n; ++k) {
        const int c = nearest(table.data(), 16, x[k] / absmax[k / block]);
        packed[k / 2] |= static_cast<uint8_t>(k % 2 == 0 ? c << 4 : c);
        y[k] = table[c] * absmax[k / block];
      }
      add(hf, DType::U8, {packed.size(), 1}, packed);
      add(hf + ".quant_map", DType::F32, {16}, f32_bytes(table));
      const std::string blob = state.dump();
      add(hf + ".quant_state.bitsandbytes__" + std::string(kind == "fp4" ? "fp4" : "nf4"),
          DType::U8, {blob.size()}, std::vector<uint8_t>(blob.begin(), blob.end()));
    }
    ck.write();
    const Model q = load_model(out);
    EXPECT_EQ(q.tensors.size(), m.tensors.size());
    for (const auto& [name, y] : expected) {
      const std::vector<float> got = to_f32(q.tensor(name)), x = to_f32(m.tensor(name));
      ASSERT_EQ(got.size(), y.size());
      EXPECT_EQ(std::memcmp(got.data(), y.data(), y.size() * 4), 0) << name;
      double e = 0, s = 0;
      for (size_t k = 0; k < x.size(); ++k)
        e += (got[k] - x[k]) * (got[k] - x[k]), s += x[k] * x[k];
      EXPECT_LT(std::sqrt(e / s), kind == "int8" ? 0.01 : 0.2) << name;
    }
  }
}

}  // namespace
}  // namespace lowbit

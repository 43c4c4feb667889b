#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/gguf.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::TempDir;

// Hand-built GGUF bytes, to craft files that lowbit's writer would never produce.
struct RawGguf {
  std::string b;
  template <typename T>
  RawGguf& put(T v) {
    b.append(reinterpret_cast<const char*>(&v), sizeof v);
    return *this;
  }
  RawGguf& str(const std::string& s) {
    put<uint64_t>(s.size());
    b += s;
    return *this;
  }
  RawGguf& header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
    b += "GGUF";
    return put<uint32_t>(version).put<uint64_t>(n_tensors).put<uint64_t>(n_kv);
  }
  RawGguf& kv_u32(const std::string& k, uint32_t v) {
    return str(k).put<uint32_t>(4).put<uint32_t>(v);
  }
  RawGguf& tensor(const std::string& name, std::vector<uint64_t> ne, uint32_t type,
                  uint64_t offset) {
    str(name).put<uint32_t>(static_cast<uint32_t>(ne.size()));
    for (auto d : ne) put<uint64_t>(d);
    return put<uint32_t>(type).put<uint64_t>(offset);
  }
  RawGguf& align(size_t a = 32) {
    b.append((a - b.size() % a) % a, '\0');
    return *this;
  }
};

std::string open_error(const std::string& bytes) {
  static TempDir dir;
  static int n = 0;
  std::string path = dir.file("case" + std::to_string(n++) + ".gguf");
  test::write_file(path, bytes);
  try {
    GgufFile::open(path);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos)
        << "message must name the file: " << e.what();
    return e.what();
  }
  return "";
}

GgufValue scalar(GgufType t, uint64_t u, int64_t i, double f) {
  GgufValue v;
  v.type = t;
  v.u = u;
  v.i = i;
  v.f = f;
  return v;
}

TEST(Gguf, WriteReadIsExactForEveryMetadataType) {
  TempDir dir;
  GgufWriter w;
  w.set("general.alignment", GgufValue::of_u32(64));
  w.set("t.u8", scalar(GgufType::U8, 255, 0, 0));
  w.set("t.i8", scalar(GgufType::I8, 0, -128, 0));
  w.set("t.u16", scalar(GgufType::U16, 65535, 0, 0));
  w.set("t.i16", scalar(GgufType::I16, 0, -32768, 0));
  w.set("t.u32", scalar(GgufType::U32, 4294967295u, 0, 0));
  w.set("t.i32", scalar(GgufType::I32, 0, -2147483647 - 1, 0));
  w.set("t.u64", scalar(GgufType::U64, ~0ull, 0, 0));
  w.set("t.i64", scalar(GgufType::I64, 0, INT64_MIN, 0));
  w.set("t.f32", GgufValue::of_f32(-1.25e-7f));
  w.set("t.f64", scalar(GgufType::F64, 0, 0, 3.141592653589793));
  w.set("t.bool", GgufValue::of_bool(true));
  w.set("t.string", GgufValue::of_string(std::string("utf-8 \xe2\x96\x81 and a \0 byte", 22)));
  w.set("t.empty_string", GgufValue::of_string(""));
  w.set("t.strings", GgufValue::of_strings({"a", "", "ccc"}));
  w.set("t.f32s", GgufValue::of_f32s({1.5f, -0.0f, 1e30f}));
  GgufValue nested;
  nested.type = GgufType::ARRAY;
  nested.elem_type = GgufType::ARRAY;
  nested.array = {GgufValue::of_i32s({1, 2, 3}), GgufValue::of_i32s({}), GgufValue::of_i32s({-7})};
  w.set("t.nested", nested);
  GgufValue empty;
  empty.type = GgufType::ARRAY;
  empty.elem_type = GgufType::U64;
  w.set("t.empty_array", empty);
  std::vector<float> data = {1, 2, 3, 4, 5, 6};
  OutputTensor t;
  t.info = {"w", DType::F32, {2, 3}};
  t.nbytes = 24;
  t.produce = [&](std::vector<uint8_t>& o) {
    o.assign(reinterpret_cast<uint8_t*>(data.data()), reinterpret_cast<uint8_t*>(data.data()) + 24);
  };
  w.add_tensor(t);
  OutputTensor t2 = t;
  t2.info.name = "w2";
  t2.info.shape = {6};
  w.add_tensor(t2);
  const std::string path = dir.file("all.gguf");
  w.write(path);

  auto g = GgufFile::open(path);
  EXPECT_EQ(g->alignment(), 64u);
  EXPECT_EQ(g->data_offset() % 64, 0u);
  ASSERT_EQ(g->metadata().size(), 18u);
  // clang-format off
  const char* keys[] = {"general.alignment", "t.u8", "t.i8", "t.u16", "t.i16", "t.u32", "t.i32",
                        "t.u64", "t.i64", "t.f32", "t.f64", "t.bool", "t.string",
                        "t.empty_string", "t.strings", "t.f32s", "t.nested", "t.empty_array"};
  // clang-format on
  for (size_t k = 0; k < 18; ++k) EXPECT_EQ(g->metadata()[k].first, keys[k]);
  EXPECT_EQ(g->find("t.i64")->i, INT64_MIN);
  EXPECT_EQ(g->find("t.u64")->u, ~0ull);
  EXPECT_EQ(g->find("t.f64")->f, 3.141592653589793);
  EXPECT_EQ(static_cast<float>(g->find("t.f32")->f), -1.25e-7f);
  EXPECT_EQ(g->find("t.string")->s.size(), 22u);
  EXPECT_TRUE(*g->find("t.nested") == nested);
  EXPECT_TRUE(*g->find("t.empty_array") == empty);
  const TensorView* tw = g->find_tensor("w");
  ASSERT_NE(tw, nullptr);
  EXPECT_EQ(tw->shape, (std::vector<uint64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(tw->data, data.data(), 24), 0);
  EXPECT_EQ(g->tensors()[1].offset % 64, 0u);

  // Writing what was read gives the same bytes.
  GgufWriter again;
  for (const auto& [k, v] : g->metadata()) again.set(k, v);
  for (const auto& ti : g->tensors()) {
    OutputTensor o;
    o.info = ti.view;
    o.nbytes = ti.view.nbytes;
    o.produce = [&ti](std::vector<uint8_t>& b) {
      b.assign(ti.view.data, ti.view.data + ti.view.nbytes);
    };
    again.add_tensor(o);
  }
  again.write(dir.file("again.gguf"));
  EXPECT_EQ(test::read_file(path), test::read_file(dir.file("again.gguf")));
}

std::string valid_file() {
  RawGguf r;
  r.header(1, 1).kv_u32("general.alignment", 32).tensor("w", {4, 2}, 0, 0).align();
  r.b.append(32, '\1');
  return r.b;
}

TEST(Gguf, ValidHandMadeFileOpens) { EXPECT_EQ(open_error(valid_file()), ""); }

TEST(Gguf, EveryTruncationIsAnErrorNotACrash) {
  const std::string full = valid_file();
  for (size_t n = 0; n < full.size(); ++n) {
    std::string msg = open_error(full.substr(0, n));
    EXPECT_FALSE(msg.empty()) << "a file cut to " << n << " bytes opened";
  }
}

TEST(Gguf, BadMagic) {
  auto msg = open_error("GGML" + valid_file().substr(4));
  EXPECT_NE(msg.find("not a GGUF file"), std::string::npos) << msg;
}

TEST(Gguf, UnsupportedVersion) {
  RawGguf r;
  r.header(0, 0, 1);
  EXPECT_NE(open_error(r.b).find("GGUF version 1 is not supported"), std::string::npos);
}

TEST(Gguf, TensorCountLargerThanFile) {
  RawGguf r;
  r.header(1ull << 40, 0);
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor count 1099511627776 cannot fit"), std::string::npos) << msg;
}

TEST(Gguf, ArrayLengthLie) {
  RawGguf r;
  r.header(0, 1).str("big").put<uint32_t>(9).put<uint32_t>(4).put<uint64_t>(1ull << 60);
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("key 'big': array of 1152921504606846976 u32 elements does not fit"),
            std::string::npos)
      << msg;
}

TEST(Gguf, StringLengthPastEnd) {
  RawGguf r;
  r.header(0, 1).str("k").put<uint32_t>(8).put<uint64_t>(100);
  auto msg = open_error(r.b + "short");
  EXPECT_NE(msg.find("truncated while reading value of 'k'"), std::string::npos) << msg;
}

TEST(Gguf, TensorDataPastEnd) {
  RawGguf r;
  r.header(1, 0).tensor("w", {64, 64}, 0, 0).align();
  r.b.append(100, '\0');
  auto msg = open_error(r.b);
  EXPECT_NE(
      msg.find("tensor 'w': data [0, +16384) runs past the end of the data section (100 bytes)"),
      std::string::npos)
      << msg;
}

TEST(Gguf, MisalignedTensorOffset) {
  RawGguf r;
  r.header(1, 0).tensor("w", {4}, 0, 4).align();
  r.b.append(64, '\0');
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'w': offset 4 is not a multiple of the alignment 32"),
            std::string::npos)
      << msg;
}

TEST(Gguf, UnknownTensorType) {
  RawGguf r;
  r.header(1, 0).tensor("w", {4}, 99, 0).align();
  r.b.append(64, '\0');
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'w': ggml type 99 is not supported"), std::string::npos) << msg;
}

TEST(Gguf, RowNotMultipleOfBlockSize) {
  RawGguf r;
  r.header(1, 0).tensor("w", {100, 2}, 12, 0).align();  // Q4_K needs rows of 256k
  r.b.append(1024, '\0');
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'w': row length 100 is not a multiple of Q4_K's block size 256"),
            std::string::npos)
      << msg;
}

TEST(Gguf, ShapeOverflow) {
  RawGguf r;
  r.header(1, 0).tensor("w", {1ull << 40, 1ull << 40}, 0, 0).align();
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'w': shape overflows"), std::string::npos) << msg;
}

TEST(Gguf, TooManyDims) {
  RawGguf r;
  r.header(1, 0).tensor("w", {1, 1, 1, 1, 1}, 0, 0).align();
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'w': n_dims 5 (expected 1..4)"), std::string::npos) << msg;
}

TEST(Gguf, DuplicateKeyAndTensor) {
  RawGguf r;
  r.header(0, 2).kv_u32("k", 1).kv_u32("k", 2);
  EXPECT_NE(open_error(r.b).find("metadata key 'k' appears twice"), std::string::npos);
  RawGguf t;
  t.header(2, 0).tensor("w", {8}, 0, 0).tensor("w", {8}, 0, 32).align();
  t.b.append(64, '\0');
  EXPECT_NE(open_error(t.b).find("tensor 'w' appears twice"), std::string::npos);
}

TEST(Gguf, OverlappingTensors) {
  RawGguf r;
  r.header(2, 0).tensor("a", {16}, 0, 0).tensor("b", {16}, 0, 32).align();
  r.b.append(128, '\0');
  auto msg = open_error(r.b);
  EXPECT_NE(msg.find("tensor 'b' overlaps tensor 'a'"), std::string::npos) << msg;
}

TEST(Gguf, BadAlignmentValue) {
  RawGguf r;
  r.header(0, 1).kv_u32("general.alignment", 24);
  EXPECT_NE(open_error(r.b).find("key 'general.alignment': 24 is not a power of two"),
            std::string::npos);
}

TEST(Gguf, BoolOutOfRange) {
  RawGguf r;
  r.header(0, 1).str("flag").put<uint32_t>(7).put<uint8_t>(2);
  EXPECT_NE(open_error(r.b).find("key 'flag': bool value 2 is neither 0 nor 1"), std::string::npos);
}

TEST(Gguf, UnknownValueType) {
  RawGguf r;
  r.header(0, 1).str("k").put<uint32_t>(13);
  EXPECT_NE(open_error(r.b).find("key 'k': unknown value type 13"), std::string::npos);
}

TEST(Gguf, TypedAccessorsNameTheKey) {
  TempDir dir;
  GgufWriter w;
  w.set("name", GgufValue::of_u32(3));
  w.write(dir.file("x.gguf"));
  auto g = GgufFile::open(dir.file("x.gguf"));
  try {
    g->get_string("name");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("key 'name': expected a string, got u32"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(g->get_uint("missing"), Error);
}

}  // namespace
}  // namespace lowbit

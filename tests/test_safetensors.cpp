#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/safetensors.h"
#include "test_support.h"

namespace lowbit {
namespace {

using test::TempDir;

// Builds a safetensors file from a header JSON string and a data section.
std::string st_bytes(const std::string& header, const std::string& data,
                     int64_t len_override = -1) {
  uint64_t n = len_override >= 0 ? static_cast<uint64_t>(len_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

// Opens bytes written to a file and returns the error message ("" if it opened).
std::string open_error(const std::string& bytes, std::string* path_out = nullptr) {
  static TempDir dir;
  static int n = 0;
  std::string path = dir.file("case" + std::to_string(n++) + ".safetensors");
  test::write_file(path, bytes);
  if (path_out) *path_out = path;
  try {
    SafetensorsFile::open(path);
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos)
        << "message must name the file: " << e.what();
    return e.what();
  }
  return "";
}

TEST(Safetensors, RoundTripEveryDtypeWithMetadata) {
  TempDir dir;
  const DType all[] = {DType::F32, DType::F16,  DType::BF16,    DType::F64,
                       DType::I8,  DType::I16,  DType::I32,     DType::I64,
                       DType::U8,  DType::BOOL, DType::F8_E4M3, DType::F8_E5M2};
  std::vector<OutputTensor> out;
  std::vector<std::vector<uint8_t>> payloads;
  for (DType d : all) {
    OutputTensor t;
    t.info = {std::string("t_") + dtype_name(d), d, {3, 5}};
    t.nbytes = 15 * traits(d).type_size;
    std::vector<uint8_t> bytes(t.nbytes);
    for (size_t i = 0; i < bytes.size(); ++i)
      bytes[i] = static_cast<uint8_t>(i * 7 + static_cast<int>(d));
    if (d == DType::BOOL) for (auto& b : bytes) b &= 1;
    payloads.push_back(bytes);
    t.produce = [bytes](std::vector<uint8_t>& o) { o = bytes; };
    out.push_back(t);
  }
  const std::string path = dir.file("all.safetensors");
  write_safetensors(path, out, {{"format", "pt"}, {"note", "lowbit test"}});
  auto f = SafetensorsFile::open(path);
  ASSERT_EQ(f->tensors().size(), out.size());
  EXPECT_EQ(f->metadata().at("note"), "lowbit test");
  for (size_t i = 0; i < out.size(); ++i) {
    const TensorView* t = f->find(out[i].info.name);
    ASSERT_NE(t, nullptr);
    EXPECT_EQ(t->dtype, out[i].info.dtype);
    EXPECT_EQ(t->shape, out[i].info.shape);
    ASSERT_EQ(t->nbytes, payloads[i].size());
    EXPECT_EQ(std::memcmp(t->data, payloads[i].data(), t->nbytes), 0) << out[i].info.name;
  }
}

TEST(Safetensors, ValidMinimalFileOpens) {
  EXPECT_EQ(open_error(st_bytes(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
                                std::string(8, '\1'))),
            "");
}

TEST(Safetensors, TruncatedBeforeHeaderLength) {
  EXPECT_NE(open_error("abc").find("shorter than the 8-byte header length"), std::string::npos);
}

TEST(Safetensors, HeaderLengthPastEndOfFile) {
  auto msg = open_error(st_bytes(R"({})", "", 1000));
  EXPECT_NE(msg.find("header length 1000 runs past the end of the file"), std::string::npos) << msg;
}

TEST(Safetensors, HeaderLengthOverLimit) {
  auto msg = open_error(st_bytes("{}", "", int64_t{1} << 40));
  EXPECT_NE(msg.find("exceeds the limit"), std::string::npos) << msg;
}

TEST(Safetensors, MalformedJson) {
  auto msg = open_error(st_bytes(R"({"a":{"dtype":"F32",)", ""));
  EXPECT_NE(msg.find("not valid JSON"), std::string::npos) << msg;
}

TEST(Safetensors, DuplicateTensorName) {
  auto msg = open_error(st_bytes(
      R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},"w":{"dtype":"U8","shape":[1],)"
      R"("data_offsets":[1,2]}})",
      "ab"));
  EXPECT_NE(msg.find("tensor 'w' appears twice"), std::string::npos) << msg;
}

TEST(Safetensors, OffsetsPastDataSection) {
  auto msg = open_error(
      st_bytes(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, '\0')));
  EXPECT_NE(msg.find("tensor 'w': data_offsets [0, 16] run past the data section (8 bytes)"),
            std::string::npos)
      << msg;
}

TEST(Safetensors, OverlappingTensors) {
  auto msg = open_error(st_bytes(
      R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],)"
      R"("data_offsets":[2,6]}})",
      "012345"));
  EXPECT_NE(msg.find("tensor 'b'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overlaps"), std::string::npos) << msg;
}

TEST(Safetensors, GapBetweenTensors) {
  auto msg = open_error(st_bytes(
      R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[2],)"
      R"("data_offsets":[4,6]}})",
      "012345"));
  EXPECT_NE(msg.find("tensor 'b': data begins at 4, leaving a gap after offset 2"),
            std::string::npos)
      << msg;
}

TEST(Safetensors, TrailingBytesNotCovered) {
  auto msg =
      open_error(st_bytes(R"({"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}})", "0123"));
  EXPECT_NE(msg.find("tensors cover 2 bytes but the data section holds 4"), std::string::npos)
      << msg;
}

TEST(Safetensors, SizeDisagreesWithShapeAndDtype) {
  auto msg = open_error(st_bytes(R"({"w":{"dtype":"BF16","shape":[3,2],"data_offsets":[0,8]}})",
                                 std::string(8, '\0')));
  EXPECT_NE(msg.find("tensor 'w': holds 8 bytes but dtype BF16 and shape [3, 2] need 12"),
            std::string::npos)
      << msg;
}

TEST(Safetensors, ShapeOverflow) {
  auto msg = open_error(
      st_bytes(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,8]}})",
               std::string(8, '\0')));
  EXPECT_NE(msg.find("tensor 'w': shape"), std::string::npos) << msg;
  EXPECT_NE(msg.find("overflows"), std::string::npos) << msg;
}

TEST(Safetensors, UnknownDtype) {
  auto msg = open_error(st_bytes(R"({"w":{"dtype":"F7","shape":[1],"data_offsets":[0,1]}})", "x"));
  EXPECT_NE(msg.find("tensor 'w': unknown dtype 'F7'"), std::string::npos) << msg;
}

TEST(Safetensors, NegativeShapeEntry) {
  auto msg = open_error(st_bytes(R"({"w":{"dtype":"U8","shape":[-1],"data_offsets":[0,1]}})", "x"));
  EXPECT_NE(msg.find("tensor 'w': shape entries must be non-negative integers"), std::string::npos)
      << msg;
}

TEST(Safetensors, MissingDataOffsets) {
  auto msg = open_error(st_bytes(R"({"w":{"dtype":"U8","shape":[1]}})", "x"));
  EXPECT_NE(msg.find("tensor 'w': 'data_offsets' must be an array of 2 integers"),
            std::string::npos)
      << msg;
}

TEST(Safetensors, ShardedCheckpointViaIndex) {
  TempDir dir;
  auto shard = [&](const std::string& name, const std::string& tensor, uint8_t fill) {
    OutputTensor t;
    t.info = {tensor, DType::U8, {4}};
    t.nbytes = 4;
    t.produce = [fill](std::vector<uint8_t>& o) { o.assign(4, fill); };
    write_safetensors(dir.file(name), {t});
  };
  shard("model-00001-of-00002.safetensors", "a", 1);
  shard("model-00002-of-00002.safetensors", "b", 2);
  test::write_file(
      dir.file("model.safetensors.index.json"),
      R"({"metadata":{"total_size":8},"weight_map":{"a":"model-00001-of-00002.safetensors",)"
      R"("b":"model-00002-of-00002.safetensors"}})");
  auto ck = SafetensorsCheckpoint::open_dir(dir.path());
  ASSERT_EQ(ck->tensors().size(), 2u);
  EXPECT_EQ(ck->find("b")->data[0], 2);
  EXPECT_EQ(ck->metadata().at("total_size"), "8");

  test::write_file(dir.file("model.safetensors.index.json"),
                   R"({"weight_map":{"a":"model-00002-of-00002.safetensors"}})");
  try {
    SafetensorsCheckpoint::open_dir(dir.path());
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(
        std::string(e.what()).find(
            "tensor 'a' is in model-00002-of-00002.safetensors, but that shard does not hold it"),
        std::string::npos)
        << e.what();
  }
}

TEST(Safetensors, FailedWriteLeavesNoFile) {
  TempDir dir;
  OutputTensor t;
  t.info = {"x", DType::F32, {2}};
  t.nbytes = 8;
  t.produce = [](std::vector<uint8_t>& o) { o.assign(4, 0); };  // wrong size: the writer must fail
  EXPECT_THROW(write_safetensors(dir.file("out.safetensors"), {t}), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

}  // namespace
}  // namespace lowbit

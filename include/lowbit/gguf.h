// GGUF v3 (also reads v2): the container llama.cpp loads.
// Layout (little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count,
// metadata key/value pairs, tensor infos (name, n_dims, ne[] innermost first, ggml type,
// offset), padding to `general.alignment` (default 32), then the data section where each
// tensor starts at an aligned offset.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/file_io.h"
#include "lowbit/tensor.h"

namespace lowbit {

enum class GgufType : uint32_t {
  U8 = 0, I8 = 1, U16 = 2, I16 = 3, U32 = 4, I32 = 5, F32 = 6, BOOL = 7,
  STRING = 8, ARRAY = 9, U64 = 10, I64 = 11, F64 = 12,
};
const char* gguf_type_name(GgufType t);

// One metadata value. Scalars use the field matching their type (unsigned -> u,
// signed -> i, float -> f, bool -> u); arrays hold their elements in `array`, all of
// type `elem_type` (arrays may nest).
struct GgufValue {
  GgufType type = GgufType::U32;
  uint64_t u = 0;
  int64_t i = 0;
  double f = 0;
  std::string s;
  GgufType elem_type = GgufType::U8;
  std::vector<GgufValue> array;

  static GgufValue of_u32(uint32_t v) { GgufValue x; x.type = GgufType::U32; x.u = v; return x; }
  static GgufValue of_i32(int32_t v) { GgufValue x; x.type = GgufType::I32; x.i = v; return x; }
  static GgufValue of_u64(uint64_t v) { GgufValue x; x.type = GgufType::U64; x.u = v; return x; }
  static GgufValue of_f32(float v) { GgufValue x; x.type = GgufType::F32; x.f = v; return x; }
  static GgufValue of_bool(bool v) { GgufValue x; x.type = GgufType::BOOL; x.u = v; return x; }
  static GgufValue of_string(std::string v) {
    GgufValue x;
    x.type = GgufType::STRING;
    x.s = std::move(v);
    return x;
  }
  static GgufValue of_strings(const std::vector<std::string>& v);
  static GgufValue of_f32s(const std::vector<float>& v);
  static GgufValue of_i32s(const std::vector<int32_t>& v);

  bool operator==(const GgufValue& o) const;
  std::string to_string(size_t max_elems = 8) const;  // for `lowbit inspect`
};

struct GgufTensorInfo {
  TensorView view;         // shape outermost first (reversed from the file's ne[])
  uint64_t offset = 0;     // relative to the data section
};

class GgufFile {
 public:
  static std::unique_ptr<GgufFile> open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return version_; }
  uint64_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }
  const std::vector<std::pair<std::string, GgufValue>>& metadata() const { return kv_; }
  const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }

  const GgufValue* find(const std::string& key) const;
  const TensorView* find_tensor(const std::string& name) const;
  // Typed access: throws Format naming the key when missing or of another type.
  uint64_t get_uint(const std::string& key) const;
  std::optional<uint64_t> get_uint_opt(const std::string& key) const;
  double get_float(const std::string& key) const;
  std::optional<double> get_float_opt(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  std::optional<bool> get_bool_opt(const std::string& key) const;
  const GgufValue& get_array(const std::string& key, GgufType elem) const;

 private:
  std::shared_ptr<MappedFile> file_;
  uint32_t version_ = 0;
  uint64_t alignment_ = 32;
  uint64_t data_offset_ = 0;
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::map<std::string, size_t> kv_index_;
  std::vector<GgufTensorInfo> tensors_;
  std::map<std::string, size_t> tensor_index_;
};

// Collects metadata and tensors, then writes the file in one pass. Tensor bytes come
// from each tensor's producer when the writer reaches it.
class GgufWriter {
 public:
  void set(const std::string& key, GgufValue v);  // replaces an existing key in place
  void add_tensor(OutputTensor t);
  // Writes the file, calling each tensor's producer in order (through GgufStreamWriter).
  void write(const std::string& path) const;
  uint64_t alignment() const;
  const std::vector<OutputTensor>& tensors() const { return tensors_; }
  // The header up to the first tensor's data (padded), and each tensor's offset from there.
  std::string header(std::vector<uint64_t>& offsets) const;

 private:
  std::vector<std::pair<std::string, GgufValue>> kv_;
  std::vector<OutputTensor> tensors_;
};

// A GGUF file whose layout is known before any tensor data exists: the header (metadata,
// tensor infos and offsets, from `layout`'s tensors' nbytes) goes out at once, then each
// tensor's bytes land at their place in any order, whole or a row range at a time, as soon
// as they are ready. commit() checks that every byte of every tensor came and renames the
// temporary file onto `path`; destroyed before that, it removes the temporary.
class GgufStreamWriter {
 public:
  GgufStreamWriter(const GgufWriter& layout, const std::string& path);
  size_t index_of(const std::string& name) const;  // throws Argument for a name not in the layout
  const OutputTensor& tensor(size_t i) const { return layout_.tensors()[i]; }
  // Bytes [offset, offset + n) of tensor i.
  void write(size_t i, uint64_t offset, const uint8_t* data, size_t n);
  void write(size_t i, const std::vector<uint8_t>& bytes) {
    write(i, 0, bytes.data(), bytes.size());
  }
  bool complete(size_t i) const { return written_[i] == tensor(i).nbytes; }
  const std::string& path() const { return path_; }
  void commit();

 private:
  const GgufWriter& layout_;
  std::string path_;
  AtomicFileWriter file_;
  uint64_t data_start_ = 0;
  std::vector<uint64_t> offsets_, written_;
};

}  // namespace lowbit

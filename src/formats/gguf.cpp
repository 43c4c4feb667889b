#include "lowbit/gguf.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "lowbit/error.h"
#include "quant/block_layouts.h"

namespace lowbit {
namespace {

constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;      // deeper arrays are certainly not a real file
constexpr uint64_t kMaxStringLen = 1ull << 30;

size_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::U8: case GgufType::I8: case GgufType::BOOL: return 1;
    case GgufType::U16: case GgufType::I16: return 2;
    case GgufType::U32: case GgufType::I32: case GgufType::F32: return 4;
    case GgufType::U64: case GgufType::I64: case GgufType::F64: return 8;
    default: return 0;
  }
}

// Bounded little-endian reader over the mapped file; every read names what it was
// reading when it runs out of bytes.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}
  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return size_ - pos_; }

  void need(uint64_t n, const std::string& what) {
    if (n > remaining())
      fail(ErrorKind::Format, "{}: truncated while reading {} at offset {}: need {} bytes, {} left",
           path_, what, pos_, n, remaining());
  }
  template <typename T>
  T read(const std::string& what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string read_string(const std::string& what) {
    uint64_t n = read<uint64_t>(what + " length");
    if (n > kMaxStringLen)
      fail(ErrorKind::Format, "{}: {} has length {} (limit {})", path_, what, n, kMaxStringLen);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
    pos_ += n;
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  uint64_t size_, pos_ = 0;
};

GgufValue read_value(Cursor& c, const std::string& path, const std::string& key, GgufType type,
                     int depth) {
  GgufValue v;
  v.type = type;
  const std::string what = "value of '" + key + "'";
  switch (type) {
    case GgufType::U8: v.u = c.read<uint8_t>(what); break;
    case GgufType::U16: v.u = c.read<uint16_t>(what); break;
    case GgufType::U32: v.u = c.read<uint32_t>(what); break;
    case GgufType::U64: v.u = c.read<uint64_t>(what); break;
    case GgufType::I8: v.i = c.read<int8_t>(what); break;
    case GgufType::I16: v.i = c.read<int16_t>(what); break;
    case GgufType::I32: v.i = c.read<int32_t>(what); break;
    case GgufType::I64: v.i = c.read<int64_t>(what); break;
    case GgufType::F32: v.f = c.read<float>(what); break;
    case GgufType::F64: v.f = c.read<double>(what); break;
    case GgufType::BOOL: {
      uint8_t b = c.read<uint8_t>(what);
      if (b > 1)
        fail(ErrorKind::Format, "{}: key '{}': bool value {} is neither 0 nor 1", path, key, b);
      v.u = b;
      break;
    }
    case GgufType::STRING: v.s = c.read_string(what); break;
    case GgufType::ARRAY: {
      if (depth >= kMaxArrayNesting)
        fail(ErrorKind::Format, "{}: key '{}': arrays nested deeper than {}", path, key,
             kMaxArrayNesting);
      uint32_t et = c.read<uint32_t>("array type of '" + key + "'");
      if (et > static_cast<uint32_t>(GgufType::F64))
        fail(ErrorKind::Format, "{}: key '{}': unknown array element type {}", path, key, et);
      v.elem_type = static_cast<GgufType>(et);
      uint64_t n = c.read<uint64_t>("array length of '" + key + "'");
      // Every element takes at least one byte (strings and arrays at least 8), so a
      // count larger than the bytes left is a lie; checking here bounds the allocation.
      uint64_t min_elem = scalar_size(v.elem_type) ? scalar_size(v.elem_type) : 8;
      uint64_t need = 0;
      if (mul_overflows(n, min_elem, &need) || need > c.remaining())
        fail(ErrorKind::Format,
             "{}: key '{}': array of {} {} elements does not fit in the {} bytes left", path, key,
             n, gguf_type_name(v.elem_type), c.remaining());
      v.array.reserve(n);
      for (uint64_t i = 0; i < n; ++i)
        v.array.push_back(read_value(c, path, key, v.elem_type, depth + 1));
      break;
    }
    default:
      fail(ErrorKind::Format, "{}: key '{}': unknown value type {}", path, key,
           static_cast<uint32_t>(type));
  }
  return v;
}

template <typename T>
void put(std::string& out, T v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void write_value(std::string& out, const GgufValue& v) {
  switch (v.type) {
    case GgufType::U8: put<uint8_t>(out, v.u); break;
    case GgufType::U16: put<uint16_t>(out, v.u); break;
    case GgufType::U32: put<uint32_t>(out, v.u); break;
    case GgufType::U64: put<uint64_t>(out, v.u); break;
    case GgufType::I8: put<int8_t>(out, v.i); break;
    case GgufType::I16: put<int16_t>(out, v.i); break;
    case GgufType::I32: put<int32_t>(out, v.i); break;
    case GgufType::I64: put<int64_t>(out, v.i); break;
    case GgufType::F32: put<float>(out, static_cast<float>(v.f)); break;
    case GgufType::F64: put<double>(out, v.f); break;
    case GgufType::BOOL: put<uint8_t>(out, v.u ? 1 : 0); break;
    case GgufType::STRING: put_string(out, v.s); break;
    case GgufType::ARRAY:
      put<uint32_t>(out, static_cast<uint32_t>(v.elem_type));
      put<uint64_t>(out, v.array.size());
      for (const auto& e : v.array) {
        if (e.type != v.elem_type)
          fail(ErrorKind::Argument, "GGUF array element of type {} in an array of {}",
               gguf_type_name(e.type), gguf_type_name(v.elem_type));
        write_value(out, e);
      }
      break;
  }
}

}  // namespace

const char* gguf_type_name(GgufType t) {
  static const char* names[] = {"u8",   "i8",     "u16",   "i16", "u32", "i32", "f32",
                                "bool", "string", "array", "u64", "i64", "f64"};
  auto i = static_cast<uint32_t>(t);
  return i < 13 ? names[i] : "unknown";
}

GgufValue GgufValue::of_strings(const std::vector<std::string>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::STRING;
  for (const auto& s : v) x.array.push_back(of_string(s));
  return x;
}
GgufValue GgufValue::of_f32s(const std::vector<float>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::F32;
  for (float f : v) x.array.push_back(of_f32(f));
  return x;
}
GgufValue GgufValue::of_i32s(const std::vector<int32_t>& v) {
  GgufValue x;
  x.type = GgufType::ARRAY;
  x.elem_type = GgufType::I32;
  for (int32_t i : v) x.array.push_back(of_i32(i));
  return x;
}

bool GgufValue::operator==(const GgufValue& o) const {
  if (type != o.type) return false;
  switch (type) {
    case GgufType::STRING: return s == o.s;
    case GgufType::ARRAY: return elem_type == o.elem_type && array == o.array;
    case GgufType::F32: case GgufType::F64:
      return std::memcmp(&f, &o.f, sizeof f) == 0;  // bitwise, so NaN payloads count
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64: return i == o.i;
    default: return u == o.u;
  }
}

std::string GgufValue::to_string(size_t max_elems) const {
  switch (type) {
    case GgufType::STRING:
      return s.size() > 120 ? fmt::format("\"{}...\" ({} bytes)", s.substr(0, 117), s.size())
                            : "\"" + s + "\"";
    case GgufType::BOOL: return u ? "true" : "false";
    case GgufType::F32: case GgufType::F64: return fmt::format("{}", f);
    case GgufType::I8:
    case GgufType::I16:
    case GgufType::I32:
    case GgufType::I64:
      return std::to_string(i);
    case GgufType::ARRAY: {
      std::string r = fmt::format("[{} x {}] [", array.size(), gguf_type_name(elem_type));
      for (size_t k = 0; k < array.size() && k < max_elems; ++k)
        r += (k ? ", " : "") + array[k].to_string(max_elems);
      return r + (array.size() > max_elems ? ", ...]" : "]");
    }
    default: return std::to_string(u);
  }
}

namespace {
// The 2:4 sparse types' kernels rely on every group's first place lying below its second.
void check_2of4_patterns(const std::string& path, const TensorView& t) {
  if (!is_sparse_2of4(t.dtype)) return;
  const uint32_t size = traits(t.dtype).type_size;
  for (uint64_t b = 0; b < t.nbytes / size; ++b)
    if (!quant::valid_2of4_pattern(t.data + b * size + 2))
      fail(ErrorKind::Format,
           "{}: tensor '{}': block {} of {} has a group whose first kept place is not below "
           "its second",
           path, t.name, b, dtype_name(t.dtype));
}
}  // namespace

std::unique_ptr<GgufFile> GgufFile::open(const std::string& path) {
  auto g = std::unique_ptr<GgufFile>(new GgufFile());
  g->file_ = MappedFile::open(path);
  Cursor c(path, g->file_->data(), g->file_->size());
  uint32_t magic = c.read<uint32_t>("magic");
  if (magic != 0x46554747u)
    fail(ErrorKind::Format, "{}: not a GGUF file (magic 0x{:08x}, expected 0x46554747 \"GGUF\")",
         path, magic);
  g->version_ = c.read<uint32_t>("version");
  if (g->version_ != 2 && g->version_ != 3)
    fail(ErrorKind::Unsupported, "{}: GGUF version {} is not supported (expected 2 or 3)", path,
         g->version_);
  uint64_t n_tensors = c.read<uint64_t>("tensor count");
  uint64_t n_kv = c.read<uint64_t>("metadata count");
  // A key/value pair takes at least 12 bytes and a tensor info at least 28.
  if (n_kv > c.remaining() / 12)
    fail(ErrorKind::Format, "{}: metadata count {} cannot fit in a {}-byte file", path, n_kv,
         g->file_->size());
  if (n_tensors > c.remaining() / 28)
    fail(ErrorKind::Format, "{}: tensor count {} cannot fit in a {}-byte file", path, n_tensors,
         g->file_->size());

  for (uint64_t k = 0; k < n_kv; ++k) {
    std::string key = c.read_string(fmt::format("key #{}", k));
    uint32_t t = c.read<uint32_t>("type of '" + key + "'");
    if (t > static_cast<uint32_t>(GgufType::F64))
      fail(ErrorKind::Format, "{}: key '{}': unknown value type {}", path, key, t);
    if (g->kv_index_.count(key))
      fail(ErrorKind::Format, "{}: metadata key '{}' appears twice", path, key);
    g->kv_index_[key] = g->kv_.size();
    g->kv_.emplace_back(key, read_value(c, path, key, static_cast<GgufType>(t), 0));
  }
  if (const GgufValue* a = g->find("general.alignment")) {
    if (a->type != GgufType::U32)
      fail(ErrorKind::Format, "{}: key 'general.alignment': expected u32, got {}", path,
           gguf_type_name(a->type));
    if (a->u == 0 || (a->u & (a->u - 1)) != 0)
      fail(ErrorKind::Format, "{}: key 'general.alignment': {} is not a power of two", path, a->u);
    g->alignment_ = a->u;
  }

  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo ti;
    TensorView& t = ti.view;
    t.name = c.read_string(fmt::format("name of tensor #{}", k));
    uint32_t nd = c.read<uint32_t>("n_dims of '" + t.name + "'");
    if (nd == 0 || nd > kMaxDims)
      fail(ErrorKind::Format, "{}: tensor '{}': n_dims {} (expected 1..{})", path, t.name, nd,
           kMaxDims);
    std::vector<uint64_t> ne(nd);
    uint64_t n = 1;
    for (auto& d : ne) {
      d = c.read<uint64_t>("dims of '" + t.name + "'");
      if (mul_overflows(n, d, &n) || n > (1ull << 62))
        fail(ErrorKind::Format, "{}: tensor '{}': shape overflows", path, t.name);
    }
    t.shape.assign(ne.rbegin(), ne.rend());
    uint32_t type = c.read<uint32_t>("type of '" + t.name + "'");
    auto dt = dtype_from_ggml(type);
    if (!dt)
      fail(ErrorKind::Unsupported, "{}: tensor '{}': ggml type {} is not supported", path, t.name,
           type);
    t.dtype = *dt;
    if (!tensor_bytes(t.dtype, ne[0], n, &t.nbytes))
      fail(ErrorKind::Format,
           "{}: tensor '{}': row length {} is not a multiple of {}'s block size {}", path, t.name,
           ne[0], dtype_name(t.dtype), traits(t.dtype).block_size);
    ti.offset = c.read<uint64_t>("offset of '" + t.name + "'");
    if (ti.offset % g->alignment_ != 0)
      fail(ErrorKind::Format, "{}: tensor '{}': offset {} is not a multiple of the alignment {}",
           path, t.name, ti.offset, g->alignment_);
    if (g->tensor_index_.count(t.name))
      fail(ErrorKind::Format, "{}: tensor '{}' appears twice", path, t.name);
    g->tensor_index_[t.name] = g->tensors_.size();
    g->tensors_.push_back(std::move(ti));
  }
  uint64_t data_off = (c.pos() + g->alignment_ - 1) / g->alignment_ * g->alignment_;
  if (g->tensors_.size() && data_off > g->file_->size())
    fail(ErrorKind::Format,
         "{}: data section would start at {}, past the end of the file ({} bytes)", path, data_off,
         g->file_->size());
  g->data_offset_ = data_off;
  const uint64_t data_size = g->file_->size() > data_off ? g->file_->size() - data_off : 0;
  std::vector<const GgufTensorInfo*> by_offset;
  for (auto& ti : g->tensors_) {
    uint64_t end = 0;
    if (add_overflows(ti.offset, ti.view.nbytes, &end) || end > data_size)
      fail(ErrorKind::Format,
           "{}: tensor '{}': data [{}, +{}) runs past the end of the data section ({} bytes)", path,
           ti.view.name, ti.offset, ti.view.nbytes, data_size);
    ti.view.data = g->file_->data() + data_off + ti.offset;
    by_offset.push_back(&ti);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t k = 1; k < by_offset.size(); ++k)
    if (by_offset[k - 1]->offset + by_offset[k - 1]->view.nbytes > by_offset[k]->offset)
      fail(ErrorKind::Format, "{}: tensor '{}' overlaps tensor '{}'", path, by_offset[k]->view.name,
           by_offset[k - 1]->view.name);
  for (const auto& ti : g->tensors_) check_2of4_patterns(path, ti.view);
  return g;
}

const GgufValue* GgufFile::find(const std::string& key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kv_[it->second].second;
}

const TensorView* GgufFile::find_tensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second].view;
}

std::optional<uint64_t> GgufFile::get_uint_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  switch (v->type) {
    case GgufType::U8: case GgufType::U16: case GgufType::U32: case GgufType::U64: return v->u;
    case GgufType::I8: case GgufType::I16: case GgufType::I32: case GgufType::I64:
      if (v->i < 0)
        fail(ErrorKind::Format, "{}: key '{}': expected a non-negative integer, got {}", path(),
             key, v->i);
      return static_cast<uint64_t>(v->i);
    default:
      fail(ErrorKind::Format, "{}: key '{}': expected an integer, got {}", path(), key,
           gguf_type_name(v->type));
  }
}

uint64_t GgufFile::get_uint(const std::string& key) const {
  auto v = get_uint_opt(key);
  if (!v) fail(ErrorKind::Format, "{}: missing key '{}'", path(), key);
  return *v;
}

std::optional<double> GgufFile::get_float_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::F32 && v->type != GgufType::F64)
    fail(ErrorKind::Format, "{}: key '{}': expected a float, got {}", path(), key,
         gguf_type_name(v->type));
  return v->f;
}

double GgufFile::get_float(const std::string& key) const {
  auto v = get_float_opt(key);
  if (!v) fail(ErrorKind::Format, "{}: missing key '{}'", path(), key);
  return *v;
}

std::string GgufFile::get_string(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) fail(ErrorKind::Format, "{}: missing key '{}'", path(), key);
  if (v->type != GgufType::STRING)
    fail(ErrorKind::Format, "{}: key '{}': expected a string, got {}", path(), key,
         gguf_type_name(v->type));
  return v->s;
}

std::optional<bool> GgufFile::get_bool_opt(const std::string& key) const {
  const GgufValue* v = find(key);
  if (!v) return std::nullopt;
  if (v->type != GgufType::BOOL)
    fail(ErrorKind::Format, "{}: key '{}': expected a bool, got {}", path(), key,
         gguf_type_name(v->type));
  return v->u != 0;
}

const GgufValue& GgufFile::get_array(const std::string& key, GgufType elem) const {
  const GgufValue* v = find(key);
  if (!v) fail(ErrorKind::Format, "{}: missing key '{}'", path(), key);
  if (v->type != GgufType::ARRAY || v->elem_type != elem)
    fail(ErrorKind::Format, "{}: key '{}': expected an array of {}, got {}{}", path(), key,
         gguf_type_name(elem), gguf_type_name(v->type),
         v->type == GgufType::ARRAY ? std::string(" of ") + gguf_type_name(v->elem_type) : "");
  return *v;
}

void GgufWriter::set(const std::string& key, GgufValue v) {
  for (auto& kv : kv_)
    if (kv.first == key) {
      kv.second = std::move(v);
      return;
    }
  kv_.emplace_back(key, std::move(v));
}

void GgufWriter::add_tensor(OutputTensor t) {
  for (const auto& e : tensors_)
    if (e.info.name == t.info.name)
      fail(ErrorKind::Argument, "GGUF writer: tensor '{}' added twice", t.info.name);
  if (traits(t.info.dtype).ggml_id < 0)
    fail(ErrorKind::Unsupported, "tensor '{}': dtype {} cannot be stored in GGUF", t.info.name,
         dtype_name(t.info.dtype));
  tensors_.push_back(std::move(t));
}

uint64_t GgufWriter::alignment() const {
  for (const auto& kv : kv_)
    if (kv.first == "general.alignment") return kv.second.u;
  return 32;
}

std::string GgufWriter::header(std::vector<uint64_t>& offsets) const {
  const uint64_t align = alignment();
  std::string head;
  put<uint32_t>(head, 0x46554747u);
  put<uint32_t>(head, 3);
  put<uint64_t>(head, tensors_.size());
  put<uint64_t>(head, kv_.size());
  for (const auto& [key, v] : kv_) {
    put_string(head, key);
    put<uint32_t>(head, static_cast<uint32_t>(v.type));
    write_value(head, v);
  }
  offsets.clear();
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_string(head, t.info.name);
    put<uint32_t>(head, static_cast<uint32_t>(t.info.shape.size()));
    for (auto it = t.info.shape.rbegin(); it != t.info.shape.rend(); ++it) put<uint64_t>(head, *it);
    put<uint32_t>(head, static_cast<uint32_t>(traits(t.info.dtype).ggml_id));
    put<uint64_t>(head, offset);
    offsets.push_back(offset);
    offset += (t.nbytes + align - 1) / align * align;
  }
  offsets.push_back(offset);  // the end of the data
  head.resize((head.size() + align - 1) / align * align, '\0');
  return head;
}

void GgufWriter::write(const std::string& path) const {
  GgufStreamWriter out(*this, path);
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    buf.clear();
    tensors_[i].produce(buf);
    if (buf.size() != tensors_[i].nbytes)
      fail(ErrorKind::Argument, "{}: tensor '{}': producer gave {} bytes, expected {}", path,
           tensors_[i].info.name, buf.size(), tensors_[i].nbytes);
    out.write(i, buf);
  }
  out.commit();
}

GgufStreamWriter::GgufStreamWriter(const GgufWriter& layout, const std::string& path)
    : layout_(layout), path_(path), file_(path), written_(layout.tensors().size(), 0) {
  const std::string head = layout.header(offsets_);
  data_start_ = head.size();
  file_.write(head);
  file_.resize(data_start_ + offsets_.back());
}

size_t GgufStreamWriter::index_of(const std::string& name) const {
  const auto& ts = layout_.tensors();
  for (size_t i = 0; i < ts.size(); ++i)
    if (ts[i].info.name == name) return i;
  fail(ErrorKind::Argument, "{}: no tensor '{}' in the planned file", path_, name);
}

void GgufStreamWriter::write(size_t i, uint64_t offset, const uint8_t* data, size_t n) {
  const OutputTensor& t = tensor(i);
  if (offset > t.nbytes || n > t.nbytes - offset || written_[i] + n > t.nbytes)
    fail(ErrorKind::Argument, "{}: tensor '{}': bytes {}..{} written past its {} bytes", path_,
         t.info.name, offset, offset + n, t.nbytes);
  file_.write_at(data_start_ + offsets_[i] + offset, data, n);
  written_[i] += n;
}

void GgufStreamWriter::commit() {
  for (size_t i = 0; i < written_.size(); ++i)
    if (!complete(i))
      fail(ErrorKind::Argument, "{}: tensor '{}' has {} of its {} bytes", path_,
           tensor(i).info.name, written_[i], tensor(i).nbytes);
  file_.commit();
}

}  // namespace lowbit

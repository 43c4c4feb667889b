#include "lowbit/safetensors.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "lowbit/error.h"

namespace lowbit {
namespace {

using nlohmann::json;

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// Parses JSON and rejects duplicate keys in the top-level object, which nlohmann would
// otherwise silently collapse.
json parse_header_json(const std::string& path, const char* begin, const char* end) {
  std::set<std::string> seen;
  std::string dup;
  json::parser_callback_t cb = [&](int depth, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::key && depth == 1) {
      auto name = parsed.get<std::string>();
      if (!seen.insert(name).second && dup.empty()) dup = name;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(begin, end, cb);
  } catch (const json::exception& e) {
    fail(ErrorKind::Format, "{}: header is not valid JSON: {}", path, e.what());
  }
  if (!dup.empty())
    fail(ErrorKind::Format, "{}: tensor '{}' appears twice in the header", path, dup);
  if (!j.is_object()) fail(ErrorKind::Format, "{}: header must be a JSON object", path);
  return j;
}

}  // namespace

std::unique_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto st = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  st->file_ = MappedFile::open(path);
  const uint8_t* base = st->file_->data();
  const uint64_t size = st->file_->size();
  if (size < 8)
    fail(ErrorKind::Format, "{}: file is {} bytes, shorter than the 8-byte header length", path,
         size);
  const uint64_t hlen = read_u64_le(base);
  if (hlen > kSafetensorsMaxHeader)
    fail(ErrorKind::Format, "{}: header length {} exceeds the limit of {} bytes", path, hlen,
         kSafetensorsMaxHeader);
  if (hlen > size - 8)
    fail(ErrorKind::Format, "{}: header length {} runs past the end of the file ({} bytes)", path,
         hlen, size);
  const char* hbeg = reinterpret_cast<const char*>(base + 8);
  json header = parse_header_json(path, hbeg, hbeg + hlen);
  const uint8_t* data = base + 8 + hlen;
  const uint64_t data_size = size - 8 - hlen;

  struct Span { uint64_t begin, end; size_t index; };
  std::vector<Span> spans;
  for (auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object())
        fail(ErrorKind::Format, "{}: __metadata__ must be an object of strings", path);
      for (auto& [k, v] : entry.items()) {
        if (!v.is_string())
          fail(ErrorKind::Format, "{}: __metadata__ key '{}': expected a string, got {}", path, k,
               v.type_name());
        st->metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    if (!entry.is_object())
      fail(ErrorKind::Format, "{}: tensor '{}': entry must be an object", path, name);
    if (!entry.contains("dtype") || !entry["dtype"].is_string())
      fail(ErrorKind::Format, "{}: tensor '{}': missing string key 'dtype'", path, name);
    if (!entry.contains("shape") || !entry["shape"].is_array())
      fail(ErrorKind::Format, "{}: tensor '{}': missing array key 'shape'", path, name);
    if (!entry.contains("data_offsets") || !entry["data_offsets"].is_array() ||
        entry["data_offsets"].size() != 2)
      fail(ErrorKind::Format, "{}: tensor '{}': 'data_offsets' must be an array of 2 integers",
           path, name);
    TensorView t;
    t.name = name;
    auto dname = entry["dtype"].get<std::string>();
    auto dt = dtype_from_safetensors(dname);
    if (!dt) fail(ErrorKind::Unsupported, "{}: tensor '{}': unknown dtype '{}'", path, name, dname);
    t.dtype = *dt;
    uint64_t n = 1;
    for (auto& d : entry["shape"]) {
      if (!d.is_number_unsigned())
        fail(ErrorKind::Format,
             "{}: tensor '{}': shape entries must be non-negative integers, got {}", path, name,
             d.dump());
      uint64_t dim = d.get<uint64_t>();
      t.shape.push_back(dim);
      if (mul_overflows(n, dim, &n))
        fail(ErrorKind::Format, "{}: tensor '{}': shape {} overflows", path, name,
             entry["shape"].dump());
    }
    uint64_t expect = 0;
    if (mul_overflows(n, traits(t.dtype).type_size, &expect))
      fail(ErrorKind::Format, "{}: tensor '{}': shape {} overflows", path, name,
           entry["shape"].dump());
    auto& off = entry["data_offsets"];
    if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned())
      fail(ErrorKind::Format, "{}: tensor '{}': data_offsets must be non-negative integers", path,
           name);
    uint64_t b = off[0].get<uint64_t>(), e = off[1].get<uint64_t>();
    if (e < b)
      fail(ErrorKind::Format, "{}: tensor '{}': data_offsets [{}, {}] end before they begin", path,
           name, b, e);
    if (e > data_size)
      fail(ErrorKind::Format,
           "{}: tensor '{}': data_offsets [{}, {}] run past the data section ({} bytes)", path,
           name, b, e, data_size);
    if (e - b != expect)
      fail(ErrorKind::Format, "{}: tensor '{}': holds {} bytes but dtype {} and shape {} need {}",
           path, name, e - b, dname, shape_string(t.shape), expect);
    t.data = data + b;
    t.nbytes = expect;
    spans.push_back({b, e, st->tensors_.size()});
    st->tensors_.push_back(std::move(t));
  }
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin < b.begin || (a.begin == b.begin && a.end < b.end);
  });
  uint64_t pos = 0;
  for (const auto& s : spans) {
    const auto& name = st->tensors_[s.index].name;
    if (s.begin < pos)
      fail(ErrorKind::Format,
           "{}: tensor '{}': data at [{}, {}] overlaps the previous tensor (ends at {})", path,
           name, s.begin, s.end, pos);
    if (s.begin > pos)
      fail(ErrorKind::Format, "{}: tensor '{}': data begins at {}, leaving a gap after offset {}",
           path, name, s.begin, pos);
    pos = s.end;
  }
  if (pos != data_size)
    fail(ErrorKind::Format, "{}: tensors cover {} bytes but the data section holds {}", path, pos,
         data_size);
  // File order = offset order, which is how writers lay tensors out.
  std::vector<TensorView> ordered;
  for (const auto& s : spans) ordered.push_back(std::move(st->tensors_[s.index]));
  st->tensors_ = std::move(ordered);
  for (size_t i = 0; i < st->tensors_.size(); ++i) st->index_[st->tensors_[i].name] = i;
  return st;
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

std::unique_ptr<SafetensorsCheckpoint> SafetensorsCheckpoint::open_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  auto ck = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  const fs::path index_path = fs::path(dir) / "model.safetensors.index.json";
  if (fs::exists(index_path)) {
    json idx;
    const std::string text = read_text_file(index_path.string());
    try {
      idx = json::parse(text);
    } catch (const json::exception& e) {
      fail(ErrorKind::Format, "{}: not valid JSON: {}", index_path.string(), e.what());
    }
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      fail(ErrorKind::Format, "{}: missing object key 'weight_map'", index_path.string());
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shard_names;
    for (auto& [name, file] : idx["weight_map"].items()) {
      if (!file.is_string())
        fail(ErrorKind::Format, "{}: weight_map['{}'] must be a file name", index_path.string(),
             name);
      auto f = file.get<std::string>();
      if (f.find('/') != std::string::npos || f == "..")
        fail(ErrorKind::Format,
             "{}: weight_map['{}'] names '{}', which is not a file in the same directory",
             index_path.string(), name, f);
      weight_map[name] = f;
      shard_names.insert(f);
    }
    for (const auto& shard : shard_names)
      ck->shards_.push_back(SafetensorsFile::open((fs::path(dir) / shard).string()));
    for (const auto& [name, file] : weight_map) {
      const SafetensorsFile* owner = nullptr;
      for (const auto& s : ck->shards_)
        if (fs::path(s->path()).filename() == file) owner = s.get();
      if (!owner->find(name))
        fail(ErrorKind::Format,
             "{}: weight_map says tensor '{}' is in {}, but that shard does not hold it",
             index_path.string(), name, file);
    }
    if (idx.contains("metadata") && idx["metadata"].is_object())
      for (auto& [k, v] : idx["metadata"].items())
        ck->metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
  } else {
    const fs::path single = fs::path(dir) / "model.safetensors";
    if (!fs::exists(single))
      fail(ErrorKind::Io, "{}: neither model.safetensors nor model.safetensors.index.json found",
           dir);
    ck->shards_.push_back(SafetensorsFile::open(single.string()));
  }
  for (const auto& s : ck->shards_) {
    for (const auto& [k, v] : s->metadata()) ck->metadata_.emplace(k, v);
    for (const auto& t : s->tensors()) {
      if (ck->index_.count(t.name))
        fail(ErrorKind::Format, "{}: tensor '{}' appears in more than one shard", s->path(),
             t.name);
      ck->index_[t.name] = ck->all_.size();
      ck->all_.push_back(t);
    }
  }
  return ck;
}

const TensorView* SafetensorsCheckpoint::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &all_[it->second];
}

void write_safetensors(const std::string& path, const std::vector<OutputTensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  std::set<std::string> names;
  for (const auto& t : tensors) {
    const char* st = traits(t.info.dtype).st_name;
    if (!st)
      fail(ErrorKind::Unsupported, "{}: tensor '{}': dtype {} cannot be stored in safetensors",
           path, t.info.name, dtype_name(t.info.dtype));
    if (!names.insert(t.info.name).second)
      fail(ErrorKind::Argument, "{}: tensor '{}' written twice", path, t.info.name);
    header[t.info.name] = {
        {"dtype", st}, {"shape", t.info.shape}, {"data_offsets", {offset, offset + t.nbytes}}};
    offset += t.nbytes;
  }
  std::string h = header.dump();
  h.append((8 - h.size() % 8) % 8, ' ');  // keeps the data section 8-byte aligned
  AtomicFileWriter w(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i)
    len[i] = static_cast<uint8_t>(static_cast<uint64_t>(h.size()) >> (8 * i));
  w.write(len, 8);
  w.write(h);
  std::vector<uint8_t> buf;
  for (const auto& t : tensors) {
    buf.clear();
    t.produce(buf);
    if (buf.size() != t.nbytes)
      fail(ErrorKind::Argument, "{}: tensor '{}': producer gave {} bytes, expected {}", path,
           t.info.name, buf.size(), t.nbytes);
    w.write(buf.data(), buf.size());
  }
  w.commit();
}

}  // namespace lowbit

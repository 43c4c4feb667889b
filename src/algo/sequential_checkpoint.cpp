#include "algo/sequential_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace lowbit {
namespace {

namespace fs = std::filesystem;
constexpr char kMagic[8] = {'L', 'B', 'C', 'K', 'P', 'T', '0', '2'};

template <typename T>
void put(std::string& s, const T& v) {
  s.append(reinterpret_cast<const char*>(&v), sizeof v);
}

// Bounded reads over a mapped checkpoint file.
struct Reader {
  const MappedFile& f;
  size_t pos = 0;
  const uint8_t* take(size_t n) {
    if (n > f.size() - pos) fail(ErrorKind::Format, "{}: checkpoint file is truncated", f.path());
    const uint8_t* p = f.data() + pos;
    pos += n;
    return p;
  }
  template <typename T>
  T get() {
    T v;
    std::memcpy(&v, take(sizeof v), sizeof v);
    return v;
  }
};

}  // namespace

void SequentialCheckpoint::save_step(
    uint32_t step,
    const std::vector<std::pair<std::string, const PrecomputedTensor*>>& tensors) const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail(ErrorKind::Io, "{}: cannot create the checkpoint directory: {}", dir_, ec.message());
  std::string s;
  for (const auto& [name, t] : tensors) {
    put(s, static_cast<uint32_t>(name.size()));
    s += name;
    put(s, t->rel_rms_error);
    put(s, t->rel_output_error);
    put(s, t->rel_output_error_rtn);
    put(s, t->zero_share);
    put(s, static_cast<uint64_t>(t->bytes.size()));
    s.append(reinterpret_cast<const char*>(t->bytes.data()), t->bytes.size());
  }
  write_file_atomic(dir_ + "/done-" + std::to_string(step) + ".bin", s);
}

void SequentialCheckpoint::save_state(uint32_t next_layer, const Activations& xq,
                                      const Activations& xf) const {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) fail(ErrorKind::Io, "{}: cannot create the checkpoint directory: {}", dir_, ec.message());
  AtomicFileWriter w(dir_ + "/state.bin");
  const uint64_t W = xq.size(), TD = W ? xq[0].size() : 0;
  w.write(kMagic, 8);
  w.write(&fp_, 8);
  w.write(&next_layer, 4);
  w.write(&W, 8);
  w.write(&TD, 8);
  const uint8_t has_ref = xf.empty() ? 0 : 1;
  w.write(&has_ref, 1);
  for (const Activations* a : {&xq, &xf})
    for (const auto& x : *a) w.write(x.data(), x.size() * sizeof(float));
  w.commit();
}

uint32_t SequentialCheckpoint::load_state(Activations& xq, Activations& xf) const {
  const std::string path = dir_ + "/state.bin";
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  const auto f = MappedFile::open(path);
  Reader r{*f};
  if (std::memcmp(r.take(8), kMagic, 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit checkpoint", path);
  if (r.get<uint64_t>() != fp_)
    fail(ErrorKind::Argument,
         "{}: the checkpoint was made by another job (other model, method, settings or text); "
         "remove {} or run the same job",
         path, dir_);
  const uint32_t next = r.get<uint32_t>();
  const uint64_t W = r.get<uint64_t>(), TD = r.get<uint64_t>();
  const bool has_ref = r.get<uint8_t>() != 0;
  if (W != xq.size() || (W && TD != xq[0].size()) || has_ref != !xf.empty())
    fail(ErrorKind::Format, "{}: checkpoint shapes do not match the job", path);
  for (Activations* a : {&xq, &xf})
    for (auto& x : *a)
      std::memcpy(x.data(), r.take(x.size() * sizeof(float)), x.size() * sizeof(float));
  return next;
}

std::vector<std::pair<std::string, PrecomputedTensor>> SequentialCheckpoint::load_step(
    uint32_t step) const {
  const auto f = MappedFile::open(dir_ + "/done-" + std::to_string(step) + ".bin");
  Reader r{*f};
  std::vector<std::pair<std::string, PrecomputedTensor>> out;
  while (r.pos < f->size()) {
    const uint32_t len = r.get<uint32_t>();
    std::string name(reinterpret_cast<const char*>(r.take(len)), len);
    PrecomputedTensor t;
    t.rel_rms_error = r.get<double>();
    t.rel_output_error = r.get<double>();
    t.rel_output_error_rtn = r.get<double>();
    t.zero_share = r.get<double>();
    const uint64_t n = r.get<uint64_t>();
    const uint8_t* p = r.take(n);
    t.bytes.assign(p, p + n);
    out.emplace_back(std::move(name), std::move(t));
  }
  return out;
}

bool SequentialCheckpoint::has_step(uint32_t step) const {
  std::error_code ec;
  return fs::exists(dir_ + "/done-" + std::to_string(step) + ".bin", ec);
}

void SequentialCheckpoint::remove() const {
  std::error_code ec;
  fs::remove_all(dir_, ec);
}

}  // namespace lowbit

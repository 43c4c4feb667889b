#include "algo/sequential_checkpoint.h"

#include <cstring>
#include <filesystem>

#include "core/mapped_reader.h"
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

}  // namespace

void make_checkpoint_directory(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail(ErrorKind::Io, "{}: cannot create the checkpoint directory: {}", dir, ec.message());
}

void SequentialCheckpoint::save_step(
    uint32_t step,
    const std::vector<std::pair<std::string, const PrecomputedTensor*>>& tensors) const {
  make_checkpoint_directory(dir_);
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
  const size_t W = xq.size(), TD = W ? xq[0].size() : 0;
  save_state(next_layer, W, TD, !xf.empty(),
             [&](bool reference, size_t i) { return (reference ? xf : xq)[i].data(); });
}

void SequentialCheckpoint::save_state(uint32_t next_layer, size_t W, size_t TD, bool has_reference,
                                      const WindowSource& window) const {
  make_checkpoint_directory(dir_);
  AtomicFileWriter w(dir_ + "/state.bin");
  const uint64_t w64 = W, td64 = TD;
  w.write(kMagic, 8);
  w.write(&fp_, 8);
  w.write(&next_layer, 4);
  w.write(&w64, 8);
  w.write(&td64, 8);
  const uint8_t has_ref = has_reference ? 1 : 0;
  w.write(&has_ref, 1);
  for (const bool reference : {false, true})
    for (size_t i = 0; i < W && (!reference || has_reference); ++i)
      w.write(window(reference, i), TD * sizeof(float));
  w.commit();
}

namespace {

// The header of state.bin checked against the job; the reader is left at the windows.
uint32_t read_state_header(MappedReader& r, const std::string& path, const std::string& dir,
                           uint64_t fingerprint, size_t W, size_t TD, bool has_reference) {
  if (std::memcmp(r.take(8, "the magic"), kMagic, 8) != 0)
    fail(ErrorKind::Format, "{}: not a lowbit checkpoint", path);
  if (r.get<uint64_t>("the fingerprint") != fingerprint)
    fail(ErrorKind::Argument,
         "{}: the checkpoint was made by another job (other model, method, settings or text); "
         "remove {} or run the same job",
         path, dir);
  const uint32_t next = r.get<uint32_t>("the next layer");
  const uint64_t w = r.get<uint64_t>("the window count"), td = r.get<uint64_t>("the window size");
  const bool has_ref = r.get<uint8_t>("the reference flag") != 0;
  if (w != W || (W && td != TD) || has_ref != has_reference)
    fail(ErrorKind::Format, "{}: checkpoint shapes do not match the job", path);
  return next;
}

}  // namespace

uint32_t SequentialCheckpoint::stored_layer(size_t W, size_t TD, bool has_reference) const {
  const std::string path = dir_ + "/state.bin";
  std::error_code ec;
  if (!fs::exists(path, ec)) return 0;
  const auto f = MappedFile::open(path);
  MappedReader r{*f};
  return read_state_header(r, path, dir_, fp_, W, TD, has_reference);
}

void SequentialCheckpoint::load_windows(size_t W, size_t TD, bool has_reference,
                                        const WindowSink& take) const {
  const std::string path = dir_ + "/state.bin";
  const auto f = MappedFile::open(path);
  MappedReader r{*f};
  read_state_header(r, path, dir_, fp_, W, TD, has_reference);
  for (const bool reference : {false, true})
    for (size_t i = 0; i < W && (!reference || has_reference); ++i)
      take(reference, i, r.take(TD * sizeof(float), "activations"));
}

uint32_t SequentialCheckpoint::load_state(Activations& xq, Activations& xf) const {
  const size_t W = xq.size(), TD = W ? xq[0].size() : 0;
  const uint32_t next = stored_layer(W, TD, !xf.empty());
  if (next == 0) return 0;
  load_windows(W, TD, !xf.empty(), [&](bool reference, size_t i, const void* data) {
    std::memcpy((reference ? xf : xq)[i].data(), data, TD * sizeof(float));
  });
  return next;
}

std::vector<std::pair<std::string, PrecomputedTensor>> SequentialCheckpoint::load_step(
    uint32_t step) const {
  const auto f = MappedFile::open(dir_ + "/done-" + std::to_string(step) + ".bin");
  MappedReader r{*f};
  std::vector<std::pair<std::string, PrecomputedTensor>> out;
  while (r.pos < f->size()) {
    const uint32_t len = r.get<uint32_t>("a name length");
    std::string name(reinterpret_cast<const char*>(r.take(len, "a tensor name")), len);
    PrecomputedTensor t;
    t.rel_rms_error = r.get<double>("figures");
    t.rel_output_error = r.get<double>("figures");
    t.rel_output_error_rtn = r.get<double>("figures");
    t.zero_share = r.get<double>("figures");
    const uint64_t n = r.get<uint64_t>("a byte count");
    const uint8_t* p = r.take(n, "tensor bytes");
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

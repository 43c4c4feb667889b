#include "lowbit/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <utility>

#include "core/output_guard.h"
#include "lowbit/error.h"

namespace lowbit {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const auto [fd, size, id] = output_guard::open_input_file(path);
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(ErrorKind::Io, "{}: mmap failed: {}", path, std::strerror(errno));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  f->input_id_ = id;
  output_guard::remember_input(id);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
  output_guard::forget_input(input_id_);
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  check_output_path(path_);
  output_guard::remove_stale_temporaries(path_);
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  cleanup_slot_ = output_guard::remember_temporary(tmp_path_, false);
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) {
    output_guard::forget(cleanup_slot_);
    fail(ErrorKind::Io, "{}: cannot create output: {}", path_, std::strerror(errno));
  }
}

AtomicFileWriter::~AtomicFileWriter() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_path_.c_str());
  output_guard::forget(cleanup_slot_);
}

void AtomicFileWriter::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n)
    fail(ErrorKind::Io, "{}: write failed after {} bytes: {}", path_, offset_,
         std::strerror(errno));
  offset_ += n;
}

void AtomicFileWriter::pad_to(uint64_t alignment) {
  static const char zeros[256] = {};
  uint64_t pad = (alignment - offset_ % alignment) % alignment;
  while (pad > 0) {
    size_t n = pad < sizeof zeros ? pad : sizeof zeros;
    write(zeros, n);
    pad -= n;
  }
}

void AtomicFileWriter::resize(uint64_t size) {
  if (std::fflush(f_) != 0 || ::ftruncate(::fileno(f_), static_cast<off_t>(size)) != 0)
    fail(ErrorKind::Io, "{}: cannot size the output to {} bytes: {}", path_, size,
         std::strerror(errno));
}

void AtomicFileWriter::write_at(uint64_t offset, const void* data, size_t n) {
  if (std::fflush(f_) != 0)
    fail(ErrorKind::Io, "{}: write failed: {}", path_, std::strerror(errno));
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(::fileno(f_), p, n, static_cast<off_t>(offset));
    if (w <= 0)
      fail(ErrorKind::Io, "{}: write failed at byte {}: {}", path_, offset, std::strerror(errno));
    p += w, n -= static_cast<size_t>(w), offset += static_cast<uint64_t>(w);
  }
}

void AtomicFileWriter::commit() {
  if (std::fflush(f_) != 0 || std::fclose(f_) != 0) {
    f_ = nullptr;
    fail(ErrorKind::Io, "{}: cannot finish writing: {}", path_, std::strerror(errno));
  }
  f_ = nullptr;
  if (std::rename(tmp_path_.c_str(), path_.c_str()) != 0)
    fail(ErrorKind::Io, "{}: cannot rename temporary output: {}", path_, std::strerror(errno));
  committed_ = true;
}

std::string read_text_file(const std::string& path, uint64_t max_bytes) {
  const auto [fd, size, id] = output_guard::open_input_file(path);
  if (size > max_bytes) {
    ::close(fd);
    fail(ErrorKind::Io, "{}: {} bytes, more than the {} this file may have", path, size, max_bytes);
  }
  std::string s(size, '\0');
  size_t got = 0;
  while (got < size) {
    const ssize_t n = ::read(fd, s.data() + got, size - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = errno;
      ::close(fd);
      fail(ErrorKind::Io, "{}: read failed after {} bytes: {}", path, got,
           n < 0 ? std::strerror(e) : "the file shrank");
    }
    got += static_cast<size_t>(n);
  }
  ::close(fd);
  return s;
}

TemporaryDirectory::TemporaryDirectory(std::string path) : path_(std::move(path)) {
  namespace fs = std::filesystem;
  std::error_code ec;
  check_output_directory(path_);
  output_guard::remove_stale_temporaries(path_);
  tmp_path_ = path_ + ".lowbit-tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp_path_, ec);
  cleanup_slots_.push_back(output_guard::remember_temporary(tmp_path_, true));
  if (!fs::create_directory(tmp_path_, ec) || ec)
    fail(ErrorKind::Io, "{}: cannot create output directory: {}", tmp_path_, ec.message());
}

TemporaryDirectory::~TemporaryDirectory() {
  std::error_code ec;
  if (!committed_) std::filesystem::remove_all(tmp_path_, ec);
  for (int slot : cleanup_slots_) output_guard::forget(slot);
}

std::string TemporaryDirectory::file(const std::string& name) {
  const std::string p = tmp_path_ + "/" + name;
  cleanup_slots_.push_back(output_guard::remember_temporary(p, false));
  return p;
}

void TemporaryDirectory::commit() {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::exists(path_, ec)) fs::remove(path_, ec);  // the empty directory checked above
  fs::rename(tmp_path_, path_, ec);
  if (ec)
    fail(ErrorKind::Io, "{}: cannot rename the finished output into place: {}", path_,
         ec.message());
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter f(path);
  f.write(bytes);
  f.commit();
}

void release_mapped_pages(const void* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  // whole pages only
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  // MADV_PAGEOUT (Linux 5.4) reclaims the pages but keeps their contents, so it is also
  // harmless on heap memory (synthetic models); older kernels ignore the unknown advice.
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
}

}  // namespace lowbit

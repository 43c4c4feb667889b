#include "lowbit/file_io.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "lowbit/error.h"

namespace lowbit {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, "{}: not a regular file", path);
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(ErrorKind::Io, "{}: mmap failed: {}", path, std::strerror(errno));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

AtomicFileWriter::AtomicFileWriter(std::string path) : path_(std::move(path)) {
  tmp_path_ = path_ + ".tmp." + std::to_string(::getpid());
  f_ = std::fopen(tmp_path_.c_str(), "wb");
  if (!f_) fail(ErrorKind::Io, "{}: cannot create output: {}", path_, std::strerror(errno));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (f_) std::fclose(f_);
  if (!committed_) std::remove(tmp_path_.c_str());
}

void AtomicFileWriter::write(const void* data, size_t n) {
  if (n == 0) return;
  if (std::fwrite(data, 1, n, f_) != n)
    fail(ErrorKind::Io, "{}: write failed after {} bytes: {}", path_, offset_, std::strerror(errno));
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
    fail(ErrorKind::Io, "{}: cannot size the output to {} bytes: {}", path_, size, std::strerror(errno));
}

void AtomicFileWriter::write_at(uint64_t offset, const void* data, size_t n) {
  if (std::fflush(f_) != 0) fail(ErrorKind::Io, "{}: write failed: {}", path_, std::strerror(errno));
  const auto* p = static_cast<const uint8_t*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(::fileno(f_), p, n, static_cast<off_t>(offset));
    if (w <= 0) fail(ErrorKind::Io, "{}: write failed at byte {}: {}", path_, offset, std::strerror(errno));
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

std::string read_text_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(ErrorKind::Io, "{}: cannot open", path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFileWriter f(path);
  f.write(bytes);
  f.commit();
}

void release_mapped_pages(const void* p, size_t n) {
  static const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + page - 1) & ~(page - 1);  // whole pages only
  const uintptr_t end = (reinterpret_cast<uintptr_t>(p) + n) & ~(page - 1);
  // MADV_PAGEOUT (Linux 5.4) reclaims the pages but keeps their contents, so it is also
  // harmless on heap memory (synthetic models); older kernels ignore the unknown advice.
#ifndef MADV_PAGEOUT
#define MADV_PAGEOUT 21
#endif
  if (end > begin) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);
}

}  // namespace lowbit

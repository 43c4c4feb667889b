// Read-only memory-mapped files, and output files that appear only when complete.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace lowbit {

// A whole file mapped read-only. Move-only; unmapped on destruction.
// Tells the kernel the pages under [p, p + n) will not be needed soon, so they leave this
// process's resident set; their contents are kept (file pages are read again if touched).
// Used after a streamed tensor is processed, so peak RSS stays near one tensor.
void release_mapped_pages(const void* p, size_t n);

class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Writes to "<path>.tmp.<pid>" and renames onto `path` in commit(). If the object is
// destroyed without commit() (an exception unwound past it), the temporary is removed,
// so a failed run never leaves a half-written output.
class AtomicFileWriter {
 public:
  explicit AtomicFileWriter(std::string path);
  ~AtomicFileWriter();
  AtomicFileWriter(const AtomicFileWriter&) = delete;
  AtomicFileWriter& operator=(const AtomicFileWriter&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void pad_to(uint64_t alignment);  // zero bytes up to the next multiple of `alignment`
  uint64_t offset() const { return offset_; }
  // Positional writes, in any order, into a file of `size` bytes (zeros where nothing is written).
  void resize(uint64_t size);
  void write_at(uint64_t offset, const void* data, size_t n);
  void commit();

 private:
  std::string path_, tmp_path_;
  std::FILE* f_ = nullptr;
  uint64_t offset_ = 0;
  bool committed_ = false;
};

std::string read_text_file(const std::string& path);
// Writes `bytes` as the whole of `path` through an AtomicFileWriter (temp file, then rename).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace lowbit

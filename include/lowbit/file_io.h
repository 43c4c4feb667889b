// Read-only memory-mapped files, and output files that appear only when complete and never
// replace an input.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

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
  std::pair<uint64_t, uint64_t> input_id_{};  // device, inode: no output replaces it meanwhile
};

// Fails (naming the path) when `path` cannot be an output: it names a file this process
// reads (a live MappedFile) or one of `inputs` (paths the user gave, checked before they are
// opened), or an existing directory, or its directory
// does not exist. AtomicFileWriter checks it too; commands call it first so that they fail
// before the work.
void check_output_path(const std::string& path, const std::vector<std::string>& inputs = {});
// The same for an output directory, which must be absent or empty.
void check_output_directory(const std::string& path, const std::vector<std::string>& inputs = {});

// Writes to "<path>.tmp.<pid>" and renames onto `path` in commit(). If the object is
// destroyed without commit() (an exception unwound past it), the temporary is removed,
// so a failed run never leaves a half-written output; a signal removes it as well
// (clean_up_outputs_on_signals), and the temporaries of dead processes for the same path
// are removed when a new writer starts.
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
  int cleanup_slot_ = -1;
};

// An output directory built as "<path>.lowbit-tmp-<pid>" beside its final place and renamed
// there in commit(); removed (with the files made by file()) unless committed, also on a
// signal.
class TemporaryDirectory {
 public:
  explicit TemporaryDirectory(std::string path);  // path: absent or an empty directory
  ~TemporaryDirectory();
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  // The path of `name` inside the temporary directory, to be written by the caller.
  std::string file(const std::string& name);
  void commit();

 private:
  std::string path_, tmp_path_;
  std::vector<int> cleanup_slots_;
  bool committed_ = false;
};

// Installs SIGINT, SIGTERM and SIGHUP handlers that delete every unfinished output (the
// temporaries of live AtomicFileWriters and TemporaryDirectorys), then end the process by
// the signal. With `stop` given, the first signal only sets *stop (a job polling it stops
// at its next step and unwinds, removing its outputs itself); a second one cleans up and
// ends the process.
void clean_up_outputs_on_signals(std::atomic<bool>* stop = nullptr);

// Size limits of whole-file reads; larger files are refused, naming the file.
inline constexpr uint64_t kMaxMetadataBytes = uint64_t(256) << 20;  // JSON, tokenizers, recipes
inline constexpr uint64_t kMaxTextBytes = uint64_t(4) << 30;        // evaluation/calibration text

// The whole of a regular file of at most `max_bytes` (a FIFO, a device or a directory is an
// error, and does not block).
std::string read_text_file(const std::string& path, uint64_t max_bytes = kMaxTextBytes);
// Writes `bytes` as the whole of `path` through an AtomicFileWriter (temp file, then rename).
void write_file_atomic(const std::string& path, std::string_view bytes);

}  // namespace lowbit

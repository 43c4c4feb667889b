// Fuzz helper: the file parsers read from paths (they mmap or fopen), so each input is written
// to a file in a per-process scratch directory (under /dev/shm when it exists). The directory is
// emptied before every input, so no file of an earlier input can change how this one parses,
// and removed when the process exits (the static object's destructor runs on exit(), which is
// how libFuzzer ends a run). A crash skips that; the next fuzz process removes the directories
// of processes that no longer exist.
#pragma once

#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <string>
#include <string_view>

namespace fuzz {

class ScratchDir {
 public:
  static ScratchDir& get() {
    static ScratchDir dir;
    return dir;
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  const std::string& path() const { return dir_; }

  // Removes every file of the previous input.
  void clear() {
    std::error_code ec;
    for (const auto& e : std::filesystem::directory_iterator(dir_, ec))
      std::filesystem::remove_all(e.path(), ec);
  }

  // Writes `size` bytes to `name` in the directory and returns the file's path.
  std::string write(const std::string& name, const void* data, size_t size) {
    const std::string p = dir_ + "/" + name;
    std::FILE* f = std::fopen(p.c_str(), "wb");
    if (!f || (size && std::fwrite(data, 1, size, f) != size) || std::fclose(f) != 0) {
      std::fprintf(stderr, "fuzz: cannot write %s: %s\n", p.c_str(), std::strerror(errno));
      std::abort();  // the harness cannot run; not a finding in the library
    }
    return p;
  }
  std::string write(const std::string& name, std::string_view bytes) {
    return write(name, bytes.data(), bytes.size());
  }

 private:
  ScratchDir() {
    namespace fs = std::filesystem;
    const fs::path base =
        fs::is_directory("/dev/shm") ? fs::path("/dev/shm") : fs::temp_directory_path();
    dir_ = (base / ("lowbit-fuzz-" + std::to_string(getpid()))).string();
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(base, ec)) {  // left by crashed processes
      const std::string name = e.path().filename().string();
      if (name.rfind("lowbit-fuzz-", 0) != 0 || !e.is_directory(ec)) continue;
      const long pid = std::strtol(name.c_str() + 12, nullptr, 10);
      if (pid > 0 && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH)
        fs::remove_all(e.path(), ec);
    }
    fs::remove_all(dir_, ec);  // a directory left by an earlier process with the same pid
    if (!fs::create_directories(dir_, ec)) {
      std::fprintf(stderr, "fuzz: cannot create %s\n", dir_.c_str());
      std::abort();
    }
  }
  std::string dir_;
};

// The usual case: one input, one file. Empties the scratch directory first.
inline std::string write_input(const uint8_t* data, size_t size, const std::string& name) {
  ScratchDir& d = ScratchDir::get();
  d.clear();
  return d.write(name, data, size);
}

// Reads every byte of a tensor the parser vouched for, so ASan sees any view that points
// outside its file.
inline uint64_t touch(const uint8_t* data, uint64_t n) {
  uint64_t sum = 0;
  for (uint64_t i = 0; i < n; ++i) sum += data[i];
  return sum;
}

// The error an input was rejected with, printed when LOWBIT_FUZZ_VERBOSE is set (to check
// that a seed parses, or why not: fuzz_<target> -runs=0 corpus/<target>).
inline void rejected(const std::exception& e) {
  static const bool verbose = std::getenv("LOWBIT_FUZZ_VERBOSE") != nullptr;
  if (verbose) std::fprintf(stderr, "rejected: %s\n", e.what());
}

}  // namespace fuzz

#include "core/output_guard.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <utility>

#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace lowbit {
namespace output_guard {
namespace {

namespace fs = std::filesystem;

// Files open for reading now (device, inode), with a count of the readers.
std::mutex inputs_mutex;
std::map<FileId, int>& inputs() {
  static std::map<FileId, int> s;
  return s;
}

// Temporaries, as strdup'ed paths a signal handler can read without locks or allocation.
constexpr int kSlots = 512;
std::atomic<char*> temp_files[kSlots], temp_dirs[kSlots];
std::atomic<bool>* stop_flag = nullptr;

void delete_temporaries(int sig) {
  if (stop_flag && !stop_flag->exchange(true)) return;  // the first: the job stops itself
  for (auto& p : temp_files)
    if (const char* s = p.load()) ::unlink(s);
  for (auto& p : temp_dirs)
    if (const char* s = p.load()) ::rmdir(s);
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

bool process_is_gone(const std::string& digits) {
  if (digits.empty() || digits.size() > 9 ||
      digits.find_first_not_of("0123456789") != std::string::npos)
    return false;
  const pid_t pid = static_cast<pid_t>(std::stol(digits));
  return pid != ::getpid() && ::kill(pid, 0) != 0 && errno == ESRCH;
}

}  // namespace

InputFile open_input_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) fail(ErrorKind::Io, "{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorKind::Io, "{}: not a regular file", path);
  }
  return {fd, static_cast<uint64_t>(st.st_size), {uint64_t(st.st_dev), uint64_t(st.st_ino)}};
}

void remember_input(const FileId& id) {
  std::lock_guard<std::mutex> lock(inputs_mutex);
  ++inputs()[id];
}

void forget_input(const FileId& id) {
  std::lock_guard<std::mutex> lock(inputs_mutex);
  auto it = inputs().find(id);
  if (it != inputs().end() && --it->second == 0) inputs().erase(it);
}

bool is_input(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  std::lock_guard<std::mutex> lock(inputs_mutex);
  return inputs().count({uint64_t(st.st_dev), uint64_t(st.st_ino)}) > 0;
}

int remember_temporary(const std::string& path, bool is_directory) {
  auto& slots = is_directory ? temp_dirs : temp_files;
  char* copy = ::strdup(path.c_str());
  for (int i = 0; i < kSlots; ++i) {
    char* empty = nullptr;
    if (slots[i].compare_exchange_strong(empty, copy)) return is_directory ? kSlots + i : i;
  }
  std::free(copy);
  return -1;
}

void forget(int slot) {
  if (slot < 0) return;
  auto& p = slot >= kSlots ? temp_dirs[slot - kSlots] : temp_files[slot];
  std::free(p.exchange(nullptr));
}

void remove_stale_temporaries(const std::string& path) {
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string name = p.filename().string();
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string n = it->path().filename().string();
    for (const std::string tag : {".tmp.", ".lowbit-tmp-"})
      if (n.size() > name.size() + tag.size() && n.compare(0, name.size(), name) == 0 &&
          n.compare(name.size(), tag.size(), tag) == 0 &&
          process_is_gone(n.substr(name.size() + tag.size()))) {
        std::error_code ignored;
        fs::remove_all(it->path(), ignored);
      }
  }
}

}  // namespace output_guard

namespace {

// What every output needs: a path, an existing directory, and no input of the same name.
void check_output_place(const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  if (path.empty()) fail(ErrorKind::Argument, "the output path is empty");
  const fs::path p(path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    fail(ErrorKind::Io, "{}: cannot create output: directory {} does not exist", path,
         dir.string());
  for (const std::string& in : inputs)
    if (fs::equivalent(p, in, ec))
      fail(ErrorKind::Argument, "{}: the output is the input {}; choose another output path", path,
           in);
}

}  // namespace

void check_output_path(const std::string& path, const std::vector<std::string>& inputs) {
  check_output_place(path, inputs);
  if (output_guard::is_input(path))
    fail(ErrorKind::Argument, "{}: the output is a file this run reads; choose another output path",
         path);
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec))
    fail(ErrorKind::Io, "{}: cannot create output: it is a directory", path);
}

void check_output_directory(const std::string& path, const std::vector<std::string>& inputs) {
  namespace fs = std::filesystem;
  check_output_place(path, inputs);
  std::error_code ec;
  if (fs::exists(path, ec) && !(fs::is_directory(path, ec) && fs::is_empty(path, ec)))
    fail(ErrorKind::Io, "{}: output exists and is not an empty directory", path);
}

void clean_up_outputs_on_signals(std::atomic<bool>* stop) {
  output_guard::stop_flag = stop;
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) std::signal(sig, output_guard::delete_temporaries);
}

}  // namespace lowbit

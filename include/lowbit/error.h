// Typed errors for bad user input. The library throws; only the CLI decides to exit.
// Every message names the file, tensor or key involved and, where it applies, the
// expected versus the actual value.
#pragma once

#include <fmt/format.h>

#include <stdexcept>
#include <string>

namespace lowbit {

enum class ErrorKind {
  Io,          // cannot open/read/write a file
  Format,      // a file's bytes do not follow its format (truncated, lying header, ...)
  Unsupported, // valid input that lowbit does not handle (unknown dtype, architecture)
  Argument,    // a bad flag or parameter value
  Cancelled,   // the caller's observer asked to stop (lowbit/observer.h)
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
  ErrorKind kind() const { return kind_; }

 private:
  ErrorKind kind_;
};

template <typename... Args>
[[noreturn]] void fail(ErrorKind kind, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(kind, fmt::format(f, std::forward<Args>(args)...));
}

// Overflow-checked arithmetic for sizes read from untrusted files.
bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out);
bool add_overflows(uint64_t a, uint64_t b, uint64_t* out);

}  // namespace lowbit

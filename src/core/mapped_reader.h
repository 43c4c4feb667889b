// Bounded reads over a mapped file for lowbit's small binary formats (checkpoints, the
// legacy imatrix): each read names what it wanted, so a short file fails with
// "<path>: truncated while reading <what>".
#pragma once

#include <cstdint>
#include <cstring>

#include "lowbit/error.h"
#include "lowbit/file_io.h"

namespace lowbit {

struct MappedReader {
  const MappedFile& f;
  size_t pos = 0;

  const uint8_t* take(size_t n, const char* what) {
    if (n > f.size() - pos)
      fail(ErrorKind::Format, "{}: truncated while reading {}", f.path(), what);
    const uint8_t* p = f.data() + pos;
    pos += n;
    return p;
  }
  template <typename T>
  T get(const char* what) {
    T v;
    std::memcpy(&v, take(sizeof v, what), sizeof v);
    return v;
  }
  void read_into(void* out, size_t n, const char* what) { std::memcpy(out, take(n, what), n); }
};

}  // namespace lowbit

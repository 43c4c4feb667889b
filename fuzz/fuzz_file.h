// Fuzz helper: the file parsers read from a path (they mmap), so each input is written
// to a per-process file in /dev/shm first.
#pragma once

#include <unistd.h>

#include <cstdio>
#include <string>

inline std::string fuzz_write_input(const uint8_t* data, size_t size, const char* ext) {
  static const std::string path = "/dev/shm/lowbit-fuzz-" + std::to_string(getpid()) + ext;
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

// Splits [0, n) into contiguous ranges, one per thread, and runs fn(begin, end) on each.
// The calling thread takes the first range (and any whose thread could not be started).
// Exceptions from workers are rethrown here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
#include <system_error>
#include <thread>
#include <vector>

#include "lowbit/threads.h"

namespace lowbit {


template <typename Fn>
void parallel_for(uint64_t n, int n_threads, Fn fn) {
  const uint64_t parts = std::min<uint64_t>(std::max(1, n_threads), std::max<uint64_t>(n, 1));
  std::vector<std::exception_ptr> errors(parts);
  auto run = [&](uint64_t p) {
    try {
      fn(n * p / parts, n * (p + 1) / parts);
    } catch (...) {
      errors[p] = std::current_exception();
    }
  };
  std::vector<std::thread> workers;
  uint64_t started = 1;
  try {
    for (; started < parts; ++started) workers.emplace_back(run, started);
  } catch (const std::system_error&) {  // out of threads: this one runs the parts not started
  }
  run(0);
  for (uint64_t p = started; p < parts; ++p) run(p);
  for (auto& w : workers) w.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace lowbit

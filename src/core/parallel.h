// Splits [0, n) into contiguous ranges, one per thread, and runs fn(begin, end) on each.
// The calling thread takes the first range. Exceptions from workers are rethrown here.
#pragma once

#include <algorithm>
#include <cstdint>
#include <exception>
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
  for (uint64_t p = 1; p < parts; ++p) workers.emplace_back(run, p);
  run(0);
  for (auto& w : workers) w.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace lowbit

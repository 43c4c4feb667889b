// The one thread-count convention of the library and its users: 0 means every core, and
// no more than max_threads() run (more than a few per core only costs memory and switches).
#pragma once

#include <algorithm>
#include <thread>

namespace lowbit {

inline int max_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()) * 4);
}

inline int resolve_threads(int n_threads) {
  return n_threads > 0 ? std::min(n_threads, max_threads())
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace lowbit

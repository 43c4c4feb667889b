// The one thread-count convention of the library and its users: 0 means every core, and
// no more than max_threads() run (more than a few per core only costs memory and switches).
#pragma once

#include <algorithm>
#include <thread>

#include "lowbit/distributed.h"

namespace lowbit {

inline int max_threads() {
  return static_cast<int>(std::max(1u, std::thread::hardware_concurrency()) * 4);
}

// 0: the cores shared among the job's ranks on this machine (lowbit/distributed.h).
inline int resolve_threads(int n_threads) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return n_threads > 0 ? std::min(n_threads, max_threads())
                       : std::max(1, cores / dist::local_ranks());
}

}  // namespace lowbit

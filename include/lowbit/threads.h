// The one thread-count convention of the library and its users: 0 means every core.
#pragma once

#include <algorithm>
#include <thread>

namespace lowbit {

inline int resolve_threads(int n_threads) {
  return n_threads > 0 ? n_threads
                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
}

}  // namespace lowbit

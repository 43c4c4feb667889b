// Sums behind the "relative RMS error" that the quantize reports print: ||x - y|| / ||x||
// for a weight x and its reconstruction y, accumulated over rows or threads.
#pragma once

#include <cmath>
#include <cstddef>

namespace lowbit {

struct ErrorSums {
  double err = 0, energy = 0;  // Σ (x - y)², Σ x²

  void add(const float* x, const float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) {
      const double xi = x[i], d = xi - y[i];
      err += d * d;
      energy += xi * xi;
    }
  }
  void add(const ErrorSums& o) {
    err += o.err;
    energy += o.energy;
  }
  double relative_rms() const { return energy > 0 ? std::sqrt(err / energy) : 0.0; }
};

}  // namespace lowbit

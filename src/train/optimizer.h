// The optimisers the learned methods share: Adam (Kingma & Ba 2015) and signed gradient
// descent (AutoRound). One object per parameter tensor; step() moves p against g in place.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace lowbit::train {

class Adam {
 public:
  // The moments and the step count: everything a resumed run needs to continue exactly.
  struct State {
    std::vector<float> m, v;
    int t = 0;
  };

  explicit Adam(size_t n, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8)
      : b1_(b1), b2_(b2), eps_(eps) {
    s_.m.assign(n, 0.0f);
    s_.v.assign(n, 0.0f);
  }
  void step(float* p, const float* g, double lr) {
    ++s_.t;
    const double c1 = 1 - std::pow(b1_, s_.t), c2 = 1 - std::pow(b2_, s_.t);
    std::vector<float>&m = s_.m, &v = s_.v;
    for (size_t i = 0; i < m.size(); ++i) {
      m[i] = float(b1_ * m[i] + (1 - b1_) * g[i]);
      v[i] = float(b2_ * v[i] + (1 - b2_) * double(g[i]) * g[i]);
      p[i] -= float(lr * (m[i] / c1) / (std::sqrt(v[i] / c2) + eps_));
    }
  }
  State& state() { return s_; }

 private:
  State s_;
  double b1_, b2_, eps_;
};

// p -= lr · sign(g): every parameter moves by the same step whatever the gradient's size.
inline void sign_step(float* p, const float* g, size_t n, double lr) {
  for (size_t i = 0; i < n; ++i) p[i] -= float(g[i] > 0 ? lr : g[i] < 0 ? -lr : 0.0);
}

}  // namespace lowbit::train

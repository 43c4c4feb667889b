// The optimisers the learned methods share: Adam (Kingma & Ba 2015) and signed gradient
// descent (AutoRound). One object per parameter tensor; step() moves p against g in place.
#pragma once

#include <cmath>
#include <cstddef>
#include <vector>

namespace lowbit::train {

class Adam {
 public:
  explicit Adam(size_t n, double b1 = 0.9, double b2 = 0.999, double eps = 1e-8)
      : m_(n, 0.0f), v_(n, 0.0f), b1_(b1), b2_(b2), eps_(eps) {}
  void step(float* p, const float* g, double lr) {
    ++t_;
    const double c1 = 1 - std::pow(b1_, t_), c2 = 1 - std::pow(b2_, t_);
    for (size_t i = 0; i < m_.size(); ++i) {
      m_[i] = float(b1_ * m_[i] + (1 - b1_) * g[i]);
      v_[i] = float(b2_ * v_[i] + (1 - b2_) * double(g[i]) * g[i]);
      p[i] -= float(lr * (m_[i] / c1) / (std::sqrt(v_[i] / c2) + eps_));
    }
  }

 private:
  std::vector<float> m_, v_;
  double b1_, b2_, eps_;
  int t_ = 0;
};

// p -= lr · sign(g): every parameter moves by the same step whatever the gradient's size.
inline void sign_step(float* p, const float* g, size_t n, double lr) {
  for (size_t i = 0; i < n; ++i) p[i] -= float(g[i] > 0 ? lr : g[i] < 0 ? -lr : 0.0);
}

}  // namespace lowbit::train

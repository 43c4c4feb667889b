// The teacher's top-k distributions and the loss against them (teacher_top_k.h).
#include "train/teacher_top_k.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowbit/error.h"
#include "train/block_ops.h"

namespace lowbit::train {

TopKDistribution top_k_of(const float* logits, size_t n, size_t vocab, size_t k,
                          double temperature) {
  if (k == 0 || k > vocab)
    fail(ErrorKind::Argument, "teacher top-k {}: must be 1..{} (the vocabulary)", k, vocab);
  TopKDistribution d;
  d.n = n, d.k = k;
  d.token.resize(n * k), d.logp.resize(n * k), d.tail.resize(n);
  std::vector<double> logp;
  std::vector<int32_t> order(vocab);
  for (size_t t = 0; t < n; ++t) {
    log_softmax(logits + t * vocab, vocab, temperature, logp);
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k, order.end(), [&](int32_t a, int32_t b) {
      return logp[a] > logp[b] || (logp[a] == logp[b] && a < b);
    });
    double rest = 0;
    for (size_t i = k; i < vocab; ++i) rest += std::exp(logp[order[i]]);
    for (size_t i = 0; i < k; ++i)
      d.token[t * k + i] = order[i], d.logp[t * k + i] = float(logp[order[i]]);
    d.tail[t] = rest;
  }
  return d;
}

template <class Real>
double kd_loss_top_k(const Real* student, const TopKDistribution& teacher, size_t vocab,
                     double temperature, Real* dstudent) {
  const double tau = temperature;
  const size_t n = teacher.n, k = teacher.k;
  std::vector<double> logq;
  std::vector<char> in_k(vocab);
  double loss = 0;
  for (size_t t = 0; t < n; ++t) {
    log_softmax(student + t * vocab, vocab, tau, logq);
    std::fill(in_k.begin(), in_k.end(), 0);
    for (size_t i = 0; i < k; ++i) in_k[teacher.token[t * k + i]] = 1;
    double q_rest = 0;
    for (size_t j = 0; j < vocab; ++j)
      if (!in_k[j]) q_rest += std::exp(logq[j]);
    const double p_rest = teacher.tail[t];
    // the bucket's share of each token outside K, as the student spreads them
    const double spread = p_rest > 0 && q_rest > 0 ? p_rest / q_rest : 0;
    if (p_rest > 0) loss += p_rest * (std::log(p_rest) - std::log(q_rest));
    Real* d = dstudent + t * vocab;
    for (size_t j = 0; j < vocab; ++j)
      if (!in_k[j]) d[j] = Real(tau * (std::exp(logq[j]) * (1 - spread)) / double(n));
    for (size_t i = 0; i < k; ++i) {
      const size_t j = size_t(teacher.token[t * k + i]);
      const double lp = teacher.logp[t * k + i], p = std::exp(lp);
      loss += p * (lp - logq[j]);
      d[j] = Real(tau * (std::exp(logq[j]) - p) / double(n));
    }
  }
  return loss / double(n);
}

template double kd_loss_top_k<float>(const float*, const TopKDistribution&, size_t, double, float*);
template double kd_loss_top_k<double>(const double*, const TopKDistribution&, size_t, double,
                                      double*);

}  // namespace lowbit::train

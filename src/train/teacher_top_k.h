// The teacher's next-token distributions kept as their K most likely tokens per position and
// the rest as one bucket (DistillOptions::teacher_top_k): 8·K bytes per position instead of
// the 4·V of the logits, so a window's teacher pass runs once per run instead of once per
// visit.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lowbit::train {

struct TopKDistribution {
  size_t n = 0, k = 0;
  std::vector<int32_t> token;  // [n, k], most likely first (ties: the lower id)
  std::vector<float> logp;     // [n, k] log-probabilities at the temperature
  std::vector<double> tail;    // [n] the probability of every other token together
};

// The top k of softmax(logits / τ) at each of n positions (logits [n, vocab]; k ≤ vocab).
TopKDistribution top_k_of(const float* logits, size_t n, size_t vocab, size_t k,
                          double temperature);

// kd_loss (lowbit/model_grad.h) against a TopKDistribution: per position,
// Σ_(j in K) p_j log(p_j / q_j) + p_rest log(p_rest / q_rest), where q_rest is the student's
// probability of the tokens outside K; the mean over positions, returned. dstudent [n, vocab]
// receives its gradient times τ²: τ(q_j − p_j)/n inside K and τ(q_j − p_rest·q_j/q_rest)/n
// outside (the bucket's mass spread as the student spreads its own). With k = vocab this is
// kd_loss.
template <class Real>
double kd_loss_top_k(const Real* student, const TopKDistribution& teacher, size_t vocab,
                     double temperature, Real* dstudent);

}  // namespace lowbit::train

// Learned rounding of one block (lowbit/learned.h): the training loop, and one small class
// per method that turns its parameters into weights and the weights' gradient into a step.
#include <algorithm>
#include <cmath>
#include <memory>
#include <numeric>
#include <random>

#include "lowbit/error.h"
#include "lowbit/learned.h"
#include "lowbit/quant.h"
#include "train/grid_tensor.h"
#include "train/optimizer.h"

namespace lowbit {

const char* learned_method_name(LearnedMethod m) {
  switch (m) {
    case LearnedMethod::AdaRound:
      return "adaround";
    case LearnedMethod::AdaQuant:
      return "adaquant";
    case LearnedMethod::AutoRound:
      return "autoround";
  }
  return "?";
}

// Measured on tinyllm-8m Q2_K (docs/QUANTIZATION.md, "Learned rounding").
LearnedOptions resolved(const LearnedOptions& o) {
  LearnedOptions r = o;
  if (r.steps <= 0) r.steps = 200;
  if (r.batch <= 0) r.batch = 4;
  if (r.lr <= 0) {
    switch (o.method) {
      case LearnedMethod::AdaRound:
        r.lr = 0.1;
        break;
      case LearnedMethod::AdaQuant:
        r.lr = 3e-3;
        break;
      case LearnedMethod::AutoRound:
        r.lr = 1.0 / r.steps;
        break;
    }
  }
  return r;
}

namespace {

using train::GridTensor;

// One linear's learned parameters.
class Learner {
 public:
  virtual ~Learner() = default;
  // The weights the forward pass uses at this step (soft or hard), [rows, cols].
  virtual void weights(std::vector<float>& w) = 0;
  // One optimiser step from ∂L/∂w (of the weights last returned). `loss0` scales AdaRound's
  // regulariser, `step` / `steps` anneal it.
  virtual void update(const std::vector<float>& grad, int step, int steps, double loss0) = 0;
  virtual void keep_best() {}
  // The bytes to store.
  virtual std::vector<uint8_t> result() = 0;
};

// Codes round(position + v) on the start grid, v in [-0.5, 0.5], by signed gradient descent.
class AutoRoundLearner final : public Learner {
 public:
  AutoRoundLearner(const LearnedLinear& l, double lr)
      : grid_(l.type, l.bytes, l.rows, l.cols), lr_(lr) {
    const std::vector<int> start = grid_.start_codes();
    base_.resize(start.size());
    for (size_t i = 0; i < start.size(); ++i)  // exactly the start codes at v = 0
      base_[i] = float(start[i]) +
                 std::clamp(grid_.position(i, l.position[i]) - float(start[i]), -0.49f, 0.49f);
    v_.assign(base_.size(), 0.0f);
    best_ = v_;
  }
  void weights(std::vector<float>& w) override {
    w.resize(v_.size());
    for (size_t i = 0; i < v_.size(); ++i) w[i] = grid_.value(i, code(i, v_[i]));
  }
  void update(const std::vector<float>& grad, int, int, double) override {
    std::vector<float> g(v_.size());
    for (size_t i = 0; i < v_.size(); ++i)
      g[i] = grad[i] * grid_.slope(i, code(i, v_[i]));  // straight through round
    train::sign_step(v_.data(), g.data(), g.size(), lr_);
    for (float& v : v_) v = std::clamp(v, -0.5f, 0.5f);
  }
  void keep_best() override { best_ = v_; }
  std::vector<uint8_t> result() override {
    std::vector<int> codes(v_.size());
    for (size_t i = 0; i < v_.size(); ++i) codes[i] = int(code(i, best_[i]));
    return grid_.encode(codes);
  }

 private:
  float code(size_t i, float v) const {
    return std::clamp(std::nearbyint(base_[i] + v), 0.0f, float(grid_.n_codes() - 1));
  }
  GridTensor grid_;
  double lr_;
  std::vector<float> base_, v_, best_;
};

// Codes floor(position) + h(V), h the rectified sigmoid; hard codes take h ≥ ½ (V ≥ 0).
class AdaRoundLearner final : public Learner {
  static constexpr float kZeta = 1.1f, kGamma = -0.1f;

 public:
  AdaRoundLearner(const LearnedLinear& l, double lr, double reg)
      : grid_(l.type, l.bytes, l.rows, l.cols), adam_(l.rows * l.cols), lr_(lr), reg_(reg) {
    const std::vector<int> start = grid_.start_codes();
    floor_.resize(start.size()), v_.resize(start.size());
    const float top = float(grid_.n_codes() - 2);
    for (size_t i = 0; i < start.size(); ++i) {
      // where the start put it, between its start code and the neighbour on its side
      const float p = float(start[i]) +
                      std::clamp(grid_.position(i, l.position[i]) - float(start[i]), -0.49f, 0.49f);
      floor_[i] = std::clamp(std::floor(p), 0.0f, top);
      const float frac = std::clamp(p - floor_[i], 0.01f, 0.99f);
      const float s = (frac - kGamma) / (kZeta - kGamma);  // h(V) = frac
      v_[i] = std::log(s / (1 - s));
    }
  }
  void weights(std::vector<float>& w) override {
    w.resize(v_.size());
    for (size_t i = 0; i < v_.size(); ++i) w[i] = grid_.value(i, floor_[i] + h(v_[i]));
  }
  void update(const std::vector<float>& grad, int step, int steps, double loss0) override {
    // warm-up: the first fifth of the steps without the regulariser, then β from 20 to 2
    const double warm = 0.2 * steps, t = std::max(0.0, (step - warm) / std::max(1.0, steps - warm));
    const bool regular = step >= warm;
    const double beta = 20 - 18 * t, lambda = reg_ * loss0 / double(v_.size());
    std::vector<float> g(v_.size());
    for (size_t i = 0; i < v_.size(); ++i) {
      const float s = 1 / (1 + std::exp(-v_[i])), raw = s * (kZeta - kGamma) + kGamma;
      if (raw <= 0 || raw >= 1) {  // clipped: no gradient through h
        g[i] = 0;
        continue;
      }
      double dh = grad[i] * grid_.slope(i, floor_[i]);
      if (regular) {  // ∂/∂h of λ (1 - |2h - 1|^β)
        const double d = 2 * raw - 1;
        dh += lambda * -beta * std::pow(std::fabs(d), beta - 1) * 2 * (d > 0 ? 1 : -1);
      }
      g[i] = float(dh * s * (1 - s) * (kZeta - kGamma));
    }
    adam_.step(v_.data(), g.data(), lr_);
  }
  std::vector<uint8_t> result() override {
    std::vector<int> codes(v_.size());
    for (size_t i = 0; i < v_.size(); ++i) codes[i] = int(floor_[i]) + (h(v_[i]) >= 0.5f ? 1 : 0);
    return grid_.encode(codes);
  }

 private:
  static float h(float v) {
    return std::clamp(1 / (1 + std::exp(-v)) * (kZeta - kGamma) + kGamma, 0.0f, 1.0f);
  }
  GridTensor grid_;
  train::Adam adam_;
  double lr_, reg_;
  std::vector<float> floor_, v_;
};

// The weights themselves, quantized by the type's own quantizer at every step.
class AdaQuantLearner final : public Learner {
 public:
  AdaQuantLearner(const LearnedLinear& l, double lr, int n_threads)
      : l_(l), w_(l.position), adam_(w_.size()), n_threads_(n_threads) {
    double sq = 0;
    for (float x : w_) sq += double(x) * x;
    lr_ =
        lr * std::sqrt(sq / std::max<size_t>(1, w_.size()));  // steps relative to the weights' rms
    best_ = w_;
  }
  void weights(std::vector<float>& w) override {
    const std::vector<uint8_t> q = quantize(w_);
    w.resize(w_.size());
    dequantize_values(l_.type, q.data(), w.size(), w.data());
  }
  void update(const std::vector<float>& grad, int, int, double) override {
    adam_.step(w_.data(), grad.data(), lr_);
  }
  void keep_best() override { best_ = w_; }
  std::vector<uint8_t> result() override { return quantize(best_); }

 private:
  std::vector<uint8_t> quantize(const std::vector<float>& w) const {
    std::vector<uint8_t> q(l_.bytes.size());
    const float* imp = l_.importance.empty() ? nullptr : l_.importance.data();
    quantize_rows(l_.type, w.data(), l_.rows, l_.cols, imp, n_threads_, q.data());
    return q;
  }
  const LearnedLinear& l_;
  std::vector<float> w_, best_;
  train::Adam adam_;
  double lr_ = 0;
  int n_threads_;
};

// Mean squared error of the block's output over `windows` (every window when empty).
double block_loss(const train::BlockShape& s, const train::BlockWeights<float>& w,
                  const std::vector<std::vector<float>>& inputs,
                  const std::vector<std::vector<float>>& targets, size_t n_ctx) {
  std::vector<float> y(n_ctx * s.n_embd);
  double sum = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    train::block_forward(s, w, inputs[i].data(), n_ctx, y.data());
    for (size_t j = 0; j < y.size(); ++j)
      sum += double(y[j] - targets[i][j]) * (y[j] - targets[i][j]);
  }
  return sum / double(inputs.size() * y.size());
}

}  // namespace

BlockLearnReport learn_block_rounding(const train::BlockShape& s, train::BlockWeights<float> block,
                                      std::vector<LearnedLinear>& linears,
                                      const std::vector<std::vector<float>>& inputs,
                                      const std::vector<std::vector<float>>& targets, size_t n_ctx,
                                      const LearnedOptions& options, const std::string& label,
                                      int n_threads,
                                      const std::function<void(int, int, double)>& on_step) {
  const LearnedOptions o = resolved(options);
  if (inputs.empty() || inputs.size() != targets.size())
    fail(ErrorKind::Argument, "learned rounding: {} input windows and {} targets", inputs.size(),
         targets.size());
  auto install = [&](const LearnedLinear& l, const std::vector<uint8_t>& bytes) {
    std::vector<float>& w = *block.linear(l.index);
    w.resize(l.rows * l.cols);
    dequantize_values(l.type, bytes.data(), w.size(), w.data());
  };
  for (const LearnedLinear& l : linears) install(l, l.bytes);
  BlockLearnReport r;
  r.loss_start = block_loss(s, block, inputs, targets, n_ctx);
  if (!std::isfinite(r.loss_start))
    fail(ErrorKind::Argument, "learned rounding: {}: the start loss is {}", label, r.loss_start);

  std::vector<std::unique_ptr<Learner>> learners;
  for (const LearnedLinear& l : linears) {
    switch (o.method) {
      case LearnedMethod::AutoRound:
        learners.push_back(std::make_unique<AutoRoundLearner>(l, o.lr));
        break;
      case LearnedMethod::AdaRound:
        learners.push_back(std::make_unique<AdaRoundLearner>(l, o.lr, o.reg));
        break;
      case LearnedMethod::AdaQuant:
        learners.push_back(std::make_unique<AdaQuantLearner>(l, o.lr, n_threads));
        break;
    }
  }
  train::BlockWeights<float> grad;
  train::BlockCache<float> cache;
  const size_t D = s.n_embd, batch = std::min<size_t>(o.batch, inputs.size());
  std::vector<float> y(n_ctx * D), dy(n_ctx * D);
  std::vector<size_t> order(inputs.size());
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(o.seed);
  std::shuffle(order.begin(), order.end(), rng);
  double best = INFINITY;
  for (int step = 0; step < o.steps; ++step) {
    for (size_t k = 0; k < linears.size(); ++k)
      learners[k]->weights(*block.linear(linears[k].index));
    grad.zeros_like(block);
    double loss = 0;
    const double norm = 2.0 / double(batch * n_ctx * D);  // ∂ mean(e²) / ∂y = 2e / count
    for (size_t b = 0; b < batch; ++b) {
      const size_t i = order[(size_t(step) * batch + b) % order.size()];
      train::block_forward(s, block, inputs[i].data(), n_ctx, y.data(), &cache);
      for (size_t j = 0; j < y.size(); ++j) {
        const double e = double(y[j]) - targets[i][j];
        loss += e * e;
        dy[j] = float(norm * e);
      }
      train::block_backward(s, block, cache, dy.data(), grad);
    }
    loss /= double(batch * n_ctx * D);
    if (!std::isfinite(loss))
      fail(ErrorKind::Argument,
           "learned rounding: {}: the loss is {} at step {} (try a smaller learning rate)", label,
           loss, step + 1);
    if (loss < best) {  // the weights of this step: keep them if they are the best seen
      best = loss;
      for (auto& l : learners) l->keep_best();
    }
    for (size_t k = 0; k < linears.size(); ++k)
      learners[k]->update(*grad.linear(linears[k].index), step, o.steps, r.loss_start);
    if (on_step) on_step(step + 1, o.steps, loss);
  }
  std::vector<std::vector<uint8_t>> learned;
  for (size_t k = 0; k < linears.size(); ++k) {
    learned.push_back(learners[k]->result());
    install(linears[k], learned.back());
  }
  r.steps = o.steps;
  r.loss_end = r.loss_learned = block_loss(s, block, inputs, targets, n_ctx);
  if (!std::isfinite(r.loss_end))
    fail(ErrorKind::Argument, "learned rounding: {}: the final loss is {}", label, r.loss_end);
  if (r.loss_end >= r.loss_start) {
    r.kept_start = true;
    r.loss_end = r.loss_start;
  } else {
    for (size_t k = 0; k < linears.size(); ++k) linears[k].bytes = std::move(learned[k]);
  }
  return r;
}

}  // namespace lowbit

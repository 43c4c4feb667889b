// SpinQuant's learned rotations (learn_rotation, lowbit/rotation.h): Cayley steps on the
// orthogonal group with the frame gradient of train/rotation_grad.h.
#include <chrono>
#include <cmath>

#include "core/blas.h"
#include "lowbit/calibration.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/quant.h"
#include "lowbit/rotation.h"
#include "lowbit/threads.h"
#include "lowbit/topology.h"
#include "train/rotation_grad.h"

namespace lowbit {
namespace {

// r ← r·cayley(G − Gᵀ) with the generator's Frobenius norm scaled to `angle`.
void cayley_step(std::vector<double>& r, const std::vector<double>& g, size_t n, double angle,
                 int threads) {
  std::vector<double> s(n * n);
  double norm2 = 0;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      s[i * n + j] = g[i * n + j] - g[j * n + i];
      norm2 += s[i * n + j] * s[i * n + j];
    }
  if (!(norm2 > 0) || !std::isfinite(norm2)) return;
  const std::vector<double> c = train::cayley(s, n, angle / std::sqrt(norm2));
  std::vector<double> out(n * n);
  blas::dgemm(threads, CblasNoTrans, CblasNoTrans, n, n, n, 1.0, r.data(), n, c.data(), n, 0.0,
              out.data(), n);
  r.swap(out);
}

std::vector<float> narrowed(const std::vector<double>& v) {
  return std::vector<float>(v.begin(), v.end());
}

RotationMatrices narrowed(const std::vector<double>& residual,
                          const std::vector<std::vector<double>>& heads) {
  RotationMatrices r{narrowed(residual), {}};
  for (const std::vector<double>& h : heads) r.heads.push_back(narrowed(h));
  return r;
}

}  // namespace

void check_learning(const RotationOptions& o, const Model* m) {
  const RotationLearning& l = o.learn;
  if (l.steps < 0) fail(ErrorKind::Argument, "rotation learning steps {}: 0 or more", l.steps);
  if (l.steps == 0) return;
  if (o.kind == RotationKind::None)
    fail(ErrorKind::Argument,
         "a learned rotation ({} steps) starts from --rotate hadamard or random, not none",
         l.steps);
  if (!(l.lr > 0 && std::isfinite(l.lr)))
    fail(ErrorKind::Argument, "rotation learning step {}: a finite angle > 0", l.lr);
  if (!(l.ce_weight >= 0 && std::isfinite(l.ce_weight)))
    fail(ErrorKind::Argument, "rotation cross-entropy weight {}: a finite number >= 0",
         l.ce_weight);
  if (l.batch <= 0 || l.n_ctx < 2 || l.n_windows == 0)
    fail(ErrorKind::Argument,
         "rotation learning: batch {}, windows of {} tokens, {} windows: each must be at least "
         "1 (windows at least 2 tokens)",
         l.batch, l.n_ctx, l.n_windows);
  if (l.rounding.static_ranges)
    fail(ErrorKind::Argument,
         "a learned rotation rounds activations per token: static ranges (act-ranges) would "
         "change with the rotation");
  if (!m) return;
  if (!m->int8_weights.empty())
    fail(ErrorKind::Unsupported, "{}: a W8A8 checkpoint cannot be rotated", m->source);
  check_rounding(l.rounding, m->config);
  if (l.weights == DType::F32) return;
  for (const TensorView& t : m->tensors) {
    uint64_t bytes = 0;
    if (is_block_linear(t.name) && !tensor_bytes(l.weights, t.row_len(), t.n_values(), &bytes))
      fail(ErrorKind::Argument, "rotation learning weights {}: '{}' has rows of {} values",
           dtype_name(l.weights), t.name, t.row_len());
  }
}

DType rotation_weights_from_name(const std::string& name) {
  if (name == "none") return DType::F32;
  const std::optional<DType> t = dtype_from_name(name);
  if (!t || !can_quantize_to(*t) || *t == DType::F32 || *t == DType::F16 || *t == DType::BF16)
    fail(ErrorKind::Argument,
         "rotation learning weights '{}': 'none' (unrounded) or a GGUF block type (Q4_0, Q4_K, "
         "...)",
         name);
  return *t;
}

Model learn_rotation(const Model& m, const RotationOptions& o, const std::vector<int32_t>& tokens,
                     LearnedRotationReport* report) {
  check_learning(o, &m);
  const RotationLearning& l = o.learn;
  LearnedRotationReport local;
  LearnedRotationReport& rep = report ? *report : local;
  rep = {};
  const auto t0 = std::chrono::steady_clock::now();
  const int threads = resolve_threads(o.n_threads);
  RotationOptions plain = o;
  plain.learn = {};
  plain.n_threads = threads;
  // The start: the model with its norms folded (and ffn_down's online rotation), unrotated.
  RotationOptions online{RotationKind::None};
  online.ffn_down = o.ffn_down, online.n_threads = threads;
  const Model base = fold_norms(rotate_model(m, online));
  const ModelConfig& c = base.config;
  const RotationMatrices start = rotation_matrices(c, plain);
  std::vector<double> residual(start.residual.begin(), start.residual.end());
  std::vector<std::vector<double>> heads;
  for (const std::vector<float>& h : start.heads) heads.emplace_back(h.begin(), h.end());
  const auto windows = sample_windows(tokens, l.n_windows, l.n_ctx, l.seed, m.vocab.bos);
  Engine teacher(base, {threads, static_cast<uint32_t>(l.n_ctx)});
  RotationOptions apply{RotationKind::None};  // the further rotation of the folded base
  apply.n_threads = threads;
  const size_t B = static_cast<size_t>(l.batch);
  std::vector<std::vector<int32_t>> batch(B);
  std::vector<std::vector<float>> teacher_logits(B);
  for (int step = 0; step < l.steps; ++step) {
    for (size_t b = 0; b < B; ++b) {
      batch[b] = windows[(size_t(step) * B + b) % windows.size()];
      teacher.reset();
      teacher.eval(batch[b].data(), batch[b].size(), teacher_logits[b], true);
    }
    const Model rotated = rotate_model(base, narrowed(residual, heads), apply);
    train::FrameGradient g;
    const double loss = train::rotation_loss<float>(rotated, l.weights, l.rounding, batch,
                                                    teacher_logits, l.ce_weight, threads, &g);
    if (!std::isfinite(loss))
      fail(ErrorKind::Argument, "rotation learning diverged at step {} (loss {})", step + 1, loss);
    rep.losses.push_back(loss);
    // The angle decays linearly to zero over the run.
    const double angle = l.lr * (1.0 - double(step) / l.steps);
    cayley_step(residual, g.residual, c.n_embd, angle, threads);
    for (size_t layer = 0; layer < heads.size(); ++layer)
      cayley_step(heads[layer], g.heads[layer], c.head_dim, angle, threads);
    if (l.on_step && !l.on_step(step + 1, l.steps, loss))
      fail(ErrorKind::Cancelled, "rotation learning stopped at step {} of {}", step + 1, l.steps);
  }
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rotate_model(m, narrowed(residual, heads), plain);
}

}  // namespace lowbit

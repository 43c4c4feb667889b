// Knowledge distillation (lowbit/distill.h): the teacher's logits from the fp32 engine, the
// student's pass and gradient from lowbit/model_grad.h, Adam (train/optimizer.h).
#include "lowbit/distill.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <random>

#include "algo/sequential_checkpoint.h"
#include "core/parallel.h"
#include "lowbit/calibration.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/model_grad.h"
#include "train/distill_checkpoint.h"
#include "train/optimizer.h"
#include "train/scale_training.h"
#include "train/teacher_top_k.h"

namespace lowbit {

namespace {

constexpr const char* kCurveTitle = "distillation: KL(teacher || student) per step";

// What decides the weights a run ends with, besides the steps and lr (lowbit/distill.h).
uint64_t run_fingerprint(const DistillOptions& o, const std::vector<int32_t>& tokens,
                         const std::vector<std::vector<float>*>& params) {
  JobHash h;
  h.add(o.fingerprint);
  h.add(tokens.data(), tokens.size() * sizeof(int32_t));
  for (const double v :
       {double(o.batch), double(o.n_ctx), double(o.n_windows), o.temperature, double(o.seed),
        double(o.eval_every > 0), double(o.teacher_top_k), double(o.train_scales), o.ce_weight})
    h.add(&v, sizeof v);
  const ActivationRounding& r = o.rounding;
  for (const double v :
       {double(r.act_bits), double(r.act_clip), double(r.cache_type_k), double(r.cache_type_v),
        double(r.rotate_kv), double(r.static_ranges), o.range_momentum})
    h.add(&v, sizeof v);
  for (const auto& [name, type] : o.quantize_to) {
    h.add(name);
    h.add(&type, sizeof type);
  }
  for (const auto& [name, spec] : o.affine_to) {
    h.add(name);
    for (const double v : {double(spec.bits), double(spec.group), double(spec.symmetric),
                           double(spec.range), spec.percentile, double(spec.levels)})
      h.add(&v, sizeof v);
  }
  for (const std::vector<float>* p : params) {
    const uint64_t n = p->size();
    h.add(&n, sizeof n);
  }
  return h.value;
}

// A range the GGUF key can hold: > 0 (an input that was all zeros gets the smallest float).
float stored_range(double r) {
  return std::max(float(r), std::numeric_limits<float>::min());
}

// Entry k of the windows' maxima (ModelPass::forward's `seen`), averaged over the windows.
double mean_max(const std::vector<std::vector<float>>& seen, size_t k) {
  double sum = 0;
  for (const std::vector<float>& s : seen) sum += s[k];
  return sum / double(seen.size());
}

// The first static ranges: the mean over a batch of windows of each input's max |x|,
// the activations rounded per token as the ranges are not known yet.
void start_ranges(const Model& student, const DistillOptions& o,
                  const std::vector<std::vector<int32_t>>& windows, int threads,
                  train::ModelWeights<float>& w) {
  ActivationRounding per_token = o.rounding;
  per_token.static_ranges = false;
  const train::ModelPass<float> pass(student, per_token);
  const size_t n = std::min(windows.size(), size_t(o.batch));
  std::vector<std::vector<float>> seen(n);
  parallel_for(n, threads, [&](uint64_t b0, uint64_t b1) {
    std::vector<float> logits;
    std::vector<std::vector<float>> inputs;
    for (uint64_t b = b0; b < b1; ++b)
      pass.forward(w, windows[b].data(), windows[b].size(), logits, inputs, &seen[b]);
  });
  for (size_t l = 0; l < w.blocks.size(); ++l) {
    w.blocks[l].act_range.resize(kActRangeSites);
    for (int i = 0; i < kActRangeSites; ++i)
      w.blocks[l].act_range[i] = stored_range(mean_max(seen, l * kActRangeSites + i));
  }
}

// One step of the ranges' moving average (DistillOptions::range_momentum).
void follow_ranges(const std::vector<std::vector<float>>& seen, double momentum,
                   train::ModelWeights<float>& w) {
  for (size_t l = 0; l < w.blocks.size(); ++l)
    for (int i = 0; i < kActRangeSites; ++i) {
      float& r = w.blocks[l].act_range[i];
      r = stored_range(momentum * r + (1 - momentum) * mean_max(seen, l * kActRangeSites + i));
    }
}

}  // namespace

DistillOptions resolved(const DistillOptions& o) {
  DistillOptions r = o;
  if (r.batch <= 0) r.batch = 2;
  if (r.n_ctx == 0) r.n_ctx = 512;
  if (r.n_windows == 0) r.n_windows = 128;
  if (!(r.lr > 0)) r.lr = 3e-5;
  if (!(r.temperature > 0)) r.temperature = 1;
  return r;
}

Model distill(const Model& student, const Model& teacher, const std::vector<int32_t>& tokens,
              const DistillOptions& options, DistillReport* report) {
  const DistillOptions o = resolved(options);
  if (student.config.n_vocab != teacher.config.n_vocab)
    fail(ErrorKind::Argument,
         "distillation compares next-token distributions, but the teacher {} has {} tokens and "
         "the student {} has {}",
         teacher.source, teacher.config.n_vocab, student.source, student.config.n_vocab);
  if (o.teacher_top_k < 0 || size_t(o.teacher_top_k) > student.config.n_vocab)
    fail(ErrorKind::Argument,
         "teacher top-k {}: 0 (the whole distribution) or 1..{} (the "
         "vocabulary)",
         o.teacher_top_k, student.config.n_vocab);
  if (!(o.ce_weight >= 0 && std::isfinite(o.ce_weight)))
    fail(ErrorKind::Argument, "cross-entropy weight {}: a finite number >= 0", o.ce_weight);
  DistillReport local;
  DistillReport& rep = report ? *report : local;
  rep = {};
  if (o.steps <= 0) return student;
  const auto t0 = std::chrono::steady_clock::now();
  // With a held-out evaluation the last tenth of the text stays out of training.
  const size_t cut = o.eval_every > 0 ? tokens.size() - tokens.size() / 10 : tokens.size();
  if (tokens.size() - cut < (o.eval_every > 0 ? o.n_ctx : 0))
    fail(ErrorKind::Argument,
         "the held-out evaluation takes the last tenth of the text ({} tokens), fewer than one "
         "window of {}: give a longer text or shorter windows",
         tokens.size() - cut, o.n_ctx);
  const auto windows = sample_windows(std::vector<int32_t>(tokens.begin(), tokens.begin() + cut),
                                      o.n_windows, o.n_ctx, o.seed, student.vocab.bos);
  const auto held = o.eval_every > 0
                        ? sample_windows(std::vector<int32_t>(tokens.begin() + cut, tokens.end()),
                                         o.eval_windows, o.n_ctx, o.seed + 2, student.vocab.bos)
                        : std::vector<std::vector<int32_t>>{};
  const int threads = resolve_threads(o.n_threads);
  Engine engine(teacher, {threads, static_cast<uint32_t>(o.n_ctx)});
  const train::ModelPass<float> pass(student, o.rounding);
  train::ModelWeights<float> w = train::model_weights<float>(student);
  // train_scales: each quantized linear's θ takes its place among the parameters
  std::map<std::string, train::TrainedScales> scales;
  if (o.train_scales) {
    if (o.quantize_to.empty() || !o.affine_to.empty())
      fail(ErrorKind::Argument,
           "training scales needs the linears' quantized GGUF types (not the affine layout)");
    scales = train::trained_scales(student, o.quantize_to, w, threads);
  }
  std::vector<std::vector<float>*> params = w.tensors();  // (trained ones first)
  std::vector<train::TrainedScales*> scales_at(params.size(), nullptr);
  for (auto& [name, sc] : scales) {
    const auto at = std::find(params.begin(), params.end(), train::linear_of(w, name));
    scales_at[at - params.begin()] = &sc;
    *at = &sc.theta();
  }
  rep.n_params = 0;
  for (const std::vector<float>* p : params) rep.n_params += p->size();
  // Static activation ranges follow the trained tensors in `params` (saved with them in
  // checkpoints; no optimiser moves them).
  const size_t n_trained = params.size();
  const bool track_ranges = o.rounding.act_bits && o.rounding.static_ranges;
  if (!(o.range_momentum >= 0 && o.range_momentum < 1))
    fail(ErrorKind::Argument, "range momentum {}: in [0, 1)", o.range_momentum);
  for (train::BlockWeights<float>& b : w.blocks) {
    if (track_ranges)
      params.push_back(&b.act_range);
    else
      b.act_range.clear();  // they belonged to the untrained weights
  }
  if (track_ranges && w.blocks.front().act_range.empty())
    start_ranges(student, o, windows, threads, w);
  std::vector<train::Adam> adam;
  for (const std::vector<float>* p : params) adam.emplace_back(p->size());
  const train::DistillCheckpoint checkpoint{o.checkpoint, run_fingerprint(o, tokens, params)};
  int first_step = 0;
  if (!o.checkpoint.empty() && o.resume) {
    first_step = static_cast<int>(checkpoint.load(rep.losses, params, adam));
    if (first_step > o.steps)
      fail(ErrorKind::Argument, "{}: the checkpoint has done {} steps, more than the {} asked",
           o.checkpoint, first_step, o.steps);
  }
  auto save = [&](int steps_done) {
    if (!o.checkpoint.empty()) checkpoint.save(steps_done, rep.losses, params, adam);
    if (!o.loss_curve.empty())
      write_loss_curve(o.loss_curve, rep.losses, kCurveTitle, rep.held_out);
  };

  const size_t B = static_cast<size_t>(o.batch), V = pass.vocab();
  std::vector<size_t> order(windows.size());  // the windows in a seeded order, in turns
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::shuffle(order.begin(), order.end(), std::mt19937_64(o.seed + 1));
  std::vector<std::vector<float>> teacher_logits(B);
  std::vector<std::vector<float>> seen(B);  // track_ranges: each window's max |x| per input
  // teacher_top_k: each window's teacher distribution, made at its first visit
  std::vector<train::TopKDistribution> top_k(o.teacher_top_k > 0 ? windows.size() : 0);
  std::vector<train::ModelWeights<float>> grads(B);
  std::vector<double> losses(B);
  train::ModelWeights<float> rounded;  // quantization-aware: the weights the passes run
  // (rounded activations alone: the pass rounds them)
  const bool qat = !o.quantize_to.empty() || !o.affine_to.empty();
  auto round_weights = [&] {
    if (!o.train_scales)
      return train::fake_quantize(student, o.quantize_to, w, rounded, threads, o.affine_to);
    rounded = w;
    for (const auto& [name, sc] : scales) sc.decode(*train::linear_of(rounded, name));
  };
  // The mean KL on the held-out windows of the weights as they are now (rounded for QAT).
  auto evaluate = [&](int steps_done) {
    if (qat) round_weights();
    const train::ModelWeights<float>& run = qat ? rounded : w;
    std::vector<float> teacher_out, logits, dlogits;
    std::vector<std::vector<float>> inputs;
    double sum = 0;
    for (const auto& win : held) {
      engine.reset();
      engine.eval(win.data(), win.size(), teacher_out, true);
      pass.forward(run, win.data(), win.size(), logits, inputs);
      dlogits.resize(logits.size());
      sum += train::kd_loss(logits.data(), teacher_out.data(), win.size(), V, o.temperature,
                            dlogits.data());
    }
    rep.held_out.emplace_back(steps_done, sum / double(held.size()));
  };
  if (!held.empty()) evaluate(first_step);
  const int warmup = std::max(1, o.steps / 10);
  std::vector<float> dtheta;
  for (int step = first_step; step < o.steps; ++step) {
    std::vector<size_t> batch(B);
    for (size_t b = 0; b < B; ++b) batch[b] = order[(size_t(step) * B + b) % order.size()];
    for (size_t b = 0; b < B; ++b) {  // the teacher on all threads, one window at a time
      if (!top_k.empty() && top_k[batch[b]].n) continue;
      engine.reset();
      const auto& win = windows[batch[b]];
      engine.eval(win.data(), win.size(), teacher_logits[b], true);
      if (!top_k.empty())
        top_k[batch[b]] = train::top_k_of(teacher_logits[b].data(), win.size(), V,
                                          size_t(o.teacher_top_k), o.temperature);
    }
    if (qat) round_weights();
    const train::ModelWeights<float>& run = qat ? rounded : w;
    // The student's windows in parallel, each with its own gradient; summed in batch order.
    parallel_for(B, threads, [&](uint64_t b0, uint64_t b1) {
      std::vector<float> logits, dlogits;
      std::vector<std::vector<float>> inputs;
      for (uint64_t b = b0; b < b1; ++b) {
        const auto& win = windows[batch[b]];
        pass.forward(run, win.data(), win.size(), logits, inputs,
                     track_ranges ? &seen[b] : nullptr);
        dlogits.resize(logits.size());
        losses[b] = top_k.empty() ? train::kd_loss(logits.data(), teacher_logits[b].data(),
                                                   win.size(), V, o.temperature, dlogits.data())
                                  : train::kd_loss_top_k(logits.data(), top_k[batch[b]], V,
                                                         o.temperature, dlogits.data());
        if (o.ce_weight > 0)
          losses[b] += o.ce_weight * train::ce_loss(logits.data(), win.data(), win.size(), V,
                                                    o.ce_weight, dlogits.data());
        grads[b].zeros_like(w);
        pass.backward(run, inputs, dlogits.data(), win.size(), grads[b]);
      }
    });
    double loss = 0;
    for (size_t b = 0; b < B; ++b) loss += losses[b] / double(B);
    if (!std::isfinite(loss)) {  // the weights are still those before this step
      save(step);
      fail(ErrorKind::Argument, "distillation diverged at step {} (loss {}): try a smaller lr{}",
           step + 1, loss,
           o.checkpoint.empty() ? ""
                                : fmt::format(" (the {} good steps are kept in {}: --resume "
                                              "continues from there)",
                                              step, o.checkpoint));
    }
    const double lr = o.lr * std::min(1.0, double(step + 1) / warmup);
    for (size_t b = 1; b < B; ++b) grads[0].add(grads[b]);
    std::vector<std::vector<float>*> g0 = grads[0].tensors();
    for (size_t k = 0; k < n_trained; ++k) {
      for (float& v : *g0[k]) v /= float(B);
      if (scales_at[k]) {
        scales_at[k]->backward(*g0[k], dtheta);
        adam[k].step(params[k]->data(), dtheta.data(), lr);
        continue;
      }
      adam[k].step(params[k]->data(), g0[k]->data(), lr);
    }
    if (track_ranges) follow_ranges(seen, o.range_momentum, w);
    rep.losses.push_back(loss);
    if (!held.empty() && ((step + 1) % o.eval_every == 0 || step + 1 == o.steps))
      evaluate(step + 1);
    const bool go_on = !o.on_step || o.on_step(step + 1, o.steps, loss);
    if (!go_on ||
        (o.checkpoint_every > 0 && (step + 1) % o.checkpoint_every == 0 && step + 1 < o.steps))
      save(step + 1);
    if (!go_on)
      fail(ErrorKind::Cancelled, "distillation stopped at step {} of {}{}", step + 1, o.steps,
           o.checkpoint.empty()
               ? ""
               : fmt::format("; the steps done are kept in {}: --resume continues", o.checkpoint));
  }
  if (!o.checkpoint.empty()) {  // finished: the checkpoint (and its directory, if empty) go
    std::error_code ec;
    std::filesystem::remove(o.checkpoint, ec);
    const std::filesystem::path dir = std::filesystem::path(o.checkpoint).parent_path();
    if (!dir.empty()) std::filesystem::remove(dir, ec);
  }
  if (!o.loss_curve.empty()) write_loss_curve(o.loss_curve, rep.losses, kCurveTitle, rep.held_out);
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Model out = train::with_trained_scales(train::with_weights(student, w), scales);
  if (!track_ranges) out.config.act_ranges.clear();
  return out;
}

}  // namespace lowbit

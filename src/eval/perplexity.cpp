#include <algorithm>
#include <chrono>
#include <cmath>
#include <memory>

#include "logits_file.h"
#include "lowbit/error.h"
#include "lowbit/eval.h"

namespace lowbit {
namespace {

// Running sums for a mean and its standard error.
struct Moments {
  double sum = 0, sum2 = 0;
  size_t n = 0;
  void add(double x) {
    sum += x;
    sum2 += x * x;
    ++n;
  }
  double mean() const { return n ? sum / n : 0; }
  double stderr_of_mean() const {
    if (n < 2) return 0;
    const double m = mean(), var = sum2 / n - m * m;
    return var > 0 ? std::sqrt(var / (n - 1)) : 0;
  }
};

// KL(P_base || P_model) for one position. With a top-k base the tokens outside the top k
// are pooled into one "rest" outcome on both sides (a lower bound on the full KL).
double position_kld(const BaseRecord& b, const std::vector<double>& logp, bool full,
                    int32_t* base_argmax) {
  double kld = 0;
  if (full) {
    size_t am = 0;
    for (size_t i = 0; i < logp.size(); ++i) {
      const double lb = b.logp[i];
      if (b.logp[i] > b.logp[am]) am = i;
      kld += std::exp(lb) * (lb - logp[i]);
    }
    *base_argmax = static_cast<int32_t>(am);
    return std::max(kld, 0.0);
  }
  double pb_top = 0, pm_top = 0;
  for (const auto& [id, lb] : b.top) {
    if (id < 0) continue;
    const double pb = std::exp(static_cast<double>(lb));
    pb_top += pb;
    pm_top += std::exp(logp[id]);
    kld += pb * (lb - logp[id]);
  }
  const double pb_rest = std::max(0.0, 1 - pb_top), pm_rest = std::max(1e-30, 1 - pm_top);
  if (pb_rest > 0) kld += pb_rest * (std::log(pb_rest) - std::log(pm_rest));
  *base_argmax = b.top[0].first;
  return std::max(kld, 0.0);
}

}  // namespace

double log_sum_exp(const float* x, size_t n) {
  const double mx = *std::max_element(x, x + n);
  double sum = 0;
  for (size_t i = 0; i < n; ++i) sum += std::exp(x[i] - mx);
  return mx + std::log(sum);
}

double percentile_sorted(const std::vector<double>& s, double q) {
  if (s.empty()) return 0;
  return s[static_cast<size_t>(std::floor(q * (s.size() - 1)))];
}

PerplexityResult evaluate_perplexity(Engine& engine, const std::vector<int32_t>& text_tokens,
                                     const PerplexityOptions& o) {
  const Model& model = engine.model();
  const size_t n_vocab = model.config.n_vocab;
  std::unique_ptr<LogitsReader> base;
  std::vector<int32_t> tokens = text_tokens;
  uint32_t n_ctx = o.n_ctx;
  PplProtocol protocol = o.protocol;
  if (!o.kl_base.empty()) {
    base = std::make_unique<LogitsReader>(o.kl_base);
    const LogitsHeader& h = base->header();
    if (h.n_vocab != n_vocab)
      fail(ErrorKind::Argument, "{}: base distributions have {} tokens per position, this model {}",
           o.kl_base, h.n_vocab, n_vocab);
    tokens = h.tokens;
    n_ctx = h.n_ctx;
    protocol = static_cast<PplProtocol>(h.protocol);
  }
  if (n_ctx < 4) fail(ErrorKind::Argument, "perplexity: context {} is too small", n_ctx);
  if (n_ctx > engine.n_ctx())
    fail(ErrorKind::Argument, "perplexity: context {} exceeds the engine's {}", n_ctx,
         engine.n_ctx());
  size_t n_chunks = tokens.size() / n_ctx;
  if (o.max_chunks > n_chunks)  // a smaller evaluation than asked for must not pass unnoticed
    fail(ErrorKind::Argument, "perplexity: {} chunks asked for, but the text holds {} of {} tokens",
         o.max_chunks, n_chunks, n_ctx);
  if (o.max_chunks) n_chunks = std::min(n_chunks, o.max_chunks);
  if (base) n_chunks = std::min<size_t>(n_chunks, base->header().n_chunks);
  if (n_chunks == 0)
    fail(ErrorKind::Argument, "perplexity: {} tokens are fewer than one window of {}",
         tokens.size(), n_ctx);
  const size_t first = protocol == PplProtocol::LlamaCpp ? n_ctx / 2 : 0;

  std::unique_ptr<LogitsWriter> writer;
  if (!o.save_logits.empty()) {
    LogitsHeader h{n_ctx,
                   static_cast<uint32_t>(n_vocab),
                   static_cast<uint32_t>(n_chunks),
                   static_cast<uint32_t>(protocol),
                   o.save_top_k,
                   static_cast<uint32_t>(first),
                   std::vector<int32_t>(tokens.begin(), tokens.begin() + n_chunks * n_ctx)};
    writer = std::make_unique<LogitsWriter>(o.save_logits, h);
  }

  PerplexityResult r;
  Moments nll, nll_base, kld_m, dp_m;
  std::vector<double> klds, dps;
  size_t same_top1 = 0;
  std::vector<float> logits, lp_f,
      all(static_cast<size_t>(n_ctx) * n_vocab);  // one window's logits
  std::vector<double> logp(n_vocab);
  BaseRecord rec;
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t c = 0; c < n_chunks; ++c) {
    std::vector<int32_t> win(tokens.begin() + c * n_ctx, tokens.begin() + (c + 1) * n_ctx);
    if (protocol == PplProtocol::LlamaCpp && model.vocab.bos >= 0) win[0] = model.vocab.bos;
    engine.reset();
    for (size_t b = 0; b < n_ctx; b += o.batch) {
      const size_t nb = std::min<size_t>(o.batch, n_ctx - b);
      engine.eval(win.data() + b, nb, logits, true);
      std::copy(logits.begin(), logits.end(), all.begin() + b * n_vocab);
    }
    for (size_t j = first; j + 1 < n_ctx; ++j) {
      const float* row = all.data() + j * n_vocab;
      const double lse = log_sum_exp(row, n_vocab);
      if (!std::isfinite(lse))  // NaN or infinite weights: no number would be honest
        fail(ErrorKind::Format, "{}: the logits of window {} position {} are not finite",
             model.source, c + 1, j);
      for (size_t i = 0; i < n_vocab; ++i) logp[i] = row[i] - lse;
      const int32_t target = win[j + 1];
      nll.add(-logp[target]);
      if (writer) {
        lp_f.assign(logp.begin(), logp.end());
        writer->write(lp_f.data(), n_vocab, static_cast<float>(logp[target]));
      }
      if (base) {
        base->next(rec);
        int32_t base_argmax = 0;
        const double k = position_kld(rec, logp, base->header().top_k == 0, &base_argmax);
        kld_m.add(k);
        klds.push_back(k);
        const int32_t model_argmax =
            static_cast<int32_t>(std::max_element(row, row + n_vocab) - row);
        same_top1 += model_argmax == base_argmax;
        const double dp = std::exp(logp[target]) - std::exp(static_cast<double>(rec.logp_target));
        dp_m.add(dp);
        dps.push_back(dp);
        nll_base.add(-rec.logp_target);
      }
    }
    r.chunk_ppl.push_back(std::exp(nll.mean()));
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.on_chunk) o.on_chunk(c + 1, n_chunks, r.chunk_ppl.back(), (c + 1) * n_ctx / secs);
  }
  if (writer) writer->commit();
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.n_chunks = n_chunks;
  r.n_tokens = nll.n;
  r.ppl = std::exp(nll.mean());
  r.ppl_stderr = nll.stderr_of_mean() * r.ppl;  // delta method, as llama-perplexity prints it
  if (base) {
    KldStats k;
    k.n = kld_m.n;
    k.mean = kld_m.mean();
    k.stderr_ = kld_m.stderr_of_mean();
    std::sort(klds.begin(), klds.end());
    k.median = percentile_sorted(klds, 0.5);
    k.p90 = percentile_sorted(klds, 0.90);
    k.p95 = percentile_sorted(klds, 0.95);
    k.p99 = percentile_sorted(klds, 0.99);
    k.p999 = percentile_sorted(klds, 0.999);
    k.max = klds.back();
    k.same_top1 = static_cast<double>(same_top1) / k.n;
    k.dp_mean = dp_m.mean();
    k.dp_stderr = dp_m.stderr_of_mean();
    k.dp_rms = std::sqrt(dp_m.sum2 / dp_m.n);
    std::sort(dps.begin(), dps.end());
    k.dp_p01 = percentile_sorted(dps, 0.01);
    k.dp_p05 = percentile_sorted(dps, 0.05);
    k.dp_median = percentile_sorted(dps, 0.5);
    k.dp_p95 = percentile_sorted(dps, 0.95);
    k.dp_p99 = percentile_sorted(dps, 0.99);
    k.ppl_base = std::exp(nll_base.mean());
    k.ppl_ratio = r.ppl / k.ppl_base;
    r.kld = k;
  }
  return r;
}

}  // namespace lowbit

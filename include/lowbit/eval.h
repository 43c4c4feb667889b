// Perplexity and KL divergence, with the protocols the field uses.
//
// llama.cpp protocol: non-overlapping windows of n_ctx tokens, the first token of each
// replaced by BOS; only the second half is scored (logits at positions n_ctx/2 .. n_ctx-2
// predict the next token). Numbers are comparable with `llama-perplexity`.
// HF protocol (GPTQ/AWQ papers): windows of n_ctx tokens of the text tokenized once (one
// BOS at the start); every token after the first of a window is scored.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/engine.h"

namespace lowbit {

enum class PplProtocol : uint32_t { LlamaCpp = 0, Hf = 1 };

struct KldStats {
  size_t n = 0;
  double mean = 0, stderr_ = 0, median = 0, p90 = 0, p95 = 0, p99 = 0, p999 = 0, max = 0;
  double same_top1 = 0;                       // share of positions where both argmaxes agree
  double dp_mean = 0, dp_stderr = 0, dp_rms = 0;  // Δp = p_model(correct) - p_base(correct)
  double dp_p01 = 0, dp_p05 = 0, dp_median = 0, dp_p95 = 0, dp_p99 = 0;
  double ppl_base = 0, ppl_ratio = 0;  // ratio = PPL(model) / PPL(base)
};

struct PerplexityResult {
  double ppl = 0, ppl_stderr = 0;
  size_t n_tokens = 0;  // scored tokens
  size_t n_chunks = 0;
  std::vector<double> chunk_ppl;  // running value after each chunk
  std::optional<KldStats> kld;
  double seconds = 0;
};

struct PerplexityOptions {
  uint32_t n_ctx = 512;
  size_t max_chunks = 0;  // 0: every full window
  size_t batch = 512;     // tokens per eval call
  PplProtocol protocol = PplProtocol::LlamaCpp;
  std::string save_logits;    // write the base distributions here
  uint32_t save_top_k = 0;    // 0: full distribution (f16 log-probs); k: top-k (f32) + rest mass
  std::string kl_base;        // compare against a file written with save_logits
  std::function<void(size_t chunk, size_t n_chunks, double ppl, double tokens_per_s)> on_chunk;
};

// `tokens` is the tokenized text (with BOS at the start). With kl_base the tokens stored in
// that file are used instead and `tokens` may be empty.
PerplexityResult evaluate_perplexity(Engine& engine, const std::vector<int32_t>& tokens,
                                     const PerplexityOptions& opts);

// KL divergence of `model`'s next-token distributions from `base`'s on the windows of
// `tokens`: base's distributions go to a temporary file, removed afterwards. The result is
// `model`'s perplexity with its kld set.
PerplexityResult evaluate_kl_divergence(Engine& base, Engine& model,
                                        const std::vector<int32_t>& tokens,
                                        const PerplexityOptions& opts);
// log Σ exp(x[i]), computed in double around the maximum.
double log_sum_exp(const float* x, size_t n);

// Percentile by nearest rank on a sorted vector: sorted[floor(q * (n - 1))].
double percentile_sorted(const std::vector<double>& sorted, double q);

}  // namespace lowbit

#include "lowbit/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "lowbit/error.h"

namespace lowbit {

uint32_t generation_context(const Model& m, size_t n_prompt, size_t n_predict) {
  const size_t want = std::max<size_t>(1, n_prompt + n_predict);
  return static_cast<uint32_t>(m.config.n_ctx ? std::min<size_t>(want, m.config.n_ctx) : want);
}

int32_t sample_token(const float* logits, size_t n_vocab, const SamplerParams& p,
                     std::mt19937_64& rng) {
  if (p.temperature <= 0.0f)
    return static_cast<int32_t>(std::max_element(logits, logits + n_vocab) - logits);
  std::vector<int32_t> ids(n_vocab);
  std::iota(ids.begin(), ids.end(), 0);
  size_t k = p.top_k > 0 ? std::min<size_t>(p.top_k, n_vocab) : n_vocab;
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(),
                    [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  std::vector<double> prob(k);
  const double mx = logits[ids[0]];
  double sum = 0;
  for (size_t i = 0; i < k; ++i) sum += prob[i] = std::exp((logits[ids[i]] - mx) / p.temperature);
  size_t keep = k;  // nucleus: smallest prefix whose mass reaches top_p
  if (p.top_p < 1.0f) {
    double cum = 0;
    for (size_t i = 0; i < k; ++i) {
      cum += prob[i] / sum;
      if (cum >= p.top_p) {
        keep = i + 1;
        break;
      }
    }
  }
  std::discrete_distribution<size_t> pick(prob.begin(), prob.begin() + keep);
  return ids[pick(rng)];
}

std::vector<int32_t> generate(Engine& engine, const std::vector<int32_t>& prompt,
                              const GenerateOptions& opts,
                              const std::function<void(int32_t)>& on_token) {
  if (prompt.empty()) fail(ErrorKind::Argument, "generate: the prompt has no tokens");
  std::mt19937_64 rng(opts.sampler.seed);
  std::vector<float> logits;
  engine.eval(prompt.data(), prompt.size(), logits, false);
  std::vector<int32_t> out;
  const int32_t eos = engine.model().vocab.eos;
  while (out.size() < opts.n_predict) {
    int32_t next = sample_token(logits.data(), logits.size(), opts.sampler, rng);
    if (opts.stop_at_eos && next == eos) break;
    out.push_back(next);
    if (on_token) on_token(next);
    if (engine.n_past() >= engine.n_ctx() || out.size() == opts.n_predict) break;
    engine.eval(&next, 1, logits, false);
  }
  return out;
}

}  // namespace lowbit

// KL divergence of two models in one call: the base's distributions are written to a
// temporary logits file, then read back window by window against the model's.
#include <unistd.h>

#include <atomic>
#include <filesystem>

#include "lowbit/error.h"
#include "lowbit/eval.h"

namespace lowbit {

PerplexityResult evaluate_kl_divergence(Engine& base, Engine& model,
                                        const std::vector<int32_t>& tokens,
                                        const PerplexityOptions& opts) {
  static std::atomic<uint64_t> counter{0};
  const std::filesystem::path tmp =
      std::filesystem::temp_directory_path() /
      ("lowbit-kld-" + std::to_string(getpid()) + "-" + std::to_string(counter++) + ".logits");
  struct Remove {
    std::filesystem::path p;
    ~Remove() {
      std::error_code ec;
      std::filesystem::remove(p, ec);
    }
  } remove{tmp};
  PerplexityOptions first = opts;
  first.save_logits = tmp.string();
  first.kl_base.clear();
  const PerplexityResult b = evaluate_perplexity(base, tokens, first);
  PerplexityOptions second = opts;
  second.save_logits.clear();
  second.kl_base = tmp.string();
  PerplexityResult r = evaluate_perplexity(model, {}, second);
  if (r.kld && r.kld->ppl_base == 0) r.kld->ppl_base = b.ppl;
  return r;
}

}  // namespace lowbit

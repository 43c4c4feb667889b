// Pruning masks (lowbit/sparsity.h). SparseGPT's masks are chosen inside the GPTQ sweep
// (algo/gptq.cpp) with mask_lowest on its own scores.
#include "lowbit/sparsity.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numeric>

#include "lowbit/error.h"
#include "lowbit/gptq.h"
#include "lowbit/model.h"
#include "lowbit/tensor.h"
#include "lowbit/topology.h"

namespace lowbit {

std::vector<std::pair<std::string, PruneMethod>> prune_method_choices() {
  return {{"magnitude", PruneMethod::Magnitude},
          {"wanda", PruneMethod::Wanda},
          {"sparsegpt", PruneMethod::SparseGpt}};
}

const char* prune_method_name(PruneMethod m) {
  switch (m) {
    case PruneMethod::Magnitude:
      return "magnitude";
    case PruneMethod::Wanda:
      return "wanda";
    case PruneMethod::SparseGpt:
      return "sparsegpt";
  }
  return "?";
}

std::optional<PruneMethod> prune_method_from_name(const std::string& name) {
  for (const auto& [n, m] : prune_method_choices())
    if (n == name) return m;
  return std::nullopt;
}

SparsityPattern parse_nm(const std::string& text) {
  const size_t colon = text.find(':');
  SparsityPattern p;
  try {
    size_t used_n = 0, used_m = 0;
    if (colon == std::string::npos) throw std::invalid_argument("no colon");
    p.n = std::stoi(text.substr(0, colon), &used_n);
    p.m = std::stoi(text.substr(colon + 1), &used_m);
    if (used_n != colon || used_m != text.size() - colon - 1) throw std::invalid_argument("tail");
  } catch (const std::logic_error&) {
    fail(ErrorKind::Argument, "N:M sparsity '{}': expected two integers such as 2:4", text);
  }
  validate(p);
  return p;
}

std::string pattern_label(const SparsityPattern& p) {
  if (p.structured()) return fmt::format("{}:{}", p.n, p.m);
  if (p.owl_lambda > 0)
    return fmt::format("{:g}% owl(λ {:g}, M {:g})", p.ratio * 100, p.owl_lambda, p.owl_m);
  return fmt::format("{:g}%", p.ratio * 100);
}

std::string sparsity_label(PruneMethod method, const SparsityPattern& p) {
  return fmt::format("{} {}", prune_method_name(method), pattern_label(p));
}

void validate(const SparsityPattern& p) {
  if (!(p.ratio >= 0 && p.ratio < 1))
    fail(ErrorKind::Argument, "sparsity {} is outside [0, 1): the share of weights set to zero",
         p.ratio);
  if (p.m != 0 && !(p.n > 0 && p.n < p.m && p.m <= 64))
    fail(ErrorKind::Argument, "N:M sparsity {}:{}: needs 0 < N < M <= 64", p.n, p.m);
  if (p.owl_lambda < 0 || (p.owl_lambda > 0 && (p.m != 0 || !(p.owl_m > 0))))
    fail(ErrorKind::Argument,
         "OWL λ {} (outlier threshold M {}): needs λ > 0, M > 0 and an unstructured sparsity",
         p.owl_lambda, p.owl_m);
  if (p.owl_lambda > 0 && !(p.ratio - 2 * p.owl_lambda >= 0 && p.ratio + 2 * p.owl_lambda < 1))
    fail(ErrorKind::Argument,
         "OWL λ {}: the blocks' shares reach sparsity {} ± 2λ, outside [0, 1)", p.owl_lambda,
         p.ratio);
  if (p.m != 0 && p.ratio != 0)
    fail(ErrorKind::Argument, "sparsity {} and N:M {}:{} both given: N:M sets the share ({})",
         p.ratio, p.n, p.m, 1.0 - double(p.n) / p.m);
}

// (An N:M group, at most 64 values, sorts on the stack: a 1B model has 3·10^8 groups.)
void mark_lowest(const float* score, uint64_t len, uint64_t k, uint8_t* mask) {
  if (k == 0) return;
  auto lower = [score](uint32_t a, uint32_t b) {
    return score[a] < score[b] || (score[a] == score[b] && a < b);
  };
  std::array<uint32_t, 64> small;
  std::vector<uint32_t> large(len <= small.size() ? 0 : len);
  uint32_t* idx = len <= small.size() ? small.data() : large.data();
  std::iota(idx, idx + len, 0u);
  std::nth_element(idx, idx + (k - 1), idx + len, lower);
  for (uint64_t i = 0; i < k; ++i) mask[idx[i]] = 1;
}

std::vector<uint8_t> mask_lowest(const std::vector<float>& score, uint64_t rows, uint64_t cols,
                                 const SparsityPattern& p, bool per_matrix) {
  std::vector<uint8_t> mask(rows * cols, 0);
  if (p.structured()) {
    if (cols % p.m != 0)
      fail(ErrorKind::Argument, "N:M sparsity {}:{}: rows of {} values are not whole groups", p.n,
           p.m, cols);
    for (uint64_t g = 0; g < rows * cols; g += p.m)
      mark_lowest(&score[g], p.m, p.m - p.n, &mask[g]);
    return mask;
  }
  if (per_matrix) {
    mark_lowest(score.data(), rows * cols, static_cast<uint64_t>(rows * cols * p.ratio),
                mask.data());
    return mask;
  }
  const uint64_t k = static_cast<uint64_t>(cols * p.ratio);
  for (uint64_t r = 0; r < rows; ++r) mark_lowest(&score[r * cols], cols, k, &mask[r * cols]);
  return mask;
}

std::vector<uint8_t> prune_mask(PruneMethod method, const float* w, uint64_t rows, uint64_t cols,
                                const float* norms2, const SparsityPattern& p) {
  validate(p);
  if (method == PruneMethod::SparseGpt)
    fail(ErrorKind::Argument, "sparsegpt chooses its mask inside the GPTQ sweep, not up front");
  if (method == PruneMethod::Wanda && !norms2)
    fail(ErrorKind::Argument, "wanda needs the inputs' norms (an importance vector)");
  std::vector<float> score(rows * cols);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint64_t c = 0; c < cols; ++c) {
      const float a = std::fabs(w[r * cols + c]);
      score[r * cols + c] = method == PruneMethod::Wanda ? a * std::sqrt(norms2[c]) : a;
    }
  return mask_lowest(score, rows, cols, p, method == PruneMethod::Magnitude);
}

SparsityPattern pattern_for(const SparsityPattern& p, const std::string& weight) {
  SparsityPattern q = p;  // a plain share: OWL has done its part
  q.block_ratios.clear();
  q.owl_lambda = 0;
  if (p.block_ratios.empty()) return q;
  const int layer = block_of(weight);
  if (layer < 0 || static_cast<size_t>(layer) >= p.block_ratios.size())
    fail(ErrorKind::Argument, "tensor '{}': no OWL share for its block ({} blocks)", weight,
         p.block_ratios.size());
  q.ratio = p.block_ratios[layer];
  return q;
}

std::vector<double> owl_block_ratios(
    const Model& m, const SparsityPattern& p,
    const std::function<const std::vector<float>*(const std::string&)>& norms2) {
  const uint32_t n_layer = m.config.n_layer;
  std::vector<double> d(n_layer, 0.0);
  for (uint32_t l = 0; l < n_layer; ++l) {
    // Two passes over the block's linears, a chunk of rows in f32 at a time: the mean score,
    // then the share above owl_m times it.
    std::vector<std::pair<const TensorView*, std::vector<float>>> linears;
    for (const InputGroup& g : block_input_groups(m.config, l))
      for (const std::string& name : g.weights) {
        const std::vector<float>* n2 = norms2(name);
        const TensorView& t = m.tensor(name);
        if (!n2 || n2->size() != t.row_len())
          fail(ErrorKind::Argument, "OWL: no input norms for '{}' (calibration statistics)", name);
        std::vector<float> norm(n2->size());
        for (size_t j = 0; j < norm.size(); ++j) norm[j] = std::sqrt(std::max(0.0f, (*n2)[j]));
        linears.emplace_back(&t, std::move(norm));
      }
    double sum = 0, mean = 0;
    uint64_t count = 0, above = 0;
    for (int pass = 0; pass < 2; ++pass) {
      for (const auto& [t, norm] : linears) {
        const uint64_t rows = t->n_rows(), cols = t->row_len();
        const uint64_t step = std::max<uint64_t>(1, (uint64_t{1} << 20) / cols);
        for (uint64_t r0 = 0; r0 < rows; r0 += step) {
          const std::vector<float> w = to_f32(row_slice(*t, r0, std::min(rows, r0 + step)));
          for (size_t i = 0; i < w.size(); ++i) {
            const double score = std::fabs(w[i]) * norm[i % cols];
            if (pass == 0)
              sum += score, ++count;
            else
              above += score > p.owl_m * mean;
          }
        }
      }
      if (pass == 0) mean = count ? sum / count : 0;
    }
    d[l] = count ? double(above) / count : 0;
  }
  const auto [lo, hi] = std::minmax_element(d.begin(), d.end());
  std::vector<double> share(n_layer, p.ratio);
  if (n_layer == 0 || *hi <= *lo) return share;  // no block stands out: uniform
  std::vector<double> dn(n_layer);
  for (uint32_t l = 0; l < n_layer; ++l) dn[l] = (d[l] - *lo) / (*hi - *lo);
  const double mean_dn = std::accumulate(dn.begin(), dn.end(), 0.0) / n_layer;
  for (uint32_t l = 0; l < n_layer; ++l) share[l] = p.ratio - 2 * p.owl_lambda * (dn[l] - mean_dn);
  return share;
}

std::vector<uint8_t> prepare_pruning(const std::string& name, PruneMethod method,
                                     const SparsityPattern& pattern, const std::vector<float>& w,
                                     uint64_t rows, uint64_t cols, const float* norms2,
                                     const std::vector<double>* H, GptqOptions& o) {
  const SparsityPattern p = pattern_for(pattern, name);
  const bool has_h = H && H->size() == cols * cols;
  if (method == PruneMethod::SparseGpt) {
    if (!has_h)
      fail(ErrorKind::Argument, "tensor '{}': sparsegpt prunes inside GPTQ and needs its Hessian",
           name);
    o.prune = p;
    return {};
  }
  std::vector<float> diag;
  if (method == PruneMethod::Wanda && !norms2 && has_h) {
    for (uint64_t j = 0; j < cols; ++j) diag.push_back(static_cast<float>((*H)[j * cols + j]));
    norms2 = diag.data();
  }
  if (method == PruneMethod::Wanda && !norms2)
    fail(ErrorKind::Argument, "tensor '{}': wanda needs the input norms (calibration statistics)",
         name);
  return prune_mask(method, w.data(), rows, cols, norms2, p);
}

std::vector<float> apply_mask(std::vector<float> w, const std::vector<uint8_t>& mask) {
  for (size_t k = 0; k < w.size(); ++k)
    if (mask[k]) w[k] = 0;
  return w;
}

double zero_share(const float* x, uint64_t n) {
  uint64_t zeros = 0;
  for (uint64_t i = 0; i < n; ++i) zeros += x[i] == 0.0f;
  return n ? double(zeros) / n : 0;
}

}  // namespace lowbit

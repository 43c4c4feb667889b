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

std::vector<uint8_t> prepare_pruning(const std::string& name, PruneMethod method,
                                     const SparsityPattern& p, const std::vector<float>& w,
                                     uint64_t rows, uint64_t cols, const float* norms2,
                                     const std::vector<double>* H, GptqOptions& o) {
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

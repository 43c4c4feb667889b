// Pruning: which weights of a linear become exactly zero.
//
// Three rules choose them, each within one output row (a row keeps its share of weights)
// except magnitude, which compares the whole matrix as the classic baseline does:
//   magnitude  score |W_ij|                                  (per matrix)
//   wanda      score |W_ij| · ‖X_j‖, ‖X_j‖² = Σ x_j² over the calibration tokens (Sun et al. 2023)
//   sparsegpt  score W_ij² / [(H + λI)⁻¹]_jj, chosen inside the GPTQ sweep, 128 columns at a
//              time, on the weights as the earlier columns' pruning errors have updated them;
//              the error of each pruned (and rounded) weight is spread over the columns not yet
//              swept (Frantar & Alistarh 2023). Quantization runs in the same sweep.
// A pattern is unstructured (a share of the weights) or N:M (at most N non-zero weights in every
// M consecutive weights of a row, the 2:4 of sparse tensor cores).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace lowbit {

struct Model;

enum class PruneMethod { Magnitude, Wanda, SparseGpt };

const char* prune_method_name(PruneMethod m);
std::optional<PruneMethod> prune_method_from_name(const std::string& name);
std::vector<std::pair<std::string, PruneMethod>> prune_method_choices();

struct SparsityPattern {
  double ratio = 0;  // share of each matrix's (unstructured) weights set to zero
  int n = 0, m = 0;  // N:M when m > 0: n kept in every m (ratio is then 1 - n/m)
  // OWL (Yin et al. 2023), unstructured only: the blocks' shares spread by ±owl_lambda around
  // `ratio` by their outlier ratios (owl_block_ratios), owl_m the outlier threshold.
  double owl_lambda = 0, owl_m = 5;
  std::vector<double> block_ratios;  // the share of block i's linears; empty = ratio everywhere

  bool active() const { return ratio > 0 || m > 0; }
  bool structured() const { return m > 0; }
  double share() const { return m > 0 ? 1.0 - double(n) / m : ratio; }
};

// The share `ratio` of each matrix, unstructured.
inline SparsityPattern unstructured(double ratio) {
  SparsityPattern p;
  p.ratio = ratio;
  return p;
}
// "2:4" -> {n 2, m 4}. Throws Argument for anything else than N:M with 0 < N < M <= 64.
SparsityPattern parse_nm(const std::string& text);
// "50%" or "0.5" style label of a pattern: "50%" or "2:4".
std::string pattern_label(const SparsityPattern& p);
// "sparsegpt 50%", "wanda 2:4": what lowbit.quantize.sparsity records.
std::string sparsity_label(PruneMethod method, const SparsityPattern& p);
// Throws Argument naming the bad value: ratio outside [0, 1), N:M out of range, both given.
void validate(const SparsityPattern& p);

// The pattern one block linear ("blk.N.<role>.weight") is pruned with: ratio from
// block_ratios[N] when there are some, without OWL's parameters.
SparsityPattern pattern_for(const SparsityPattern& p, const std::string& weight);

// OWL's shares per block. A block's outlier ratio D is the share of the Wanda scores
// |W_ij|·‖x_j‖ of all its linears above owl_m times their mean (norms2(name): the imatrix,
// mean x_j²). With Dn = (D − min D) / (max D − min D), block l keeps
// (1 − ratio) + 2·owl_lambda·(Dn_l − mean Dn): more outliers, more kept weights, and the
// blocks' average share stays `ratio` (the blocks have equal sizes). Throws Argument when a
// linear has no norms or a share would leave [0, 1).
std::vector<double> owl_block_ratios(
    const Model& m, const SparsityPattern& p,
    const std::function<const std::vector<float>*(const std::string&)>& norms2);

// mask[r * cols + c] = 1 where the weight is pruned. w: [rows, cols]. norms2 (wanda): cols
// values Σ x_j² (or the mean; only their ratios matter), ignored by magnitude. Ties go to
// the lower column index, so the mask does not depend on the thread count.
std::vector<uint8_t> prune_mask(PruneMethod method, const float* w, uint64_t rows, uint64_t cols,
                                const float* norms2, const SparsityPattern& p);

// The same choice on scores already computed (higher = keep): the share p of each row (or,
// per_matrix, of the whole matrix) with the lowest scores, or the m - n lowest of every m.
std::vector<uint8_t> mask_lowest(const std::vector<float>& score, uint64_t rows, uint64_t cols,
                                 const SparsityPattern& p, bool per_matrix);

// w with the mask's values set to 0.
std::vector<float> apply_mask(std::vector<float> w, const std::vector<uint8_t>& mask);

// mask[i] = 1 for the k lowest of score[0..len) (ties: the lower index); the rest untouched.
void mark_lowest(const float* score, uint64_t len, uint64_t k, uint8_t* mask);

// Share of exact zeros among n values.
double zero_share(const float* x, uint64_t n);

}  // namespace lowbit

// Rotations of the residual stream fused into the weights (QuaRot, Ashkboos et al. 2024):
// a few input channels far larger than the rest make rounding hard where small weights meet
// them; multiplying the residual stream by an orthogonal Q spreads every channel over all
// others while the network computes the same function.
//
// With row vectors h (the residual, n_embd values) and weights W [out, in]:
//   1. every RMSNorm weight γ is folded into the linears that read the norm (W · diag(γ)),
//      and γ becomes 1, so that the norm commutes with Q (‖hQ‖ = ‖h‖);
//   2. the residual becomes hQ: token_embd E → EQ; linears reading it (q, k, v, gate, up,
//      output) W → WQ; linears writing it (attn_output, ffn_down) W → QᵀW;
//   3. per head, the values are rotated too: the rows of attn_v of each KV head [head_dim, in]
//      → Hᵀ·rows (its bias likewise), and the matching columns of attn_output → columns·H.
// A tied output head is untied (the folded final norm makes it differ from the embedding).
// The result is an ordinary model: every writer, method and runtime takes it as it is.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/engine.h"
#include "lowbit/model.h"

namespace lowbit {

enum class RotationKind {
  None,      // no rotation (norms are not folded either)
  Hadamard,  // Walsh–Hadamard (or a Kronecker product with a Paley matrix) with random signs
  Random,    // a random orthogonal matrix (Haar distributed)
};
const char* rotation_name(RotationKind k);  // "none", "hadamard", "random"
std::optional<RotationKind> rotation_from_name(const std::string& name);
std::map<std::string, RotationKind> rotation_choices();  // name -> kind, for option parsers

// SpinQuant (Liu et al. 2024): the residual rotation and each layer's value rotation are
// learned, starting from the kind's matrices, by descent on the orthogonal group (Cayley
// steps) against the KL divergence between the unrotated model and the rotated one run with
// its weights and activations rounded as below (straight through the rounding, and through
// each token's activation scale).
struct RotationLearning {
  int steps = 0;  // 0: the rotation is not learned
  double lr = 0.1;  // angle of the first step (Frobenius norm of its skew generator)
  int batch = 2;  // windows per step, one per thread
  size_t n_ctx = 512, n_windows = 128;  // the seeded pool of windows the steps take in turns
  uint64_t seed = 1;
  // The block linears run rounded to nearest in this type during learning; F32: not rounded
  // (SpinQuant learns with 16-bit weights when GPTQ rounds them afterwards).
  DType weights = DType::F32;
  // The activations and KV cache, as the engine rounds them (per-token activation scales:
  // static ranges would change with the rotation).
  ActivationRounding rounding = {};
  // > 0: the loss adds this times the model's cross-entropy on the text (SpinQuant's loss)
  double ce_weight = 0;
  // After each step: (step, steps, the batch's mean loss). Returning false stops with
  // Error(Cancelled).
  std::function<bool(int, int, double)> on_step;
};

struct RotationOptions {
  RotationKind kind = RotationKind::Hadamard;
  uint64_t seed = 1;  // of the random signs or the random matrix
  bool heads = true;  // also rotate each head's values (attn_v rows, attn_output columns)
  // Online: ffn_down's rows go through the Hadamard transform of n_ff values and the engine
  // transforms its input likewise (ModelConfig::ffn_down_hadamard). The file then needs
  // lowbit's engine: llama.cpp would read it without the transform.
  bool ffn_down = false;
  RotationLearning learn = {};
  int n_threads = 0;  // 0: every core
};

// "hadamard seed=1" (" heads=0" without the per-head rotation, " learned=STEPS" when learned,
// " ffn_down=online" with it); "" when there is no rotation.
std::string rotation_label(const RotationOptions& o);

// Whether a Hadamard matrix of order n is built here: n = 2^k · m with m = 1, m = q + 1 for a
// prime q ≡ 3 (mod 4) (Paley I) or m = 2(q + 1) for a prime q ≡ 1 (mod 4) (Paley II).
bool has_hadamard(uint32_t n);
// n = m · 2^k as hadamard_matrix(n) factors it: H_n = H_m ⊗ H_(2^k), H_(2^k) the Walsh
// (Sylvester) matrix, H_m (m × m, entries ±1, row-major) from a Paley construction or [1].
struct HadamardFactor {
  uint32_t m = 1;
  std::vector<float> h{1.0f};
};
HadamardFactor hadamard_factor(uint32_t n);  // throws Unsupported like hadamard_matrix
// The Hadamard matrix of order n (entries ±1) as H_m ⊗ H_(2^k), row-major n × n, with the
// smallest such m. Throws Unsupported when has_hadamard(n) is false.
std::vector<float> hadamard_matrix(uint32_t n);
// An n × n orthogonal matrix, row-major: Hadamard: diag(random ±1) · H / √n; Random: Haar
// distributed (products of Householder reflections with random signs). The same seed gives
// the same matrix on every machine.
std::vector<float> orthogonal_matrix(RotationKind kind, uint32_t n, uint64_t seed);

// The GGUF key of ModelConfig::ffn_down_hadamard.
inline constexpr const char* kFfnDownHadamardKey = "lowbit.rotation.ffn_down";
// Throws Unsupported when `m` needs an online rotation that `what` (a format) cannot carry.
void refuse_online_rotation(const Model& m, const std::string& what);

// RMSNorm weights folded into the linears reading them (step 1 above); the model computes
// the same function.
Model fold_norms(const Model& m);
// The matrices a rotation applies, row-major: `residual` [n_embd, n_embd] and, when the
// values are rotated, one [head_dim, head_dim] per layer in `heads`.
struct RotationMatrices {
  std::vector<float> residual;
  std::vector<std::vector<float>> heads;
};
// o.kind's matrices for `c` (the same head matrix in every layer). Throws Argument when kind
// is Hadamard and n_embd (or head_dim) has no Hadamard matrix here (use Random then).
RotationMatrices rotation_matrices(const ModelConfig& c, const RotationOptions& o);

// Steps 1–3 with o.kind's matrices. Throws Unsupported for a W8A8 checkpoint, and Argument as
// rotation_matrices does or when o.learn.steps > 0 (learn_rotation does that).
Model rotate_model(const Model& m, const RotationOptions& o);
// Steps 1–3 with the given matrices (of the orders above; the function is kept when they are
// orthogonal), and o.ffn_down.
Model rotate_model(const Model& m, const RotationMatrices& r, const RotationOptions& o);

// Throws Argument naming the first setting of o.learn (with o.kind) that cannot run; with `m`,
// also against the model (its rounding, the weights' type against every block linear's rows).
void check_learning(const RotationOptions& o, const Model* m = nullptr);
// RotationLearning::weights from a name: "none" (F32) or a type quantize_rows writes;
// throws Argument naming the choices.
DType rotation_weights_from_name(const std::string& name);

struct LearnedRotationReport {
  std::vector<double> losses;  // per step
  double seconds = 0;
};
// SpinQuant: the rotation learned on windows of `tokens` (the calibration text) from o.kind's
// matrices (RotationOptions::learn), then fused into the weights as rotate_model does.
Model learn_rotation(const Model& m, const RotationOptions& o, const std::vector<int32_t>& tokens,
                     LearnedRotationReport* report = nullptr);

}  // namespace lowbit

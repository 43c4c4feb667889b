// Norm folding and residual / per-head rotations fused into the weights (lowbit/rotation.h).
#include "lowbit/rotation.h"

#include "core/blas.h"
#include "lowbit/awq.h"
#include "lowbit/error.h"
#include "lowbit/kernels.h"
#include "lowbit/lowrank.h"
#include "lowbit/threads.h"
#include "lowbit/topology.h"
#include "weight_edits.h"

namespace lowbit {
namespace {

constexpr const char* kEmbedding = "token_embd.weight";
constexpr const char* kHead = "output.weight";
constexpr const char* kFinalNorm = "output_norm.weight";

// The linears reading each RMSNorm weight: the norm groups of every block and the head.
std::vector<std::pair<std::string, std::vector<std::string>>> norm_readers(const ModelConfig& c) {
  std::vector<std::pair<std::string, std::vector<std::string>>> out;
  for (uint32_t l = 0; l < c.n_layer; ++l)
    for (const InputGroup& g : block_input_groups(c, l))
      if (g.source == InputSource::Norm) out.emplace_back(g.producer, g.weights);
  out.push_back({kFinalNorm, {kHead}});
  return out;
}

// A tied head gets its own copy of the embedding, since folding the final norm changes it.
Model untied(const Model& m) {
  if (!m.config.tied_embeddings) return m;
  Model out = m;
  out.add_f32(kHead, m.tensor(kEmbedding).shape, decoded_f32(m, kEmbedding));
  out.config.tied_embeddings = false;
  return out;
}

void fold_into(WeightEdits& w, const ModelConfig& c) {
  for (const auto& [norm, readers] : norm_readers(c)) {
    std::vector<float>& gamma = w.get(norm);
    for (const std::string& name : readers)
      awq_scale_columns(w.get(name), w.rows(name), gamma.size(), gamma);
    std::fill(gamma.begin(), gamma.end(), 1.0f);
  }
}

// w [rows, n] → w · q (q n × n): the residual read through q.
void rotate_columns(int threads, std::vector<float>& w, uint64_t rows, const std::vector<float>& q,
                    uint64_t n) {
  std::vector<float> out(w.size());
  blas::sgemm(threads, CblasNoTrans, CblasNoTrans, rows, n, n, 1.0f, w.data(), n, q.data(), n, 0.0f,
              out.data(), n);
  w.swap(out);
}

// w [n, cols] → qᵀ · w: a residual writer's output rotated by q.
void rotate_rows(int threads, std::vector<float>& w, uint64_t cols, const std::vector<float>& q,
                 uint64_t n) {
  std::vector<float> out(w.size());
  blas::sgemm(threads, CblasTrans, CblasNoTrans, n, cols, n, 1.0f, q.data(), n, w.data(), cols,
              0.0f, out.data(), cols);
  w.swap(out);
}

// Per head h of dimension d: attn_v rows of each KV head → hᵀ·rows (bias too), attn_output
// columns of each query head → columns·h. The values of every head come out rotated by h
// and attn_output undoes it.
void rotate_heads(int threads, WeightEdits& w, const ModelConfig& c, uint32_t layer,
                  const std::vector<float>& h) {
  const std::string p = "blk." + std::to_string(layer) + ".";
  const uint64_t d = c.head_dim, D = c.n_embd, Q = c.q_dim();
  std::vector<float> tmp;
  auto rotate_head_rows = [&](std::vector<float>& v, uint64_t cols) {
    tmp.resize(d * cols);
    for (uint64_t g = 0; g < c.n_head_kv; ++g) {
      float* rows = &v[g * d * cols];
      blas::sgemm(threads, CblasTrans, CblasNoTrans, d, cols, d, 1.0f, h.data(), d, rows, cols,
                  0.0f, tmp.data(), cols);
      std::copy(tmp.begin(), tmp.end(), rows);
    }
  };
  rotate_head_rows(w.get(p + "attn_v.weight"), D);
  if (c.attn_bias) rotate_head_rows(w.get(p + "attn_v.bias"), 1);
  std::vector<float>& o = w.get(p + "attn_output.weight");  // [D, Q]
  tmp.resize(D * d);
  for (uint64_t head = 0; head < c.n_head; ++head) {
    float* cols = &o[head * d];
    blas::sgemm(threads, CblasNoTrans, CblasNoTrans, D, d, d, 1.0f, cols, Q, h.data(), d, 0.0f,
                tmp.data(), d);
    for (uint64_t r = 0; r < D; ++r) std::copy_n(&tmp[r * d], d, &cols[r * Q]);
  }
}

Model with_online(Model m, const RotationOptions& o) {
  m.config.ffn_down_hadamard = m.config.ffn_down_hadamard || o.ffn_down;
  m.config.act_ranges.clear();  // rotated inputs have other ranges
  return m;
}

void check_rotatable(const Model& m, const RotationOptions& o) {
  refuse_lowrank(m, "a rotation");
  if (o.ffn_down && m.config.ffn_down_hadamard)
    fail(ErrorKind::Argument, "{}: ffn_down has its online rotation already", m.source);
  if (o.ffn_down && !has_hadamard(m.config.n_ff))
    fail(ErrorKind::Argument, "{}: no Hadamard transform of n_ff = {} for the online rotation",
         m.source, m.config.n_ff);
  if (!m.int8_weights.empty())
    fail(ErrorKind::Unsupported,
         "{}: a W8A8 checkpoint cannot be rotated (its int8 weights would not follow)", m.source);
}

void check_matrices(const Model& m, const RotationMatrices& r) {
  const ModelConfig& c = m.config;
  const uint64_t D = c.n_embd, d = c.head_dim;
  if (r.residual.size() != D * D)
    fail(ErrorKind::Argument, "{}: a residual rotation of {} values for n_embd = {}", m.source,
         r.residual.size(), D);
  if (!r.heads.empty() && r.heads.size() != c.n_layer)
    fail(ErrorKind::Argument, "{}: {} head rotations for {} layers", m.source, r.heads.size(),
         c.n_layer);
  for (const std::vector<float>& h : r.heads)
    if (h.size() != d * d)
      fail(ErrorKind::Argument, "{}: a head rotation of {} values for head_dim = {}", m.source,
           h.size(), d);
}

// Rows of ffn_down → H·row/√n: with its input transformed likewise, W'·x' = W·Hᵀ·H·x = W·x.
void rotate_ffn_down(WeightEdits& w, const ModelConfig& c) {
  for (uint32_t l = 0; l < c.n_layer; ++l) {
    const std::string name = "blk." + std::to_string(l) + ".ffn_down.weight";
    kernels::hadamard_rows(w.get(name).data(), c.n_embd, c.n_ff);
  }
}

}  // namespace

void refuse_online_rotation(const Model& m, const std::string& what) {
  if (m.config.ffn_down_hadamard)
    fail(ErrorKind::Unsupported,
         "{}: the model has an online rotation (ffn_down reads Hadamard-transformed inputs), "
         "which {} cannot carry: only lowbit's GGUF files do",
         m.source, what);
}

Model fold_norms(const Model& m) {
  const Model base = untied(m);
  WeightEdits w{base, {}};
  fold_into(w, base.config);
  return std::move(w).commit();
}

RotationMatrices rotation_matrices(const ModelConfig& c, const RotationOptions& o) {
  if (o.kind == RotationKind::Hadamard && !has_hadamard(c.n_embd))
    fail(ErrorKind::Argument, "no Hadamard matrix of order n_embd = {}; rotate with 'random'",
         c.n_embd);
  if (o.kind == RotationKind::Hadamard && o.heads && !has_hadamard(c.head_dim))
    fail(ErrorKind::Argument, "no Hadamard matrix of order head_dim = {}; rotate with 'random'",
         c.head_dim);
  RotationMatrices r;
  r.residual = orthogonal_matrix(o.kind, c.n_embd, o.seed);
  if (o.heads) r.heads.assign(c.n_layer, orthogonal_matrix(o.kind, c.head_dim, o.seed + 1));
  return r;
}

Model rotate_model(const Model& m, const RotationOptions& o) {
  if (o.learn.steps > 0)
    fail(ErrorKind::Argument,
         "{}: a learned rotation needs calibration text (learn_rotation, or quantize --calib)",
         m.source);
  if (o.kind == RotationKind::None && !o.ffn_down) return m;
  check_rotatable(m, o);
  if (o.kind == RotationKind::None) {
    WeightEdits w{m, {}};
    if (o.ffn_down) rotate_ffn_down(w, m.config);
    return with_online(std::move(w).commit(), o);
  }
  return rotate_model(m, rotation_matrices(m.config, o), o);
}

Model rotate_model(const Model& m, const RotationMatrices& r, const RotationOptions& o) {
  check_rotatable(m, o);
  check_matrices(m, r);
  const int threads = resolve_threads(o.n_threads);
  const Model base = untied(m);
  const ModelConfig& c = base.config;
  WeightEdits w{base, {}};
  if (o.ffn_down) rotate_ffn_down(w, c);
  fold_into(w, c);
  const uint64_t D = c.n_embd;
  rotate_columns(threads, w.get(kEmbedding), w.rows(kEmbedding), r.residual, D);
  for (const auto& [norm, readers] : norm_readers(c))
    for (const std::string& name : readers)
      rotate_columns(threads, w.get(name), w.rows(name), r.residual, D);
  for (uint32_t l = 0; l < c.n_layer; ++l)
    for (const std::string& name : block_residual_writers(l))
      rotate_rows(threads, w.get(name), base.tensor(name).row_len(), r.residual, D);
  for (uint32_t l = 0; l < r.heads.size(); ++l) rotate_heads(threads, w, c, l, r.heads[l]);
  return with_online(std::move(w).commit(), o);
}

}  // namespace lowbit

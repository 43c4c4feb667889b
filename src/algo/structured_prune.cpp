// Structured pruning (lowbit/structured_prune.h): per block, score the FFN channels and KV
// groups, keep the best in their original order, and cut the tensors to them.
#include "lowbit/structured_prune.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "algo/weight_edits.h"
#include "lowbit/error.h"
#include "lowbit/lowrank.h"

namespace lowbit {
namespace {

// Indices of the `keep` highest scores, ascending (ties: the lower index).
std::vector<uint32_t> best(const std::vector<double>& score, uint32_t keep) {
  std::vector<uint32_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), 0u);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](uint32_t a, uint32_t b) { return score[a] > score[b]; });
  idx.resize(keep);
  std::sort(idx.begin(), idx.end());
  return idx;
}

// Runs of `len` rows (or, with columns, column runs) starting at each index·len.
std::vector<float> take_rows(const std::vector<float>& w, uint64_t row_len,
                             const std::vector<uint32_t>& runs, uint64_t len) {
  std::vector<float> out;
  out.reserve(runs.size() * len * row_len);
  for (uint32_t r : runs)
    out.insert(out.end(), w.begin() + r * len * row_len, w.begin() + (r + 1) * len * row_len);
  return out;
}

std::vector<float> take_cols(const std::vector<float>& w, uint64_t rows, uint64_t cols,
                             const std::vector<uint32_t>& runs, uint64_t len) {
  std::vector<float> out;
  out.reserve(rows * runs.size() * len);
  for (uint64_t r = 0; r < rows; ++r)
    for (uint32_t c : runs)
      out.insert(out.end(), w.begin() + r * cols + c * len, w.begin() + r * cols + (c + 1) * len);
  return out;
}

double row_norm2(const float* x, uint64_t n) {
  double s = 0;
  for (uint64_t i = 0; i < n; ++i) s += double{x[i]} * x[i];
  return s;
}

double col_norm2(const std::vector<float>& w, uint64_t rows, uint64_t cols, uint64_t c) {
  double s = 0;
  for (uint64_t r = 0; r < rows; ++r) s += double{w[r * cols + c]} * w[r * cols + c];
  return s;
}

void prune_ffn(const Model& m, const std::string& p, uint32_t keep, const InputImportance& imp,
               Model& out) {
  const uint64_t n_ff = m.config.n_ff, d = m.config.n_embd;
  const std::vector<float> gate = decoded_f32(m, p + "ffn_gate.weight"),
                           up = decoded_f32(m, p + "ffn_up.weight"),
                           down = decoded_f32(m, p + "ffn_down.weight");
  const std::vector<float>* h2 = imp ? imp(p + "ffn_down.weight") : nullptr;
  if (h2 && h2->size() != n_ff)
    fail(ErrorKind::Argument, "statistics of '{}ffn_down.weight' have {} values, not {}", p,
         h2->size(), n_ff);
  std::vector<double> score(n_ff);
  for (uint64_t k = 0; k < n_ff; ++k) {
    const double act =
        h2 ? (*h2)[k] : std::sqrt(row_norm2(&gate[k * d], d) * row_norm2(&up[k * d], d));
    score[k] = act * col_norm2(down, d, n_ff, k);
  }
  const std::vector<uint32_t> kept = best(score, keep);
  out.reshape_f32(p + "ffn_gate.weight", {keep, d}, take_rows(gate, d, kept, 1));
  out.reshape_f32(p + "ffn_up.weight", {keep, d}, take_rows(up, d, kept, 1));
  out.reshape_f32(p + "ffn_down.weight", {d, keep}, take_cols(down, d, n_ff, kept, 1));
}

void prune_kv_groups(const Model& m, const std::string& p, uint32_t keep,
                     const InputImportance& imp, Model& out) {
  const ModelConfig& c = m.config;
  const uint64_t hd = c.head_dim, d = c.n_embd, q_dim = c.q_dim();
  const uint32_t per_group = c.n_head / c.n_head_kv;
  const std::vector<float> o = decoded_f32(m, p + "attn_output.weight"),
                           v = decoded_f32(m, p + "attn_v.weight");
  const std::vector<float>* a2 = imp ? imp(p + "attn_output.weight") : nullptr;
  if (a2 && a2->size() != q_dim)
    fail(ErrorKind::Argument, "statistics of '{}attn_output.weight' have {} values, not {}", p,
         a2->size(), q_dim);
  std::vector<double> score(c.n_head_kv, 0.0);
  for (uint64_t col = 0; col < q_dim; ++col) {
    const uint64_t g = col / hd / per_group;
    const double act = a2 ? (*a2)[col] : row_norm2(&v[(g * hd + col % hd) * d], d);
    score[g] += act * col_norm2(o, d, q_dim, col);
  }
  const std::vector<uint32_t> groups = best(score, keep);
  std::vector<uint32_t> heads;  // the query heads of the kept groups
  for (uint32_t g : groups)
    for (uint32_t h = 0; h < per_group; ++h) heads.push_back(g * per_group + h);
  const uint64_t q_rows = heads.size() * hd, kv_rows = groups.size() * hd;
  for (const char* t : {"attn_q", "attn_k", "attn_v"}) {
    const bool q = std::string(t) == "attn_q";
    const std::vector<uint32_t>& runs = q ? heads : groups;
    const std::string w = p + t + ".weight";
    out.reshape_f32(w, {q ? q_rows : kv_rows, d}, take_rows(decoded_f32(m, w), d, runs, hd));
    if (const std::string b = p + t + ".bias"; m.find(b))
      out.reshape_f32(b, {q ? q_rows : kv_rows}, take_rows(decoded_f32(m, b), 1, runs, hd));
  }
  out.reshape_f32(p + "attn_output.weight", {d, q_rows}, take_cols(o, d, q_dim, heads, hd));
}

}  // namespace

uint32_t kept_ffn_channels(uint32_t n_ff, double share) {
  const uint32_t unit = n_ff % 32 == 0 ? 32 : 1;
  const double units = std::round((1.0 - share) * n_ff / unit);
  return std::clamp<uint32_t>(static_cast<uint32_t>(units) * unit, unit, n_ff);
}

std::string structured_label(const ModelConfig& c, const StructuredPruneOptions& o) {
  std::string s;
  if (o.ffn_share > 0)
    s = fmt::format("ffn {}->{}", c.n_ff, kept_ffn_channels(c.n_ff, o.ffn_share));
  if (o.kv_groups > 0)
    s += fmt::format("{}kv_heads {}->{}", s.empty() ? "" : " ", c.n_head_kv,
                     c.n_head_kv - o.kv_groups);
  return s;
}

void validate(const StructuredPruneOptions& o) {
  if (!(o.ffn_share >= 0 && o.ffn_share < 1))
    fail(ErrorKind::Argument, "FFN pruning share {} is outside [0, 1)", o.ffn_share);
}

void validate(const StructuredPruneOptions& o, const Model& m) {
  validate(o);
  refuse_lowrank(m, "structured pruning");
  if (o.kv_groups >= m.config.n_head_kv && o.kv_groups > 0)
    fail(ErrorKind::Argument, "{}: removing {} KV groups leaves none of its {}", m.source,
         o.kv_groups, m.config.n_head_kv);
  if (o.ffn_share > 0 && m.config.ffn_down_hadamard)
    fail(ErrorKind::Argument,
         "{}: ffn_down reads its input through a Hadamard transform of {} values, which FFN "
         "pruning would change",
         m.source, m.config.n_ff);
  if (!m.int8_weights.empty())
    fail(ErrorKind::Argument, "{}: W8A8 checkpoints cannot be pruned structurally", m.source);
}

Model prune_structured(const Model& m, const StructuredPruneOptions& o,
                       const InputImportance& importance) {
  validate(o, m);
  Model out = m;
  const uint32_t keep_ff = kept_ffn_channels(m.config.n_ff, o.ffn_share);
  for (uint32_t l = 0; l < m.config.n_layer; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    if (keep_ff < m.config.n_ff) prune_ffn(m, p, keep_ff, importance, out);
    if (o.kv_groups > 0) prune_kv_groups(m, p, m.config.n_head_kv - o.kv_groups, importance, out);
  }
  const uint32_t per_group = m.config.n_head / m.config.n_head_kv;
  out.config.n_ff = keep_ff;
  out.config.act_ranges.clear();  // they were the unpruned network's
  out.config.n_head_kv = m.config.n_head_kv - o.kv_groups;
  out.config.n_head = out.config.n_head_kv * per_group;
  out.config.validate(m.source);
  out.index();
  return out;
}

}  // namespace lowbit

// The sequential GPTQ driver (lowbit/sequential.h).
#include "lowbit/sequential.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <optional>

#include "algo/sequential_checkpoint.h"
#include "algo/stats_reducer.h"
#include "awq_block.h"
#include "core/blas.h"
#include "core/parallel.h"
#include "lowbit/awq.h"
#include "lowbit/distributed.h"
#include "lowbit/engine.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/quant.h"
#include "lowbit/topology.h"
#include "quant/block_codecs.h"
#include "quant/debias.h"
#include "quant/tensor_errors.h"

extern "C" void dposv_(const char* uplo, const int* n, const int* nrhs, double* a, const int* lda,
                       double* b, const int* ldb, int* info);

namespace lowbit {
namespace {

// Σ over calibration tokens of one linear input beside H (StatsReducer): with fp targets
// C = XᵀX̃, with AWQ Σ|x_j| (its activation scale).
struct InputSums {
  uint64_t count = 0;
  std::vector<double> c, abs_sum;
};

constexpr int kStateTag = 31;  // a checkpoint's activations between rank 0 and their rank

// out[i, j] = Σ_t a[t, i] b[t, j] over `rows` tokens of `cols` features (f32).
void product(std::vector<float>& out, const float* a, const float* b, size_t rows, size_t cols,
             int n_threads) {
  out.resize(cols * cols);
  blas::sgemm(n_threads, CblasTrans, CblasNoTrans, cols, cols, rows, 1.0f, a, cols, b, cols, 0.0f,
              out.data(), cols);
}

// W' = W (C + λ)(H + λ)⁻¹: the weights whose output on X̃ best matches W's output on X.
std::vector<float> fp_target_weights(const std::vector<float>& w, uint64_t rows, uint64_t cols,
                                     std::vector<double> h, const std::vector<double>& c,
                                     double damp) {
  double mean = 0;
  for (uint64_t j = 0; j < cols; ++j) mean += h[j * cols + j];
  mean = mean > 0 ? mean / cols : 1.0;
  // Damping pulls W' towards W, not towards 0: minimise ||X Wᵀ - X̃ W'ᵀ||² + λ||W' - W||², so
  // W' (H + λ) = W (C + λ), which gives W' = W exactly when X̃ = X.
  std::vector<double> b = c;
  for (uint64_t j = 0; j < cols; ++j)
    h[j * cols + j] += damp * mean, b[j * cols + j] += damp * mean;
  // LAPACK is column-major: the row-major array B = C + λ reads as Bᵀ, so dposv solves
  // (H + λ) X = Bᵀ and leaves X = (H + λ)⁻¹Bᵀ, which read back row-major is B (H + λ)⁻¹.
  const int n = static_cast<int>(cols);
  int info = 0;
  dposv_("U", &n, &n, h.data(), &n, b.data(), &n, &info);
  if (info != 0)
    fail(ErrorKind::Argument,
         "sequential GPTQ: the damped Hessian is not positive definite (info {})", info);
  std::vector<double> wd(w.begin(), w.end()), out(rows * cols);
  cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(rows), n, n, 1.0,
              wd.data(), n, b.data(), n, 0.0, out.data(), n);
  return std::vector<float>(out.begin(), out.end());
}

// What decides a sequential run's bytes: the caller's description of the job, the
// calibration tokens, the planned types and the activation shapes.
uint64_t fingerprint(const std::string& job, const std::vector<int32_t>& tokens,
                     const std::map<std::string, DType>& types, size_t W, size_t T, size_t D) {
  JobHash h;
  h.add(job);
  h.add(tokens.data(), tokens.size() * sizeof(int32_t));
  for (const auto& [name, type] : types) {
    h.add(name);
    h.add(&type, sizeof type);
  }
  for (const size_t v : {W, T, D}) h.add(&v, sizeof v);
  return h.value;
}

}  // namespace

SequentialResult quantize_sequential(const Model& m, const std::vector<int32_t>& tokens,
                                     const std::map<std::string, DType>& types,
                                     const SequentialOptions& o) {
  const ModelConfig& c = m.config;
  const auto windows =
      sample_windows(tokens, o.calib.n_samples, o.calib.n_ctx, o.calib.seed, m.vocab.bos);
  const size_t W = windows.size(), T = o.calib.n_ctx, D = c.n_embd;
  // Under mpirun the ranks take the windows in turns (algo/stats_reducer.h): rank k keeps
  // windows k, k + N, ... and their activations; each block's linears are quantized over
  // the ranks and then sent to all (docs/DISTRIBUTED.md). The bytes do not depend on N.
  dist::Group& group = dist::world();
  const size_t n_ranks = static_cast<size_t>(group.size()), rank = group.rank();
  if (n_ranks > 1 && (o.learn || o.awq || o.fp_targets))
    fail(ErrorKind::Argument,
         "over several MPI ranks the block-by-block driver runs GPTQ alone, not {}: run this "
         "job as one process",
         o.learn ? "learned rounding"
         : o.awq ? "AWQ"
                 : "fp targets");
  if (n_ranks > W)
    fail(ErrorKind::Argument, "{} ranks for {} calibration windows: use at most {} ranks", n_ranks,
         W, W);
  std::vector<size_t> mine;  // the global index of each window kept here
  for (size_t i = rank; i < W; i += n_ranks) mine.push_back(i);
  const size_t n_rounds = (W + n_ranks - 1) / n_ranks;
  auto begin_round = [&](StatsReducer& reducer, size_t round) {
    std::vector<bool> present(n_ranks);
    for (size_t k = 0; k < n_ranks; ++k) present[k] = round * n_ranks + k < W;
    reducer.begin_round(std::move(present));
    return round < mine.size();  // whether this rank has a window (local index `round`)
  };
  // Both engines run one window at a time: a KV cache of T positions (not the model's context).
  const EngineOptions eo{resolve_threads(o.calib.n_threads), static_cast<uint32_t>(T)};
  EngineOptions quant_options = eo;
  quant_options.fast = o.fast_kernels;
  Engine quant(m, quant_options);  // the quantized path: weights replaced as they are done
  // The unquantized reference, for fp targets and learned rounding (it has its own KV cache).
  std::optional<Engine> ref;
  if (o.learn && o.awq)
    fail(ErrorKind::Argument, "learned rounding does not combine with AWQ scales");
  if (o.fp_targets || o.learn) ref.emplace(m, eo);
  SequentialResult res;
  std::map<std::string, TensorView> views;  // what `quant` reads for the weights done so far
  auto planned = [&](const std::string& name) -> const DType* {
    auto it = types.find(name);
    if (it == types.end()) return nullptr;
    const DType t = it->second;
    if (t == DType::F16 || t == DType::BF16 || t == DType::F32)  // pruned onto the float grid
      return o.sparsity.active() && is_block_linear(name) ? &it->second : nullptr;
    return !traits(t).is_float && can_quantize_to(t) ? &it->second : nullptr;
  };
  const int n_threads = resolve_threads(o.calib.n_threads);
  // Points the quantized path at the finished res.tensors[src.name].
  auto use = [&](const TensorView& src, DType type) {
    views[src.name] = view_of_bytes(src, type, res.tensors[src.name].bytes);
    quant.replace_weight(src.name, &views[src.name]);
    if (!ref) release_mapped_pages(src.data, src.nbytes);  // only the reference reads it again
  };
  // Stores a quantized weight with its errors against `w` (what was quantized: the weight,
  // scaled by AWQ if it was) and points the quantized path at it.
  // hf: the input's H in f32 (hessian_f32), or null.
  auto install = [&](const TensorView& src, DType type, std::vector<uint8_t> bytes,
                     const std::vector<float>& w, const std::vector<float>* hf) {
    PrecomputedTensor& t = res.tensors[src.name];
    const TensorErrors e = measure_errors(type, w, src.row_len(), bytes, hf, n_threads);
    t.rel_rms_error = e.weight;
    t.rel_output_error = e.output;
    if (o.sparsity.active() && is_block_linear(src.name))
      t.zero_share = decoded_zero_share(type, bytes, w.size());
    else if (hf && !traits(type).is_float) {  // plain rounding of the same weights, for comparison
      std::vector<uint8_t> plain(bytes.size());
      quantize_rows(type, w.data(), src.shape[0], src.row_len(), nullptr, n_threads, plain.data());
      t.rel_output_error_rtn = measure_errors(type, w, src.row_len(), plain, hf, n_threads).output;
    }
    t.bytes = std::move(bytes);
    use(src, type);
  };

  // The finished tensors whose names start with `prefix`, for a checkpoint.
  auto finished = [&](const std::string& prefix) {
    std::vector<std::pair<std::string, const PrecomputedTensor*>> out;
    for (auto it = res.tensors.lower_bound(prefix);
         it != res.tensors.end() && it->first.rfind(prefix, 0) == 0; ++it)
      out.emplace_back(it->first, &it->second);
    return out;
  };
  // Hands the finished tensors whose names start with `prefix` to on_done and frees them; the
  // quantized path reads its original weights there again (it does not run them any more).
  // Under several ranks only rank 0 hands them over or keeps them; the others drop them.
  auto hand_over = [&](const std::string& prefix) {
    if (!o.on_done && rank == 0) return;
    for (auto it = res.tensors.lower_bound(prefix);
         it != res.tensors.end() && it->first.rfind(prefix, 0) == 0;) {
      if (rank == 0) o.on_done(it->first, it->second);
      if (views.count(it->first)) {
        quant.replace_weight(it->first, &m.tensor(it->first));
        views.erase(it->first);
      }
      it = res.tensors.erase(it);
    }
  };

  // Statistics of the current block's linear inputs, filled by the hooks window by window.
  std::map<std::string, InputSums> sums;
  // this window's reference inputs, per weight
  std::map<std::string, std::vector<float>> fp_inputs;
  // With fp targets, this window's C for the current input, kept in f32 while the linears
  // sharing the input (lowbit/topology.h: q/k/v, gate/up) add it to their sums.
  std::string last_group;
  std::vector<float> last_c;
  bool collect = false;
  StatsReducer reducer(group, true, n_threads);  // H = Σ x xᵀ / n of every linear input
  auto on_input = [&](const std::string& name, const float* x, size_t rows, size_t cols) {
    if (!collect) return;
    reducer.add(name, x, rows, cols);
    if (!o.fp_targets && !o.awq) return;  // (both run as one process only)
    if (const std::string key = input_group_key(name); key != last_group) {
      if (o.fp_targets) product(last_c, fp_inputs.at(name).data(), x, rows, cols, n_threads);
      last_group = key;
    }
    InputSums& s = sums[name];
    if (s.c.empty() && o.fp_targets) s.c.assign(cols * cols, 0.0);
    for (size_t i = 0; i < s.c.size(); ++i) s.c[i] += last_c[i];
    if (s.abs_sum.empty()) s.abs_sum.assign(cols, 0.0);
    for (size_t t = 0; t < rows; ++t)
      for (size_t j = 0; j < cols; ++j) s.abs_sum[j] += std::fabs(x[t * cols + j]);
    s.count += rows;
  };
  quant.set_linear_input_hook(on_input);
  if (ref)
    ref->set_linear_input_hook(
        [&](const std::string& name, const float* x, size_t rows, size_t cols) {
          if (collect && o.fp_targets) fp_inputs[name].assign(x, x + rows * cols);
        });
  // AWQ on one block: each group of linears sharing an input (lowbit/topology.h) gets its own
  // scales, folded into what produces that input (the RMSNorm weight, or ffn_up's rows for
  // ffn_down; attn_output's input, shared across KV heads, is left alone as in the paper).
  // `block` scores α by the block output (awq_block.h); without it, by each linear's output.
  auto apply_awq = [&](uint32_t layer, std::map<std::string, std::vector<float>>& w,
                       std::map<std::string, std::vector<double>>& h, AwqBlockSearch* block) {
    for (const InputGroup& g : block_input_groups(c, layer)) {
      if (g.source == InputSource::KvHeadRows) continue;
      std::vector<AwqWeight> ws;
      bool all_planned = true;
      for (const std::string& n : g.weights) {
        all_planned = all_planned && w.count(n);
        if (!all_planned) break;  // a member kept in floats: leave the group unscaled
        const TensorView& t = m.tensor(n);
        ws.push_back({&w[n], t.shape[0], t.row_len(), *planned(n)});
      }
      if (!all_planned || (g.source == InputSource::Rows && !w.count(g.producer))) continue;
      const InputSums& st = sums.at(g.weights[0]);
      std::vector<double> mean_abs(st.abs_sum.size());
      for (size_t j = 0; j < mean_abs.size(); ++j) mean_abs[j] = st.abs_sum[j] / st.count;
      const auto [lo, hi] = std::minmax_element(mean_abs.begin(), mean_abs.end());
      res.awq_input_spread[g.weights[0]] = *hi / std::max(*lo, 1e-12);
      const AwqScales sc = block ? block->search(g, w, types, mean_abs, o.awq_grid)
                                 : awq_search(ws, h[g.weights[0]], mean_abs, o.awq_grid);
      res.awq_alpha[g.weights[0]] = sc.alpha;
      if (sc.alpha == 0) continue;
      for (size_t k = 0; k < ws.size(); ++k) {
        awq_scale_columns(w[g.weights[k]], ws[k].rows, ws[k].cols, sc.s);
        awq_unscale_hessian(h[g.weights[k]], sc.s);
      }
      if (g.source == InputSource::Rows) {
        const TensorView& t = m.tensor(g.producer);
        awq_unscale_rows(w[g.producer], t.shape[0], t.row_len(), sc.s);
      } else {
        std::vector<float> gamma = to_f32(m.tensor(g.producer));
        awq_unscale_norm(gamma, sc.s);
        quant.set_norm(g.producer, gamma);
        PrecomputedTensor& t = res.tensors[g.producer];
        t.bytes.resize(gamma.size() * sizeof(float));
        std::memcpy(t.bytes.data(), gamma.data(), t.bytes.size());
      }
    }
  };

  // Quantizes the weights whose statistics were just collected (one block, or the head).
  // The calibration windows' activations at the current block's input: quantized path (and
  // the unquantized one, for fp targets).
  std::vector<std::vector<float>> xq(mine.size(), std::vector<float>(T * D));
  std::vector<std::vector<float>> xf(ref ? mine.size() : 0, std::vector<float>(T * D));
  // Learning on the teacher's inputs (LKD): block l's unquantized inputs, kept for its learning.
  const bool lkd = o.learn && o.learn->teacher_inputs;
  std::vector<std::vector<float>> xin(lkd ? xf.size() : 0);
  // The planned weights of step `layer` (block layer; the head at n_layer), each with the rank
  // that quantizes it: the longest GPTQ sweeps first, each to the least loaded rank.
  auto owners_of = [&](uint32_t layer) {
    std::vector<std::string> names;
    if (layer < c.n_layer) {
      const std::string prefix = "blk." + std::to_string(layer) + ".";
      for (auto it = types.lower_bound(prefix);
           it != types.end() && it->first.rfind(prefix, 0) == 0; ++it)
        if (planned(it->first)) names.push_back(it->first);
    } else if (!c.tied_embeddings && planned("output.weight")) {
      names.push_back("output.weight");
    }
    std::vector<double> cost;
    for (const std::string& n : names) {
      const TensorView& t = m.tensor(n);
      cost.push_back(
          gptq_sweep_cost(static_cast<double>(t.shape[0]), static_cast<double>(t.row_len())));
    }
    const std::vector<int> rank_of = spread_by_cost(cost, static_cast<int>(n_ranks));
    std::map<std::string, int> out;
    for (size_t i = 0; i < names.size(); ++i) out[names[i]] = rank_of[i];
    return out;
  };
  // Under several ranks: each quantized weight of a block, with its figures, from its rank
  // to every rank (each moves its own windows through the whole quantized block).
  auto share = [&](const std::map<std::string, int>& owner) {
    for (const auto& [name, from] : owner) {
      const TensorView& src = m.tensor(name);
      const DType type = *planned(name);
      PrecomputedTensor& t = res.tensors[name];
      std::array<double, 4> f{t.rel_rms_error, t.rel_output_error, t.rel_output_error_rtn,
                              t.zero_share};
      group.broadcast(from, f.data(), sizeof f);
      const bool here = from == static_cast<int>(rank);
      if (!here) {
        t.rel_rms_error = f[0], t.rel_output_error = f[1], t.rel_output_error_rtn = f[2],
        t.zero_share = f[3];
        t.bytes.resize(src.n_values() / traits(type).block_size * traits(type).type_size);
      }
      group.broadcast(from, t.bytes.data(), t.bytes.size());
      if (!here) use(src, type);
    }
  };
  // block-scored AWQ: the fp32 block's outputs on the first windows
  std::vector<std::vector<float>> awq_targets;
  auto quantize_collected = [&](const std::string& prefix, uint32_t layer) {
    std::map<std::string, std::vector<float>> w;
    std::map<std::string, std::vector<double>> h;
    // AWQ rescales groups of weights together; otherwise each weight is read as f32 only
    // when its turn comes and dropped after (one matrix in f32 at a time).
    const bool awq_block = o.awq && !prefix.empty();
    const std::map<std::string, int> owner = owners_of(layer);
    CalibrationStats stats = reducer.finish(false, [&](const std::string& name) {
      const auto it = owner.find(name);
      return it == owner.end() ? 0 : it->second;
    });
    for (auto& [name, st] : stats.by_weight) {
      const auto it = owner.find(name);
      if (it == owner.end() || it->second != static_cast<int>(rank)) continue;
      w[name] = awq_block ? to_f32(m.tensor(name)) : std::vector<float>();
      auto& hn = h[name];
      hn = std::move(st.xtx);  // H = Σxxᵀ / n, in place: an 8192-wide input's H is 512 MB
      for (double& v : hn) v /= st.count;
    }
    stats.by_weight.clear();
    // its rounded weights stay in the engine until replaced below
    std::optional<AwqBlockSearch> block;
    if (awq_block) {
      if (o.awq_objective == AwqObjective::Block)
        block.emplace(quant, m, layer, xq, awq_targets, T, n_threads);
      apply_awq(layer, w, h, block ? &*block : nullptr);
    }
    const bool learn = o.learn && layer < c.n_layer;
    std::vector<LearnedLinear> learned;  // learn: the start roundings, installed after training
    // ... with their W and H (f32), for the errors reported when they are installed
    std::map<std::string, std::pair<std::vector<float>, std::vector<float>>> kept;
    for (auto& [name, wn] : w) {
      const TensorView& src = m.tensor(name);
      if (wn.empty()) wn = to_f32(src);
      const DType type = *planned(name);
      const uint64_t rows = src.shape[0], cols = src.row_len();
      std::vector<uint8_t> bytes(rows * cols / traits(type).block_size * traits(type).type_size);
      std::vector<float> hf = hessian_f32(&h[name], cols);  // for the errors; H itself goes to GPTQ
      // learn with GPTQ: each value as GPTQ's sweep met it (where the learning starts)
      std::vector<float> met(learn && o.gptq_rounding ? rows * cols : 0);
      if (!o.gptq_rounding) {  // AWQ: round to nearest (clipped per block), then each K sub-block's
                               // scale by the output error
        if (o.awq_clip)
          awq_clip_quantize_rows(type, wn.data(), rows, cols, h[name], o.awq_clip_options,
                                 n_threads, bytes.data());
        else
          quant::quantize_rows(type, wn.data(), rows, cols, nullptr, false, n_threads,
                               bytes.data());
        awq_refine_sub_scales(type, wn.data(), rows, cols, h[name], o.awq_sub_passes, n_threads,
                              bytes.data());
        // then no shrink of the outputs, as GPTQ (quant/debias.h)
        quant::debias_rows_output(type, wn.data(), rows, cols, hf.data(), n_threads, bytes.data());
      } else {
        std::vector<float> fp;  // with fp targets: the weights GPTQ aims at instead of wn
        if (o.fp_targets) {
          const InputSums& st = sums.at(name);
          std::vector<double> cc(st.c.size());
          for (size_t i = 0; i < cc.size(); ++i) cc[i] = st.c[i] / st.count;
          fp = fp_target_weights(wn, rows, cols, h[name], cc, o.gptq.damp);
        }
        GptqOptions g = o.gptq;
        std::vector<uint8_t> mask;  // magnitude, wanda: chosen first, kept by the sweep
        if (o.sparsity.active() && is_block_linear(name)) {
          mask = prepare_pruning(name, o.prune, o.sparsity, wn, rows, cols, nullptr, &h[name], g);
          g.mask = mask.empty() ? nullptr : mask.data();
        }
        const float* target = o.fp_targets ? fp.data() : wn.data();
        gptq_quantize_rows(type, target, rows, cols, std::move(h[name]), nullptr, g,
                           bytes.data(), met.empty() ? nullptr : met.data());
      }
      if (learn) {
        LearnedLinear l{train::linear_index(name),         type, rows, cols, std::move(bytes),
                        met.empty() ? wn : std::move(met), {}};
        for (uint64_t j = 0; j < cols; ++j) l.importance.push_back(hf[j * cols + j]);
        learned.push_back(std::move(l));
        kept[name] = {std::move(wn), std::move(hf)};
        std::vector<double>().swap(h[name]);  // (moved into GPTQ, or still here after RTN)
        continue;
      }
      install(src, type, std::move(bytes), wn, &hf);
      std::vector<float>().swap(wn);
      std::vector<double>().swap(h[name]);
    }
    if (learn && !learned.empty()) {  // (a block kept in floats has nothing to learn)
      const std::string label = "block " + std::to_string(layer);
      auto on_step = [&](int step, int steps, double loss) {
        if (o.on_learn_step) o.on_learn_step(layer, step, steps, loss);
      };
      res.learned.push_back(
          learn_block_rounding(train::block_shape(m), train::block_weights(m, layer), learned,
                               lkd ? xin : xq, xf, T, *o.learn, label, n_threads, on_step));
      res.learned.back().layer = layer;
      for (LearnedLinear& l : learned) {
        const std::string name = prefix + train::kLinearNames[l.index] + ".weight";
        auto& [wn, hf] = kept.at(name);
        install(m.tensor(name), l.type, std::move(l.bytes), wn, &hf);
      }
    }
    if (n_ranks > 1 && layer < c.n_layer) share(owner);
    sums.clear();
    last_group.clear();
  };

  // Checkpoints: a resumed run takes the finished tensors and block first_layer's inputs
  // from the last one, and hands the tensors over as the interrupted run did.
  // Under several ranks rank 0 keeps the checkpoint (the same files as one process) and the
  // activations travel: each window between rank 0 and the rank that keeps it.
  std::optional<SequentialCheckpoint> checkpoint;
  uint32_t first_layer = 0;
  const size_t TD = T * D;
  auto save_state = [&](uint32_t next_layer) {
    if (rank != 0) {
      for (const Activations* a : {&xq, &xf})
        for (const auto& x : *a) group.send(0, kStateTag, x.data(), TD * sizeof(float));
      return;
    }
    std::vector<float> buf(n_ranks > 1 ? TD : 0);
    checkpoint->save_state(
        next_layer, W, TD, ref.has_value(), [&](bool reference, size_t i) -> const float* {
          if (i % n_ranks == 0) return (reference ? xf : xq)[i / n_ranks].data();
          group.recv(static_cast<int>(i % n_ranks), kStateTag, buf.data(), TD * sizeof(float));
          return buf.data();
        });
  };
  if (!o.checkpoint_dir.empty()) {
    checkpoint.emplace(o.checkpoint_dir, fingerprint(o.fingerprint, tokens, types, W, T, D));
    if (rank == 0 && o.resume)
      first_layer = checkpoint->stored_layer(W, TD, ref.has_value());
    else if (rank == 0)
      checkpoint->remove();
    group.broadcast(0, &first_layer, sizeof first_layer);
    if (first_layer > 0 && rank == 0) {
      checkpoint->load_windows(
          W, TD, ref.has_value(), [&](bool reference, size_t i, const void* x) {
            if (i % n_ranks == 0)
              std::memcpy((reference ? xf : xq)[i / n_ranks].data(), x, TD * sizeof(float));
            else
              group.send(static_cast<int>(i % n_ranks), kStateTag, x, TD * sizeof(float));
          });
    } else if (first_layer > 0) {
      for (Activations* a : {&xq, &xf})
        for (auto& x : *a) group.recv(0, kStateTag, x.data(), TD * sizeof(float));
    }
    for (uint32_t step = 0; rank == 0 && first_layer > 0 && step <= first_layer; ++step)
      for (auto& [name, t] : checkpoint->load_step(step)) {
        res.tensors[name] = std::move(t);
        hand_over(name);
      }
  }
  // The embedding has no input statistics: it is rounded, and the quantized path starts from it.
  const TensorView& embd = m.tensor("token_embd.weight");
  // In row chunks: a 128k-row embedding is 1 GB as f32. (A resumed run has it already.)
  if (const DType* t = first_layer == 0 ? planned(embd.name) : nullptr) {
    PrecomputedTensor& e = res.tensors[embd.name];
    const uint64_t rows = embd.shape[0], cols = embd.row_len();
    const uint64_t row_bytes = cols / traits(*t).block_size * traits(*t).type_size;
    const uint64_t step = std::max<uint64_t>(1, kDefaultChunkValues / cols);
    e.bytes.resize(rows * row_bytes);
    ErrorSums err;
    for (uint64_t r0 = 0; r0 < rows; r0 += step) {
      const TensorView piece = row_slice(embd, r0, std::min(rows, r0 + step));
      const std::vector<float> x = to_f32(piece);
      std::vector<uint8_t> q(piece.shape[0] * row_bytes);
      quantize_rows(*t, x.data(), piece.shape[0], cols, nullptr, n_threads, q.data());
      err.add(weight_error_sums(*t, x, cols, q, n_threads));
      std::copy(q.begin(), q.end(), e.bytes.begin() + r0 * row_bytes);
      if (!ref) release_mapped_pages(piece.data, piece.nbytes);  // the reference reads it again
    }
    e.rel_rms_error = err.relative_rms();
    views[embd.name] = view_of_bytes(embd, *t, e.bytes);
    quant.replace_weight(embd.name, &views[embd.name]);
  }
  for (size_t i = 0; i < mine.size() && first_layer == 0; ++i) {
    quant.embed(windows[mine[i]].data(), T, xq[i].data());
    if (ref) ref->embed(windows[mine[i]].data(), T, xf[i].data());
  }
  res.activation_bytes = (xq.size() + xf.size() + xin.size()) * T * D * sizeof(float);
  if (checkpoint && first_layer == 0 && rank == 0) checkpoint->save_step(0, finished(embd.name));
  hand_over(embd.name);

  std::vector<float> scratch(T * D);
  if (o.awq && o.awq_objective == AwqObjective::Block)
    awq_targets.resize(std::min<size_t>(W, std::max(1, o.awq_windows)));
  for (uint32_t l = first_layer; l < c.n_layer; ++l) {
    const auto t0 = std::chrono::steady_clock::now();
    const std::string block_prefix = "blk." + std::to_string(l) + ".";
    collect = true;  // 1. statistics of block l on the quantized path (reference inputs alongside)
    for (size_t i = 0; i < n_rounds; ++i) {  // i: the window's index on this rank
      // A rank without a window in the last round runs zeros to take part in the sums.
      const bool has = begin_round(reducer, i);
      if (ref &&
          has) {  // also moves the reference activations on: xf is then the fp block's output
        if (lkd) xin[i] = xf[i];
        ref->reset();
        ref->forward_layer(l, xf[i].data(), T);
      }
      if (has)
        scratch = xq[i];
      else
        std::fill(scratch.begin(), scratch.end(), 0.0f);
      quant.reset();
      quant.forward_layer(l, scratch.data(), T);
      if (has && i < awq_targets.size()) awq_targets[i] = scratch;
    }
    collect = false;
    std::vector<float>().swap(last_c);    // free the per-window products before quantizing
    quantize_collected(block_prefix, l);  // 2. quantize the block's linears
    for (size_t i = 0; i < mine.size();
         ++i) {  // 3. the next block's inputs, through the quantized block
      quant.reset();
      quant.forward_layer(l, xq[i].data(), T);
    }
    if (checkpoint) {  // the block's tensors first: a state names only finished steps
      if (rank == 0) checkpoint->save_step(l + 1, finished(block_prefix));
      save_state(l + 1);
    }
    hand_over(block_prefix);
    res.layer_seconds.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    if (o.on_layer) o.on_layer(l, c.n_layer, res.layer_seconds.back());
  }
  // The output head, on the final hidden states of the quantized path.
  const std::string head = c.tied_embeddings ? "" : "output.weight";
  if (!head.empty() && planned(head)) {
    const std::string block_prefix;  // no AWQ for the head
    std::vector<float> hq(T * D), hf(T * D);
    collect = true;
    for (size_t i = 0; i < n_rounds; ++i) {
      if (begin_round(reducer, i))
        quant.final_norm(xq[i].data(), T, hq.data());
      else
        std::fill(hq.begin(), hq.end(), 0.0f);
      if (o.fp_targets) {
        ref->final_norm(xf[i].data(), T, hf.data());
        fp_inputs[head] = hf;
      }
      last_group.clear();
      on_input(head, hq.data(), T, D);
    }
    collect = false;
    quantize_collected(block_prefix, c.n_layer);
    hand_over(head);
  }
  return res;
}

}  // namespace lowbit

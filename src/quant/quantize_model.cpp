// Streams a model into a quantized GGUF file: the writer asks for one tensor at a time,
// which is loaded as f32, quantized by all threads (rows split between them), measured
// and released. Peak memory is about one tensor in f32 plus its quantized bytes.
#include <cblas.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>

#include "algo/sequential_checkpoint.h"
#include "core/parallel.h"
#include "formats/model_writer.h"
#include "lowbit/distributed.h"
#include "lowbit/error.h"
#include "lowbit/file_io.h"
#include "lowbit/lowrank.h"
#include "lowbit/quant.h"
#include "lowbit/quantize.h"
#include "lowbit/topology.h"
#include "quant/error_sums.h"
#include "quant/tensor_errors.h"

namespace lowbit {
namespace {

// Quantizes rows of x into out: GPTQ when `gptq` and H are given and the type is a block
// type, round to nearest otherwise.
void quantize_tensor(DType type, const std::vector<float>& x, uint64_t row_len,
                     const float* importance, const std::vector<double>* hessian,
                     const GptqOptions* gptq, int n_threads, std::vector<uint8_t>& out) {
  const uint64_t n_rows = x.size() / row_len;
  const auto& tr = traits(type);
  const uint64_t row_bytes = row_len / tr.block_size * tr.type_size;
  out.resize(n_rows * row_bytes);
  const bool float_grid = gptq && (gptq->prune.active() || gptq->mask);  // pruning onto F16
  if (gptq && hessian && !hessian->empty() && (!tr.is_float || float_grid)) {
    GptqOptions g = *gptq;
    g.n_threads = n_threads;
    gptq_quantize_rows(type, x.data(), n_rows, row_len, *hessian, importance, g, out.data());
  } else {
    quantize_rows(type, x.data(), n_rows, row_len, importance, n_threads, out.data());
  }
}

// Quantized rows of `t` (model layout) with the q/k rows moved to `target` as load_rows does.
std::vector<uint8_t> rows_in_layout(const Model& m, const TensorView& t,
                                    const std::vector<uint8_t>& bytes, RopeLayout target) {
  const uint64_t rows = t.shape[0];
  std::vector<float> index(rows), moved(rows);
  for (uint64_t r = 0; r < rows; ++r) index[r] = static_cast<float>(r);
  TensorView one_column = t;
  one_column.shape = {rows};
  one_column.dtype = DType::F32;
  one_column.data = reinterpret_cast<const uint8_t*>(index.data());
  one_column.nbytes = rows * sizeof(float);
  moved = load_rows(m, one_column, target);  // moved[r] = source row of row r
  const uint64_t rb = bytes.size() / rows;
  std::vector<uint8_t> out(bytes.size());
  for (uint64_t r = 0; r < rows; ++r)
    std::copy_n(bytes.begin() + static_cast<uint64_t>(moved[r]) * rb, rb, out.begin() + r * rb);
  return out;
}

// The report figures of a tensor quantized elsewhere: by the sequential driver, another
// rank or a run that was resumed.
void take_figures(TensorReport& r, const PrecomputedTensor& t) {
  r.rel_rms_error = t.rel_rms_error;
  r.rel_output_error = t.rel_output_error;
  r.rel_output_error_rtn = t.rel_output_error_rtn;
  r.zero_share = t.zero_share;
}

// Metadata of a quantized file: the model's, the file type (the preset's, or guessed from a
// mix), the preset and method, and rope_freqs.
void set_quantized_metadata(const Model& m, const QuantizePlanOptions& o,
                            const std::vector<TensorPlan>& plan, const std::string& method,
                            GgufWriter& w) {
  const Preset& preset = require_preset(o.preset);
  const bool mix = !o.recipe.empty();  // the preset's rules are not what chose the types
  set_model_metadata(m, w, mix ? mix_file_type(m, plan) : preset.file_type);
  w.set("general.quantization_version", GgufValue::of_u32(2));
  w.set("lowbit.quantize.preset", GgufValue::of_string(mix ? "mix" : preset.name));
  w.set("lowbit.quantize.method", GgufValue::of_string(method));
  add_rope_freqs(m, w);
}

}  // namespace

struct GgufQuantizeWriter::Impl {
  const Model& m;
  QuantizeOptions o;
  std::vector<TensorPlan> plan;
  int n_threads;
  RopeLayout target;
  GgufWriter layout;
  std::unique_ptr<GgufStreamWriter> out;
  size_t first = 0;  // the layout index of model tensor 0
  // Under mpirun: each tensor's rank. Rank 0 writes the file; the others send it their
  // tensors' bytes (kept in `outgoing` until sent) and their report figures.
  dist::Group& group = dist::world();
  std::vector<int> owner;
  std::deque<std::vector<uint8_t>> outgoing;
  std::deque<std::array<double, 4>> outgoing_figures;
  // Rank 0's checkpoint: `restored[i]` when a resumed run found tensor i there (every rank
  // knows); `current` collects the bytes of the tensor being written, for saving.
  std::optional<SequentialCheckpoint> checkpoint;
  std::vector<uint8_t> restored;
  std::vector<uint8_t> current;
  QuantizeReport report;
  size_t n_done = 0;
  std::chrono::steady_clock::time_point t0 = std::chrono::steady_clock::now();

  Impl(const Model& model, const std::string& path, const QuantizeOptions& opts)
      : m(model),
        o(opts),
        n_threads(resolve_threads(opts.n_threads)),
        target(gguf_rope_layout(model.config)) {
    QuantizePlanOptions plan_opts = o.plan;
    plan_opts.has_importance = o.plan.has_importance || o.importance || (o.use_gptq && o.hessian);
    plan = plan_quantization(m, plan_opts);
    report.method = !o.method.empty()         ? o.method
                    : o.use_gptq && o.hessian ? "gptq"
                    : o.importance            ? "rtn-importance"
                                              : "rtn";
    set_quantized_metadata(m, plan_opts, plan, report.method, layout);
    report.rotation = o.rotation;
    if (!o.rotation.empty())
      layout.set("lowbit.quantize.rotation", GgufValue::of_string(o.rotation));
    report.structured = o.structured;
    if (!o.structured.empty())
      layout.set("lowbit.quantize.structured", GgufValue::of_string(o.structured));
    if (o.sparsity.active()) {
      report.sparsity = sparsity_label(o.prune, o.sparsity);
      layout.set("lowbit.quantize.sparsity", GgufValue::of_string(report.sparsity));
    }
    first = layout.tensors().size();  // tensors the metadata brought (rope_freqs) come first
    report.tensors.resize(plan.size());
    for (size_t i = 0; i < plan.size(); ++i) {
      const TensorView& src = m.tensors[i];
      TensorReport& rep = report.tensors[i];
      rep = {src.name, src.shape, plan[i].type, 0, 0, 0, 0, 0, plan[i].note, plan[i].reason};
      if (!tensor_bytes(rep.type, src.row_len(), src.n_values(), &rep.bytes))
        fail(ErrorKind::Argument, "tensor '{}': cannot store {} as {}", src.name,
             shape_string(src.shape), dtype_name(rep.type));
      report.total_bytes += rep.bytes;
      if (!is_lowrank_tensor(src.name)) report.n_weights += src.n_values();  // bytes, not weights
      OutputTensor t;
      t.info = src;
      t.info.dtype = rep.type;
      t.nbytes = rep.bytes;
      layout.add_tensor(std::move(t));
    }
    if (group.size() > 1)
      owner = !o.owner.empty() ? o.owner : spread_tensors(m, o.use_gptq && o.hessian, group.size());
    if (!owner.empty() && owner.size() != plan.size())
      fail(ErrorKind::Argument, "{} tensor ranks for {} tensors", owner.size(), plan.size());
    if (group.rank() == 0) out = std::make_unique<GgufStreamWriter>(layout, path);
    open_checkpoint();
  }

  void open_checkpoint() {
    restored.assign(plan.size(), 0);
    if (o.checkpoint_dir.empty()) return;
    if (group.rank() == 0) {
      JobHash h;
      h.add(o.fingerprint);
      h.add(report.method);
      for (const TensorPlan& p : plan) {
        h.add(p.name);
        h.add(&p.type, sizeof p.type);
      }
      checkpoint.emplace(o.checkpoint_dir, h.value);
      Activations none;
      if (o.resume && checkpoint->load_state(none, none) != 0) {
        for (size_t i = 0; i < plan.size(); ++i) restored[i] = checkpoint->has_step(i);
      } else {
        checkpoint->remove();
        checkpoint->save_state(1, none, none);  // the job's fingerprint
      }
    }
    group.broadcast(0, restored.data(), restored.size());
  }

  // Rank 0: tensor i from a resumed run's checkpoint into the file.
  void restore(size_t i) {
    auto tensors = checkpoint->load_step(static_cast<uint32_t>(i));
    if (tensors.size() != 1 || tensors[0].first != plan[i].name ||
        tensors[0].second.bytes.size() != report.tensors[i].bytes)
      fail(ErrorKind::Format, "{}: the checkpoint of tensor {} ('{}') does not match the job",
           o.checkpoint_dir, i, plan[i].name);
    install(i, tensors[0].second);
  }

  // Rank 0: tensor i, quantized elsewhere (bytes in GGUF's row layout), into the file.
  void install(size_t i, const PrecomputedTensor& t) {
    take_figures(report.tensors[i], t);
    out->write(first + i, t.bytes);
    done(i);
  }

  // Rank 0, with a checkpoint: tensor i (its bytes in `bytes`) saved as finished.
  void save(size_t i, std::vector<uint8_t>&& bytes) {
    if (!checkpoint) return;
    const TensorReport& r = report.tensors[i];
    PrecomputedTensor t;
    t.bytes = std::move(bytes);
    t.rel_rms_error = r.rel_rms_error;
    t.rel_output_error = r.rel_output_error;
    t.rel_output_error_rtn = r.rel_output_error_rtn;
    t.zero_share = r.zero_share;
    checkpoint->save_step(static_cast<uint32_t>(i), {{plan[i].name, &t}});
  }

  bool mine(size_t i) const { return owner.empty() || owner[i] == group.rank(); }

  // Bytes of tensor i at `offset`: into the file on rank 0, into the outgoing copy elsewhere.
  void emit(size_t i, uint64_t offset, const uint8_t* data, size_t n) {
    if (!out) return (void)std::copy_n(data, n, outgoing.back().begin() + offset);
    out->write(first + i, offset, data, n);
    if (checkpoint) std::copy_n(data, n, current.begin() + offset);
  }

  // Rank 0: quantizes tensor i here, or takes it from its rank or the checkpoint.
  void produce(size_t i) {
    if (restored[i]) return restore(i);
    if (!mine(i)) return receive(i);
    if (checkpoint) current.assign(report.tensors[i].bytes, 0);
    quantize(i);
    save(i, std::move(current));
  }

  static constexpr int kTensorTag = 21;

  // Rank k > 0: tensor i quantized here and sent to rank 0 without waiting for it.
  void quantize_and_send(size_t i) {
    outgoing.emplace_back(report.tensors[i].bytes);
    quantize(i);
    const TensorReport& r = report.tensors[i];
    outgoing_figures.push_back(
        {r.rel_rms_error, r.rel_output_error, r.rel_output_error_rtn, r.zero_share});
    group.send_later(0, kTensorTag, outgoing_figures.back().data(), 4 * sizeof(double));
    group.send_later(0, kTensorTag, outgoing.back().data(), outgoing.back().size());
  }

  // Rank 0: tensor i from the rank that quantized it, into the file.
  void receive(size_t i) {
    std::array<double, 4> f{};
    group.recv(owner[i], kTensorTag, f.data(), 4 * sizeof(double));
    PrecomputedTensor t;
    t.bytes.resize(report.tensors[i].bytes);
    group.recv(owner[i], kTensorTag, t.bytes.data(), t.bytes.size());
    t.rel_rms_error = f[0], t.rel_output_error = f[1], t.rel_output_error_rtn = f[2];
    t.zero_share = f[3];
    install(i, t);
    save(i, std::move(t.bytes));
  }

  void done(size_t i) {
    release_mapped_pages(m.tensors[i].data, m.tensors[i].nbytes);
    if (o.on_tensor) o.on_tensor(n_done, plan.size(), report.tensors[i]);
    ++n_done;
  }

  // Quantizes and writes tensor i: GPTQ or with its Hessian as one piece, else in row chunks.
  void quantize(size_t i) {
    const TensorView& s = m.tensors[i];
    TensorReport& r = report.tensors[i];
    const std::vector<float>* imp = o.importance ? o.importance(s.name) : nullptr;
    if (imp && imp->size() != s.row_len())
      fail(ErrorKind::Argument,
           "importance vector for '{}' has {} values, the tensor has {} columns", s.name,
           imp->size(), s.row_len());
    const std::vector<double>* h = o.hessian ? o.hessian(s.name) : nullptr;
    if (h && !h->empty() && h->size() != s.row_len() * s.row_len())
      fail(ErrorKind::Argument, "Hessian for '{}' has {} values, the tensor needs {}x{}", s.name,
           h->size(), s.row_len(), s.row_len());
    const float* importance = imp ? imp->data() : nullptr;
    const bool prune = o.sparsity.active() && is_block_linear(s.name) && s.shape.size() == 2;
    const bool whole =
        h || prune || s.shape.size() < 2 || (m.rope_layout != target && is_q_or_k(s.name));
    std::vector<uint8_t> bytes;
    if (whole) {
      const std::vector<float> x = load_rows(m, s, target);
      GptqOptions g = o.gptq;
      // magnitude, wanda: GPTQ keeps the mask, rounding to nearest zeroes it first
      std::vector<uint8_t> mask;
      std::vector<float> masked;
      if (prune) {
        if (o.prune == PruneMethod::SparseGpt && !o.use_gptq)
          fail(ErrorKind::Argument, "tensor '{}': sparsegpt prunes inside GPTQ", s.name);
        mask = prepare_pruning(s.name, o.prune, o.sparsity, x, s.n_rows(), s.row_len(),
                               importance, h, g);
        g.mask = mask.empty() ? nullptr : mask.data();
        if (!mask.empty() && !o.use_gptq) masked = apply_mask(x, mask);
      }
      const std::vector<float>& in = masked.empty() ? x : masked;
      quantize_tensor(r.type, in, s.row_len(), importance, h, o.use_gptq ? &g : nullptr,
                      n_threads, bytes);
      const std::vector<float> hf = hessian_f32(h, s.row_len());
      const TensorErrors e =
          measure_errors(r.type, x, s.row_len(), bytes, h ? &hf : nullptr, n_threads);
      r.rel_rms_error = e.weight;
      r.rel_output_error = e.output;
      if (prune) r.zero_share = decoded_zero_share(r.type, bytes, x.size());
      // what plain rounding would have cost, for the report
      if (o.use_gptq && !prune && !hf.empty() && !traits(r.type).is_float) {
        std::vector<uint8_t> rtn;
        quantize_tensor(r.type, x, s.row_len(), importance, nullptr, nullptr, n_threads, rtn);
        r.rel_output_error_rtn = measure_errors(r.type, x, s.row_len(), rtn, &hf, n_threads).output;
      }
      emit(i, 0, bytes.data(), bytes.size());
      return done(i);
    }
    const uint64_t rows = s.n_rows(), step = std::max<uint64_t>(1, o.chunk_values / s.row_len());
    const uint64_t out_row_bytes = r.bytes / rows;
    ErrorSums sums;
    for (uint64_t r0 = 0; r0 < rows; r0 += step) {
      const uint64_t r1 = std::min(rows, r0 + step);
      const TensorView piece = row_slice(s, r0, r1);
      const std::vector<float> x = to_f32(piece);
      quantize_tensor(r.type, x, s.row_len(), importance, nullptr, nullptr, n_threads, bytes);
      sums.add(weight_error_sums(r.type, x, s.row_len(), bytes, n_threads));
      emit(i, r0 * out_row_bytes, bytes.data(), bytes.size());
      release_mapped_pages(piece.data, piece.nbytes);
    }
    r.rel_rms_error = sums.relative_rms();
    done(i);
  }
};

GgufQuantizeWriter::GgufQuantizeWriter(const Model& m, const std::string& path,
                                       const QuantizeOptions& o)
    : impl_(std::make_unique<Impl>(m, path, o)) {}

GgufQuantizeWriter::~GgufQuantizeWriter() = default;

const std::vector<TensorPlan>& GgufQuantizeWriter::plan() const { return impl_->plan; }

void GgufQuantizeWriter::put(const std::string& name, const PrecomputedTensor& t) {
  Impl& s = *impl_;
  if (s.group.size() > 1 &&
      (s.owner.empty() || std::any_of(s.owner.begin(), s.owner.end(), [](int k) { return k; })))
    fail(ErrorKind::Argument, "'{}': tensors quantized elsewhere cannot be put in a file that "
         "several ranks write", name);
  if (!s.out) return;  // another rank than 0: rank 0 writes every tensor
  const size_t slot = s.out->index_of(name);
  if (slot < s.first) fail(ErrorKind::Argument, "'{}' is written by the quantizer itself", name);
  const size_t i = slot - s.first;
  TensorReport& r = s.report.tensors[i];
  if (t.bytes.size() != r.bytes)
    fail(ErrorKind::Argument, "precomputed '{}' has {} bytes, expected {}", name, t.bytes.size(),
         r.bytes);
  if (s.out->complete(slot)) fail(ErrorKind::Argument, "precomputed '{}' given twice", name);
  s.out->write(slot, rows_in_layout(s.m, s.m.tensors[i], t.bytes, s.target));
  take_figures(r, t);
  s.done(i);
}

QuantizeReport GgufQuantizeWriter::finish() {
  Impl& s = *impl_;
  if (!s.out) {  // a rank other than 0: its tensors, in file order, to rank 0
    for (size_t i = 0; i < s.plan.size(); ++i)
      if (s.mine(i) && !s.restored[i]) s.quantize_and_send(i);
    s.group.finish_sends();
    return s.report;
  }
  for (size_t k = 0; k < s.first; ++k) {  // rope_freqs: made by its producer
    std::vector<uint8_t> bytes;
    s.layout.tensors()[k].produce(bytes);
    s.out->write(k, bytes);
  }
  for (size_t i = 0; i < s.plan.size(); ++i)
    if (!s.out->complete(s.first + i)) s.produce(i);
  s.out->commit();
  if (s.checkpoint) s.checkpoint->remove();  // the file is complete
  QuantizeReport& report = s.report;
  report.file_bytes = std::filesystem::file_size(s.out->path());
  report.bits_per_weight = report.n_weights ? 8.0 * report.total_bytes / report.n_weights : 0;
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - s.t0).count();
  return report;
}

std::vector<int> spread_tensors(const Model& m, bool gptq, int n_ranks) {
  std::vector<double> cost(m.tensors.size());
  for (size_t i = 0; i < m.tensors.size(); ++i) {
    const TensorView& t = m.tensors[i];
    const double rows = static_cast<double>(t.n_rows()), cols = static_cast<double>(t.row_len());
    // The embedding is only swept as the tied output head (its Hessian is the head's).
    const bool swept = gptq && t.shape.size() == 2 &&
                       (t.name != "token_embd.weight" || m.config.tied_embeddings);
    cost[i] = swept ? gptq_sweep_cost(rows, cols) : rows * cols;
  }
  return spread_by_cost(cost, n_ranks);
}

std::vector<int> spread_by_cost(const std::vector<double>& cost, int n_ranks) {
  std::vector<size_t> order(cost.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return cost[a] > cost[b]; });
  std::vector<double> load(static_cast<size_t>(std::max(1, n_ranks)), 0.0);
  std::vector<int> owner(cost.size(), 0);
  for (size_t i : order) {  // longest first, to the least loaded rank (the lowest on a tie)
    const size_t k = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
    owner[i] = static_cast<int>(k);
    load[k] += cost[i];
  }
  return owner;
}

uint64_t gguf_overhead_bound(const Model& m, const QuantizePlanOptions& o) {
  const std::vector<TensorPlan> plan = plan_quantization(m, o);
  GgufWriter w;
  set_quantized_metadata(m, o, plan, std::string(512, 'x'), w);
  w.set("lowbit.quantize.rotation", GgufValue::of_string(std::string(64, 'x')));
  uint64_t planned = 0;
  for (size_t i = 0; i < plan.size(); ++i) {
    OutputTensor t;
    t.info = m.tensors[i];
    t.info.dtype = plan[i].type;
    if (!tensor_bytes(t.info.dtype, t.info.row_len(), t.info.n_values(), &t.nbytes)) t.nbytes = 0;
    planned += t.nbytes;
    w.add_tensor(std::move(t));
  }
  std::vector<uint64_t> offsets;
  const uint64_t header = w.header(offsets).size();
  // offsets.back() is every tensor's data with padding; the mix's own padding may differ.
  return header + (offsets.back() - planned) + w.tensors().size() * w.alignment();
}

QuantizeReport quantize_model_gguf(const Model& m, const std::string& path,
                                   const QuantizeOptions& o) {
  return GgufQuantizeWriter(m, path, o).finish();
}

Model quantize_model_in_memory(const Model& m, const QuantizePlanOptions& plan, int n_threads) {
  std::map<std::string, DType> type_of;
  for (const TensorPlan& p : plan_quantization(m, plan)) type_of[p.name] = p.type;
  Model out = m;
  for (TensorView& t : out.tensors) {
    const auto it = type_of.find(t.name);
    if (it == type_of.end() || t.dtype == it->second || t.shape.size() < 2) continue;
    auto bytes = std::make_shared<std::vector<uint8_t>>();
    quantize_tensor(it->second, to_f32(t), t.row_len(), nullptr, nullptr, nullptr,
                    resolve_threads(n_threads), *bytes);
    t = view_of_bytes(t, it->second, *bytes);
    out.storage.push_back(bytes);
  }
  out.index();
  return out;
}

QuantizePlanOptions plan_for_type_or_preset(const std::string& name) {
  QuantizePlanOptions plan;
  if (const Preset* p = find_preset(name)) {
    plan.preset = p->name;
    return plan;
  }
  const auto type = dtype_from_name(name);
  if (type && is_sparse_2of4(*type)) {  // the dense twin's preset, its linears packed
    plan = plan_for_type_or_preset(dtype_name(traits(*type).dense_twin));
    plan.sparse_2of4 = true;
    return plan;
  }
  for (const Preset& p : presets())
    if (type && p.base == *type) {
      plan.preset = p.name;
      plan.pure = true;
      return plan;
    }
  std::string names;
  for (const Preset& p : presets()) names += std::string(names.empty() ? "" : ", ") + p.name;
  fail(ErrorKind::Argument,
       "unknown quantization type '{}': not a preset ({}) nor a type with a preset (Q4_K, Q8_0, "
       "...)",
       name, names);
}

}  // namespace lowbit

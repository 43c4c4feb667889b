// Whole-model quantization: presets named as in llama.cpp / Ollama, the per-tensor type
// plan (preset rule table + user overrides + block-size fallbacks) and the streaming
// GGUF writer that carries it out.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/dtype.h"
#include "lowbit/gptq.h"
#include "lowbit/learned.h"
#include "lowbit/model.h"
#include "lowbit/sparsity.h"

namespace lowbit {

// Which layers a preset rule covers (i = layer index, n = number of layers).
enum class LayerSet {
  All,
  FirstEighth,     // i < n/8
  FirstSixteenth,  // i < n/16
  FirstTwo,        // i < 2
  FirstFour,       // i < 4
  MoreBits,        // i < n/8 || i >= 7n/8 || (i - n/8) % 3 == 2  (first, last and every third)
  Middle,          // n/8 <= i < 7n/8
};

// One line of a preset's mix: tensors whose role (the GGUF name without "blk.N." and
// ".weight", e.g. "attn_v", "ffn_down") matches get `type` in the selected layers.
struct PresetRule {
  const char* role;
  LayerSet layers;
  DType type;
  bool needs_gqa4 = false;        // only when n_head / n_head_kv >= 4
  bool without_importance = false;  // only when no importance vector is given
};

struct Preset {
  const char* name;       // "Q4_K_M"
  uint32_t file_type;     // llama.cpp's llama_ftype, written as general.file_type
  DType base;             // type of every matrix no rule names
  DType output;           // output.weight (token_embd.weight when the head is tied)
  std::vector<PresetRule> rules;  // first match wins
  // token_embd.weight when the head is not tied to it; Count = the base type
  DType embedding = DType::Count;
};

const std::vector<Preset>& presets();
const Preset* find_preset(const std::string& name);  // case-insensitive; nullptr if unknown
// As find_preset, but an unknown name throws Argument listing the preset names.
const Preset& require_preset(const std::string& name);
bool layer_selected(LayerSet s, uint32_t i, uint32_t n);

struct TypeOverride {
  std::string pattern;  // ECMAScript regex matched against the whole GGUF tensor name
  DType type;
};

struct QuantizePlanOptions {
  std::string preset = "Q4_K_M";
  std::vector<TypeOverride> tensor_types;  // first matching pattern wins
  std::optional<DType> output_type, token_embedding_type;
  bool pure = false;            // base type everywhere (no mix); overrides still apply
  // tensor -> type from a budget solve or a recipe file (overrides still win)
  std::map<std::string, DType> recipe;
  // The method sees calibration statistics (an importance vector, Hessians): the presets
  // then take llama.cpp's mix for a file made with an imatrix.
  bool has_importance = false;
  // The blocks' linears in the 2:4 sparse twin of their planned type (Q8_0 -> Q8_0_S24,
  // Q4_0 -> Q4_0_S24; types without one stay), the other matrices dense. Set by naming a
  // 2:4 type (plan_for_type_or_preset); the weights must be pruned 2:4 first (sparsity.h).
  bool sparse_2of4 = false;
};

// Why a tensor has its planned type.
enum class PlanReason {
  Base,      // the preset's base type
  Exact,     // a 1-D tensor (norm, bias): kept in F32
  Mix,       // a rule of the preset's mix, or its output-head type
  Recipe,    // a recipe or a size budget's mix
  Chosen,    // named by the caller (tensor type override, output or embedding type): fixed
  Fallback,  // the rows do not fit the planned type's blocks: the next type that fits
};

struct TensorPlan {
  std::string name;
  DType type;
  std::string note;  // why it is not the base type, or the fallback taken, for people
  PlanReason reason = PlanReason::Base;
};

// Chooses the type of every tensor of `m`. 1-D tensors stay F32. Throws Argument for an
// unknown preset or a --tensor-type pattern that matches no tensor.
std::vector<TensorPlan> plan_quantization(const Model& m, const QuantizePlanOptions& o);

// general.file_type of a plan that follows no preset (a recipe or a budget mix), the way
// llama.cpp guesses it when a file lacks one: the preset named after the type that holds the
// most weights (Q4_K -> Q4_K_M, Q3_K -> Q3_K_M), with llama.cpp's "guessed" flag (1024).
uint32_t mix_file_type(const Model& m, const std::vector<TensorPlan>& plan);

// The type used when rows of `row_len` values do not fit `t`'s block size: the next
// type (as llama.cpp chooses) whose block divides row_len, or F16.
DType fallback_type(DType t, uint64_t row_len);

struct TensorReport {
  std::string name;
  std::vector<uint64_t> shape;
  DType type;
  uint64_t bytes = 0;
  double rel_rms_error = 0;  // ||W - Q(W)|| / ||W||, 0 for 1-D tensors kept in F32
  // sqrt(tr(ΔHΔᵀ) / tr(WHWᵀ)) with Δ = W - Q(W): the error of the layer's output on the
  // calibration inputs; 0 when no Hessian was given.
  double rel_output_error = 0;
  double rel_output_error_rtn = 0;  // sequential methods: the same for plain rounding
  double zero_share = 0;  // with pruning: the share of the stored weights that decode to 0
  std::string note;
  PlanReason reason = PlanReason::Base;
};

struct QuantizeReport {
  std::vector<TensorReport> tensors;
  uint64_t total_bytes = 0;    // tensor data bytes
  uint64_t file_bytes = 0;     // size of the written file
  uint64_t n_weights = 0;
  double bits_per_weight = 0;  // 8 * total_bytes / n_weights
  double seconds = 0;
  std::string method;          // the method and its parameters, as written in the file's metadata
  std::string rotation;        // the rotation fused into the weights first ("" = none)
  std::string sparsity;        // the pruning applied to the blocks' linears ("" = none)
  std::string structured;      // the channels and heads removed first ("" = none)
  // Budget mixes: the budget, the chosen mix's tensor bytes and its estimated added KLD.
  uint64_t budget_bytes = 0, mix_bytes = 0;
  double mix_estimated_kld = 0;
  uint64_t activation_bytes = 0;  // sequential methods: calibration activations kept between blocks
  // AWQ: α chosen per group of linears sharing an input (keyed by its first weight), and the
  // max/min of mean|x_j| at that input (near 1: no outlier channels to protect).
  std::map<std::string, double> awq_alpha, awq_input_spread;
  // SmoothQuant: largest channel max / mean channel max of a linear input, before and after.
  double spikiness_before = 0, spikiness_after = 0;
  std::vector<BlockLearnReport> learned;  // learned rounding: each block's loss before and after
};

// A tensor quantized elsewhere: its bytes in the planned type, rows in the model's own
// layout (the writer moves q/k rows to GGUF's), and its errors.
struct PrecomputedTensor {
  std::vector<uint8_t> bytes;
  double rel_rms_error = 0, rel_output_error = 0;
  double rel_output_error_rtn = 0;  // the output error plain rounding would have had
  double zero_share = 0;            // with pruning: share of the values that decode to 0
};

// Rounding to nearest converts a tensor to f32 this many values (whole rows) at a time, so
// a 128k-row embedding never sits in memory as f32 at once; the bytes do not depend on it.
inline constexpr uint64_t kDefaultChunkValues = uint64_t{16} << 20;

struct QuantizeOptions {
  QuantizePlanOptions plan;
  int n_threads = 0;  // 0: hardware concurrency
  uint64_t chunk_values = kDefaultChunkValues;  // f32 values rounded at a time (see above)
  // importance[name] = one value per input column; empty = none.
  std::function<const std::vector<float>*(const std::string& name)> importance;
  // hessian[name] = H of the weight's input ([cols, cols]), or null: with it the report gives
  // the output error, and with use_gptq the block-type tensors are rounded by GPTQ.
  std::function<const std::vector<double>*(const std::string& name)> hessian;
  bool use_gptq = false;
  GptqOptions gptq;
  std::string method;  // written as lowbit.quantize.method; empty = derived from the above
  std::string rotation;  // the rotation fused into `m` (lowbit.quantize.rotation), "" = none
  // Pruning of the blocks' linears (lowbit/sparsity.h), written as lowbit.quantize.sparsity.
  // magnitude and wanda (whose norms are the importance vectors) zero their mask before the
  // rounding, which keeps the zeros (GPTQ too); sparsegpt needs use_gptq and the Hessians.
  SparsityPattern sparsity;
  PruneMethod prune = PruneMethod::Magnitude;
  std::string structured;  // structured pruning done on `m` (lowbit.quantize.structured), "" = none
  // Called after each tensor is written (index, count, its report).
  std::function<void(size_t, size_t, const TensorReport&)> on_tensor;
  // Checkpoints of a run that quantizes tensor by tensor: with a directory, each finished
  // tensor is saved there until the file is complete; with `resume`, the tensors found there
  // are taken instead of quantized again. `fingerprint` describes the job (with the method
  // and the plan): a checkpoint of another job is refused.
  std::string checkpoint_dir;
  bool resume = false;
  std::string fingerprint;
  // Under mpirun: each tensor's rank, when the caller chose them (to read only its own
  // statistics); empty: spread_tensors chooses.
  std::vector<int> owner;
};

// Which rank (0 .. n_ranks-1) quantizes each of m's tensors (m.tensors' order) when the job
// runs over MPI (lowbit/distributed.h): the longest first, each to the least loaded rank.
// A GPTQ sweep (`gptq`: every 2-D tensor but an untied embedding) costs rows·cols² + cols³,
// rounding rows·cols.
std::vector<int> spread_tensors(const Model& m, bool gptq, int n_ranks);
// The same placement for any list of costs: item i's rank.
std::vector<int> spread_by_cost(const std::vector<double>& cost, int n_ranks);
// What a GPTQ sweep of a rows × cols weight costs (its unit for spread_by_cost).
inline double gptq_sweep_cost(double rows, double cols) {
  return rows * cols * cols + cols * cols * cols;
}

// A GGUF quantization in progress. The plan and the file's header (so every tensor's
// offset) are made when it is constructed; a tensor quantized elsewhere (the sequential
// driver's blocks) is written as soon as it is put, in any order, and its memory can go;
// finish() quantizes and writes every tensor not put, in row chunks where it can, and
// renames the file into place. Destroyed before finish(), it leaves no file. Under mpirun the
// ranks quantize the tensors spread_tensors gives them and rank 0 writes the file (the same
// bytes as one process), and the other ranks' reports hold only their own tensors' figures.
// put() is then taken only when every tensor is rank 0's (QuantizeOptions::owner all 0: the
// sequential driver's blocks, quantized over the ranks and then known to all); on the other
// ranks it does nothing.
class GgufQuantizeWriter {
 public:
  GgufQuantizeWriter(const Model& m, const std::string& path, const QuantizeOptions& o);
  ~GgufQuantizeWriter();
  const std::vector<TensorPlan>& plan() const;
  // `t.bytes` in the planned type, rows in the model's layout (the q/k rows are moved to
  // GGUF's here). Throws Argument for a name not planned, a second put or a wrong size.
  void put(const std::string& name, const PrecomputedTensor& t);
  QuantizeReport finish();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// At most the bytes of a GGUF file of `m` other than its planned tensors' data: header,
// metadata (with room for a method label of 512 bytes), tokenizer, tensor infos, extra
// tensors (rope_freqs) and alignment padding. A size budget for the whole file leaves this.
uint64_t gguf_overhead_bound(const Model& m, const QuantizePlanOptions& plan);

// Quantizes `m` into a GGUF file that llama.cpp loads: GgufQuantizeWriter with nothing put.
QuantizeReport quantize_model_gguf(const Model& m, const std::string& path,
                                   const QuantizeOptions& o);

// In-flight quantization: a copy of `m` whose matrices are rounded to nearest in memory as
// `plan` says (no file is written). Tensors that keep their type share `m`'s storage (the
// copy holds it alive too).
Model quantize_model_in_memory(const Model& m, const QuantizePlanOptions& plan, int n_threads);
// The plan for `lowbit run --quantize NAME`: a preset name (Q4_K_M) as it stands, or a type
// name (Q4_K) for that type everywhere. Throws Argument naming the choices otherwise.
QuantizePlanOptions plan_for_type_or_preset(const std::string& name);

}  // namespace lowbit

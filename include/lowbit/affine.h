// Textbook linear (affine) integer quantization, for research and for the GPTQ/AWQ-style
// safetensors layout:  q = clamp(round(x / s) + z, 0, 2^bits - 1),  x ≈ s * (q - z).
// Symmetric: z = 2^(bits-1) fixed (codes are offset-binary signed integers).
// Asymmetric: z is an integer per group, chosen with s from the group's range.
// Granularity: per tensor (one group), per channel (one group per output row) or per group
// of `group` consecutive values along the input dimension of each row.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lowbit {

enum class RangeMethod {
  MinMax,      // the group's full range
  Percentile,  // clip at a percentile of the values (|x| when symmetric)
  Mse,         // shrink the range over a grid, keep the smallest squared error
};

// Layouts of an affine checkpoint's linears (docs/FORMATS.md, src/quant/hf_formats.h):
//   Lowbit  <weight>.qweight U8 [rows, ceil(cols*bits/8)] (each row's codes LSB first),
//           .scales F16 [rows, groups], .zeros U8 [rows, groups];
//   Gptq    GPTQModel/AutoGPTQ: qweight/qzeros/scales/g_idx, checkpoint_format "gptq"
//           (symmetric) or "gptq_v2" (asymmetric: v1 cannot hold a zero point of 0);
//   Awq     AutoAWQ GEMM (4 bits): qweight/qzeros/scales.
//   CompressedTensors  llm-compressor's pack-quantized int2..int8: weight_packed/weight_scale/
//           weight_zero_point (asymmetric)/weight_shape.
enum class AffineFormat { Lowbit, Gptq, Awq, CompressedTensors };
const char* affine_format_name(AffineFormat f);  // "lowbit", "gptq", "awq", "compressed-tensors"
bool parse_affine_format(const std::string& name, AffineFormat* out);

// Which codes of the symmetric int2 grid {-2, -1, 0, 1}·s a tensor uses: all of them, or the
// classic extreme cases, each stored as int2 so that every int2 reader loads it exactly:
//   Ternary  {-1, 0, +1}·s (TWN): s = the mean |x| above 0.7·mean|x| (range minmax or
//            percentile), or the exact least-squares optimum (range mse);
//   Binary   {-1, +1}·s (XNOR-Net): s = mean |x|, code = the sign.
enum class AffineLevels { All, Ternary, Binary };

struct AffineSpec {
  int bits = 4;            // 2..8
  int64_t group = 128;     // > 0: values per group; 0: per channel (whole row); -1: per tensor
  bool symmetric = true;
  RangeMethod range = RangeMethod::MinMax;
  double percentile = 99.9;  // for RangeMethod::Percentile
  AffineLevels levels = AffineLevels::All;  // Ternary, Binary: bits 2, symmetric

  int64_t group_len(uint64_t cols) const { return group > 0 ? group : static_cast<int64_t>(cols); }
  uint64_t groups_per_row(uint64_t cols) const {
    return group < 0 ? 1 : (cols + group_len(cols) - 1) / group_len(cols);
  }
  std::string describe() const;  // e.g. "int4 g128 sym minmax", "ternary g128 mse"
};

// Quantized [rows, cols] tensor. scales/zeros: [rows, groups_per_row] (per tensor: [1, 1]).
// codes: each row packed on its own, LSB first, ceil(cols * bits / 8) bytes per row.
struct AffineTensor {
  std::vector<uint8_t> codes;
  std::vector<float> scales;
  std::vector<uint8_t> zeros;  // integer zero points (also filled for symmetric: 2^(bits-1))
};

// A linear of an integer checkpoint as stored: [rows, cols] codes on spec's grid.
struct AffineWeight {
  AffineSpec spec;
  AffineTensor t;
  uint64_t rows = 0, cols = 0;
};

// Throws Argument for bits outside 2..8, a group size that does not divide into rows, or
// ternary/binary levels on another grid than int2 symmetric.
void validate(const AffineSpec& spec);
AffineTensor affine_quantize(const float* x, uint64_t rows, uint64_t cols, const AffineSpec& spec);
void affine_dequantize(const AffineTensor& t, uint64_t rows, uint64_t cols, const AffineSpec& spec,
                       float* out);

// One group's parameters and the rounding of a value onto its grid (for GPTQ's sweep).
struct AffineParams { float scale; int zero; };
AffineParams affine_group_params(const float* x, uint64_t n, const AffineSpec& spec);
// The nearest code of spec's grid (levels included).
inline int affine_code(float x, AffineParams p, const AffineSpec& spec) {
  if (spec.levels == AffineLevels::Binary) return x < 0 ? p.zero - 1 : p.zero + 1;
  const int q = static_cast<int>(__builtin_nearbyintf(x / p.scale)) + p.zero;
  const int lo = spec.levels == AffineLevels::Ternary ? p.zero - 1 : 0;
  const int hi = spec.levels == AffineLevels::Ternary ? p.zero + 1 : (1 << spec.bits) - 1;
  return q < lo ? lo : (q > hi ? hi : q);
}

uint64_t packed_row_bytes(uint64_t cols, int bits);
// Packs n codes of `bits` bits (1..8) LSB first; unpack is the inverse.
void pack_bits(const uint8_t* codes, uint64_t n, int bits, uint8_t* out);
void unpack_bits(const uint8_t* in, uint64_t n, int bits, uint8_t* codes);

}  // namespace lowbit

#include "lowbit/calibration.h"
#include "lowbit/model.h"
#include "lowbit/quantize.h"

namespace lowbit {

// Writes a Hugging Face directory (model.safetensors + config.json + tokenizer files) whose
// decoder-layer linear weights are affine-quantized, in one of the layouts of AffineFormat
// (docs/FORMATS.md); embeddings and head stay F16, norms F32. The source must be a Hugging
// Face directory. The output appears only when complete.
// `quantizer` (optional) replaces round-to-nearest for a weight, e.g. GPTQ with that
// weight's Hessian: (GGUF name, f32 weight [rows, cols] in HF layout, rows, cols) -> codes.
using AffineQuantizer =
    std::function<AffineTensor(const std::string&, const std::vector<float>&, uint64_t, uint64_t)>;
struct AffineWriteOptions {
  int n_threads = 0;
  std::function<void(size_t, size_t, const TensorReport&)> on_tensor;
  AffineQuantizer quantizer;   // null: round to nearest
  std::string method = "rtn";  // recorded in the metadata and the report
  const W8A8Activations* int8_activations = nullptr;
  AffineFormat format = AffineFormat::Lowbit;
};
QuantizeReport write_affine_model(const Model& m, const std::string& out_dir,
                                  const AffineSpec& spec, const AffineWriteOptions& o);

// int8_activations (int8 per-channel symmetric weights only) makes it a W8A8 checkpoint: the
// metadata adds "activations": {"bits":8,"scheme":"per-token"|"static","input_scales":{...}}
// and the loader fills Model::int8_weights.
//
// Writes an integer checkpoint (m.affine_weights; any of the four layouts) as GGUF keeping
// each linear's codes where a block type holds its grid: symmetric 4, 5, 8 bits as Q4_0,
// Q5_0, Q8_0 (exact), asymmetric 4, 5 bits as Q4_1, Q5_1 (exact but for the f16 rounding of
// the offset -s*z); groups must cover whole 32-value blocks. The other linears are rounded
// to nearest onto the K type of as many bits (quant/affine_gguf.h), or by GPTQ when `stats`
// (calibration statistics of m with Hessians) are given; the other matrices are written
// F16 and 1-D tensors F32. Throws Argument when m has no integer linears.
QuantizeReport write_affine_checkpoint_gguf(
    const Model& m, const std::string& path, int n_threads,
    const std::function<void(size_t, size_t, const TensorReport&)>& on_tensor = {},
    const CalibrationStats* stats = nullptr);

// Loader side: turns the qweight/scales/zeros triples of an affine checkpoint back into f32
// weights (owned by `m.storage`). `meta_json` is the "lowbit.affine" metadata string.
void load_affine_tensors(Model& m, const std::vector<TensorView>& raw,
                         const std::string& meta_json);
// The same for GPTQ, AWQ and compressed-tensors checkpoints: config.json's text (from
// `source`) names the layout in its quantization_config. Takes the linears' parts out of
// `all` (.qweight/.qzeros/.scales/.g_idx; .weight_packed/.weight_scale/...; or the int8
// or FP8 `.weight` beside a `.weight_scale`), adds their f32 weights to m and returns the
// other tensors. Activation and KV-cache scales are read and not used.
// has_hf_quantized_linears: whether the config names such a layout (fails on a
// quant_method or format lowbit cannot read).
bool has_hf_quantized_linears(const std::string& config_json, const std::string& source);
std::vector<TensorView> load_hf_quantized_tensors(Model& m, const std::vector<TensorView>& all,
                                                  const std::string& config_json,
                                                  const std::string& source);

}  // namespace lowbit

// The Hugging Face quantized checkpoint layouts of the affine int layout (docs/FORMATS.md):
// GPTQ as GPTQModel and AutoGPTQ write it (checkpoint_format "gptq", read also "gptq_v2") and
// AWQ as AutoAWQ writes it (version "gemm") and compressed-tensors' pack-quantized integers as
// llm-compressor writes them. A weight [rows = outputs, cols = inputs] with
// codes q, scales s and integer zeros z per group of inputs decodes as w = s * (q - z).
//
//   GPTQ  qweight I32 [cols*bits/32, rows]   output j's codes as a little-endian bit stream
//                                            along the inputs, one 32-bit word per element;
//         qzeros  I32 [groups, rows*bits/32] z - 1 ("gptq", written for symmetric codes) or
//                                            z ("gptq_v2", asymmetric), a bit stream along
//                                            the outputs;
//         scales  F16 [groups, rows];  g_idx I32 [cols]: the group of each input.
//   AWQ   qweight I32 [cols, rows/8]         eight outputs' 4-bit codes per word, in the
//         qzeros  I32 [groups, rows/8]       nibble order of kAwqOrder; zeros as they are;
//         scales  F16 [groups, rows].
//   compressed-tensors  weight_packed I32 [rows, words of cols]  32/bits codes per word
//         (packed_words.h), each code + 2^(bits-1) from the signed one; weight_scale
//         [rows, groups]; weight_zero_point I32 [words of rows, groups] (asymmetric only);
//         weight_shape I64 [2].
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "lowbit/affine.h"
#include "lowbit/tensor.h"

namespace lowbit::quant {

// Output j + kAwqOrder[k] of a group of eight sits in nibble k of AWQ's words.
inline constexpr int kAwqOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// One tensor of a linear in a layout: name suffix (".qweight", ...), type and shape.
struct PackedPart {
  std::string suffix;
  DType type;
  std::vector<uint64_t> shape;
};

// The parts of a [rows, cols] weight in `format`; fails naming `tensor` when the layout
// cannot hold it (bits, group, shape).
// W8A8 (`acts`: int8 per-channel symmetric weights) goes to compressed-tensors as
// int-quantized: .weight I8 [rows, cols], .weight_scale [rows, 1], and with static
// activations .input_scale F32 [1] (acts->input_scales[tensor], tensor a GGUF name).
std::vector<PackedPart> packed_parts(AffineFormat format, const AffineSpec& spec, uint64_t rows,
                                     uint64_t cols, const std::string& tensor,
                                     const W8A8Activations* acts = nullptr);
// GPTQ writes "gptq" (z - 1) for symmetric codes and "gptq_v2" (z) for asymmetric ones.
bool gptq_zeros_minus_one(const AffineSpec& spec);
// config.json's quantization_config for `format` (GPTQModel's or AutoAWQ's keys).
nlohmann::json hf_quantization_config(AffineFormat format, const AffineSpec& spec,
                                      const std::string& method,
                                      const W8A8Activations* acts = nullptr);
// compressed-tensors' QuantizationArgs with every key it has (it refuses others), and the
// quantization_config of one config group targeting Linear (lm_head ignored).
nlohmann::json quantization_args(const char* type, int bits, bool symmetric, const char* strategy,
                                 const nlohmann::json& group_size, bool dynamic,
                                 const nlohmann::json& observer);
nlohmann::json compressed_tensors_config(const char* storage, const nlohmann::json& weights,
                                         const nlohmann::json& activations);
// The bytes of each part, in packed_parts' order.
std::vector<std::vector<uint8_t>> pack_affine(AffineFormat format, const AffineTensor& t,
                                              const AffineSpec& spec, uint64_t rows, uint64_t cols,
                                              const W8A8Activations* acts = nullptr,
                                              const std::string& tensor = "");

// A checkpoint's quantized linears, read back: the config's quantization_config names the
// layout; `source` and the tensor names go into the errors.
struct HfQuantConfig {
  AffineFormat format = AffineFormat::Gptq;
  int bits = 4;
  int64_t group_size = 128;     // -1: one group per row (or per tensor, see below)
  bool zeros_minus_one = true;  // GPTQ "gptq" (v1) stores z - 1
  // compressed-tensors: how the weights are stored (pack-quantized: packed int32 words;
  // int-quantized and naive-quantized: one int8 per weight in `.weight`; float-quantized:
  // FP8 E4M3 in `.weight`), whether a zero point is stored, one scale for the whole
  // tensor, the [rows, cols] blocks of a block-strategy FP8 scale, and whether activations
  // are quantized too (lowbit's engine does not simulate it for these checkpoints).
  enum class Storage { Packed, Int8, Fp8 } storage = Storage::Packed;
  bool symmetric = true;
  bool per_tensor = false;
  uint64_t block_rows = 0, block_cols = 0;
  bool quantized_activations = false;
  // Activations lowbit's engine simulates (int8 symmetric, per token or one static scale
  // per tensor, with 8-bit per-channel symmetric int8 weights): loaded as Int8Weight.
  enum class Int8Acts { None, PerToken, Static } int8_acts = Int8Acts::None;
  bool bnb = false;  // bitsandbytes (bnb_format.h); the fields above do not apply
};
// nullopt when config.json has no quantization_config of GPTQ or AWQ.
std::optional<HfQuantConfig> read_hf_quant_config(const std::string& config_json_text,
                                                  const std::string& source);
// FP8 (float-quantized) linears: weight E4M3 [rows, cols] times its scale, per tensor, per
// row or per block.
std::vector<float> dequantize_fp8_linear(const HfQuantConfig& c, const std::string& base,
                                         const std::vector<const TensorView*>& parts,
                                         const std::string& source, uint64_t* rows, uint64_t* cols);
// The f32 weight [rows, cols] of linear `base` from its parts (looked up by name). `grid`
// (optional) receives the codes, scales and zeros when the groups are consecutive runs of
// inputs (no act-order g_idx); its rows stay 0 otherwise.
std::vector<float> dequantize_hf_linear(const HfQuantConfig& c, const std::string& base,
                                        const std::vector<const TensorView*>& parts,
                                        const std::string& source, uint64_t* rows, uint64_t* cols,
                                        AffineWeight* grid = nullptr);

}  // namespace lowbit::quant

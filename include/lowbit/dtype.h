// Element types of tensors, plain and block-quantized, in one traits table.
// A block type stores `block_size` consecutive values of a row in `type_size` bytes;
// plain types have block_size 1. `ggml_id` is the type number in GGUF files (-1 when
// GGUF has none); `st_name` is the safetensors dtype string (nullptr when none).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace lowbit {

enum class DType : uint8_t {
  F32,
  F16,
  BF16,
  F64,
  I8,
  I16,
  I32,
  I64,
  U8,
  BOOL,
  F8_E4M3,
  F8_E5M2,
  // GGUF block types (layouts in src/quant; bit-exact with llama.cpp)
  Q4_0,
  Q4_1,
  Q5_0,
  Q5_1,
  Q8_0,
  Q8_1,
  Q2_K,
  Q3_K,
  Q4_K,
  Q5_K,
  Q6_K,
  Q8_K,
  IQ4_NL,
  IQ4_XS,
  IQ3_S,    // codebook: groups of 4 on a 512-entry grid
  IQ3_XXS,  // codebook: groups of 4 on a 256-entry grid, sign parity
  IQ2_S,    // codebook: groups of 8 on a 1024-entry grid
  IQ2_XS,   // codebook: groups of 8 on a 512-entry grid, sign parity
  IQ2_XXS,  // codebook: groups of 8 on a 256-entry grid, sign parity
  IQ1_S,    // codebook: groups of 8 on a 2048-entry ternary grid, delta per 32
  IQ1_M,    // codebook: as IQ1_S, scales per 16, delta per 8
  TQ1_0,    // ternary {-1, 0, +1}·d, base-3 packed
  TQ2_0,    // ternary, 2-bit codes
  // lowbit's 2:4 sparse blocks (two values of every four stored, docs/FORMATS.md)
  Q8_0_S24,
  Q4_0_S24,
  Count
};

struct DTypeTraits {
  DType type;
  const char* name;     // lowbit / llama.cpp spelling, e.g. "Q4_K", "BF16"
  int ggml_id;          // GGUF tensor type id, -1 if not representable in GGUF
  const char* st_name;  // safetensors spelling, nullptr if not representable there
  uint32_t block_size;  // values per block (1 for plain types)
  uint32_t type_size;   // bytes per block
  bool is_float;        // plain floating-point element
  // 2:4 sparse types: the dense type with the same grid (Q8_0 for Q8_0_S24); Count otherwise.
  DType dense_twin = DType::Count;
};

const DTypeTraits& traits(DType t);
inline const char* dtype_name(DType t) { return traits(t).name; }

std::optional<DType> dtype_from_ggml(uint32_t id);
std::optional<DType> dtype_from_safetensors(std::string_view name);
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive

// Bytes needed for `n_values` values of a row-major tensor whose rows have `row_len`
// values. Returns false on overflow or when row_len is not a multiple of the block size.
bool tensor_bytes(DType t, uint64_t row_len, uint64_t n_values, uint64_t* out);
double bits_per_weight(DType t);
// The 2:4 sparse type storing `dense`'s grid (Q8_0 -> Q8_0_S24), if there is one.
std::optional<DType> sparse_2of4_twin(DType dense);
inline bool is_sparse_2of4(DType t) {
  return traits(t).dense_twin != DType::Count;
}

}  // namespace lowbit

#include "lowbit/dtype.h"

#include <array>
#include <cctype>

#include "lowbit/error.h"

namespace lowbit {
namespace {

constexpr std::array<DTypeTraits, static_cast<size_t>(DType::Count)> kTraits = {{
    {DType::F32, "F32", 0, "F32", 1, 4, true},
    {DType::F16, "F16", 1, "F16", 1, 2, true},
    {DType::BF16, "BF16", 30, "BF16", 1, 2, true},
    {DType::F64, "F64", 28, "F64", 1, 8, true},
    {DType::I8, "I8", 24, "I8", 1, 1, false},
    {DType::I16, "I16", 25, "I16", 1, 2, false},
    {DType::I32, "I32", 26, "I32", 1, 4, false},
    {DType::I64, "I64", 27, "I64", 1, 8, false},
    {DType::U8, "U8", -1, "U8", 1, 1, false},
    {DType::BOOL, "BOOL", -1, "BOOL", 1, 1, false},
    {DType::F8_E4M3, "F8_E4M3", -1, "F8_E4M3", 1, 1, true},
    {DType::F8_E5M2, "F8_E5M2", -1, "F8_E5M2", 1, 1, true},
    {DType::Q4_0, "Q4_0", 2, nullptr, 32, 18, false},
    {DType::Q4_1, "Q4_1", 3, nullptr, 32, 20, false},
    {DType::Q5_0, "Q5_0", 6, nullptr, 32, 22, false},
    {DType::Q5_1, "Q5_1", 7, nullptr, 32, 24, false},
    {DType::Q8_0, "Q8_0", 8, nullptr, 32, 34, false},
    {DType::Q8_1, "Q8_1", 9, nullptr, 32, 36, false},
    {DType::Q2_K, "Q2_K", 10, nullptr, 256, 84, false},
    {DType::Q3_K, "Q3_K", 11, nullptr, 256, 110, false},
    {DType::Q4_K, "Q4_K", 12, nullptr, 256, 144, false},
    {DType::Q5_K, "Q5_K", 13, nullptr, 256, 176, false},
    {DType::Q6_K, "Q6_K", 14, nullptr, 256, 210, false},
    {DType::Q8_K, "Q8_K", 15, nullptr, 256, 292, false},
    {DType::IQ4_NL, "IQ4_NL", 20, nullptr, 32, 18, false},
    {DType::IQ4_XS, "IQ4_XS", 23, nullptr, 256, 136, false},
    {DType::IQ3_S, "IQ3_S", 21, nullptr, 256, 110, false},
    {DType::IQ3_XXS, "IQ3_XXS", 18, nullptr, 256, 98, false},
    {DType::IQ2_S, "IQ2_S", 22, nullptr, 256, 82, false},
    {DType::IQ2_XS, "IQ2_XS", 17, nullptr, 256, 74, false},
    {DType::IQ2_XXS, "IQ2_XXS", 16, nullptr, 256, 66, false},
    {DType::IQ1_S, "IQ1_S", 19, nullptr, 256, 50, false},
    {DType::IQ1_M, "IQ1_M", 29, nullptr, 256, 56, false},
    {DType::TQ1_0, "TQ1_0", 34, nullptr, 256, 54, false},
    {DType::TQ2_0, "TQ2_0", 35, nullptr, 256, 66, false},
    // lowbit only: ids outside ggml's range ("LB" = 0x4C42 = 19522), which llama.cpp refuses
    {DType::Q8_0_S24, "Q8_0_S24", 19522, nullptr, 32, 22, false, DType::Q8_0},
    {DType::Q4_0_S24, "Q4_0_S24", 19523, nullptr, 32, 14, false, DType::Q4_0},
}};

constexpr bool table_is_ordered() {
  for (size_t i = 0; i < kTraits.size(); ++i)
    if (static_cast<size_t>(kTraits[i].type) != i) return false;
  return true;
}
static_assert(table_is_ordered(), "kTraits must list DType values in enum order");

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::toupper(static_cast<unsigned char>(a[i])) !=
        std::toupper(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

const DTypeTraits& traits(DType t) { return kTraits.at(static_cast<size_t>(t)); }

std::optional<DType> dtype_from_ggml(uint32_t id) {
  for (const auto& t : kTraits)
    if (t.ggml_id >= 0 && static_cast<uint32_t>(t.ggml_id) == id) return t.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_safetensors(std::string_view name) {
  for (const auto& t : kTraits)
    if (t.st_name && name == t.st_name) return t.type;
  return std::nullopt;
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& t : kTraits)
    if (iequals(name, t.name)) return t.type;
  return std::nullopt;
}

bool tensor_bytes(DType t, uint64_t row_len, uint64_t n_values, uint64_t* out) {
  const auto& tr = traits(t);
  if (row_len % tr.block_size != 0) return false;
  return !mul_overflows(n_values / tr.block_size, tr.type_size, out);
}

std::optional<DType> sparse_2of4_twin(DType dense) {
  for (const auto& t : kTraits)
    if (t.dense_twin == dense) return t.type;
  return std::nullopt;
}

double bits_per_weight(DType t) {
  const auto& tr = traits(t);
  return 8.0 * tr.type_size / tr.block_size;
}

}  // namespace lowbit

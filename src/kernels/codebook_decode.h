// A codebook block's integers v (block_ints.h) decoded eight at a time: each grid entry's
// values sit in the int8 lanes of one u64 (lane j in bits 8j .. 8j + 7), the signs become a
// byte mask, and one xor and one add negate the lanes. The scalar reference is
// block_values_codebook; the kernel tests compare the two through every dot product.
#pragma once

#include <array>
#include <bit>
#include <cstdint>
#include <cstring>

#include "lowbit/dtype.h"
#include "quant/iq_fields.h"

namespace lowbit::kernels {

static_assert(std::endian::native == std::endian::little, "lanes are little-endian bytes");

// [grid entries] the values of entry i: the magnitudes of its levels (IQ3_*: 4 lanes,
// IQ2_*: 8), or 8 (l - 1) for IQ1_S and IQ1_M. Built at the first call per type.
const uint64_t* codebook_entry_values(DType t);

constexpr uint64_t kLaneOnes = 0x0101010101010101ull;

// Byte j of kSignMasks[s] is 0xFF when bit j of s is set.
inline constexpr std::array<uint64_t, 256> kSignMasks = [] {
  std::array<uint64_t, 256> m{};
  for (int s = 0; s < 256; ++s)
    for (int j = 0; j < 8; ++j)
      if ((s >> j) & 1) m[s] |= uint64_t{0xFF} << (8 * j);
  return m;
}();

// The lanes of m (each 1 .. 127) negated where mask's byte is 0xFF: 255 - m + 1 never carries.
inline uint64_t negate_lanes(uint64_t m, uint64_t mask) {
  return (m ^ mask) + (mask & kLaneOnes);
}
// Lane-wise a + b modulo 256: the low seven bits add without crossing lanes, the top bit is
// the xor of both tops and the carry into it.
inline uint64_t add_lanes(uint64_t a, uint64_t b) {
  constexpr uint64_t kLow7 = 0x7F7F7F7F7F7F7F7Full;
  return ((a & kLow7) + (b & kLow7)) ^ ((a ^ b) & ~kLow7);
}

// v[0 .. 256) of one block of codebook type T; values = codebook_entry_values(T).
template <DType T>
inline void decode_codebook(const uint8_t* blk, const uint64_t* values, int8_t* v) {
  using namespace quant;
  for (int k = 0; k < 32; ++k) {
    uint64_t x;
    if constexpr (T == DType::IQ1_S || T == DType::IQ1_M) {  // v = 8 (l - 1) + delta
      constexpr int kDeltaUnit = T == DType::IQ1_S ? 32 : 8;
      const bool down = iq1_negative_delta(T, blk, 8 * k / kDeltaUnit);
      x = add_lanes(values[iq1_entry(T, blk, k)], down ? ~uint64_t{0} : kLaneOnes);
    } else {
      uint64_t m;
      if constexpr (T == DType::IQ3_S || T == DType::IQ3_XXS)  // two entries of 4
        m = values[iq_entry(T, blk, 2 * k)] | values[iq_entry(T, blk, 2 * k + 1)] << 32;
      else
        m = values[iq_entry(T, blk, k)];
      x = negate_lanes(m, kSignMasks[iq_sign_byte(T, blk, k)]);
    }
    std::memcpy(v + 8 * k, &x, 8);
  }
}

}  // namespace lowbit::kernels

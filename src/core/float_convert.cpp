#include "lowbit/float_convert.h"

#include <array>
#include <cmath>

namespace lowbit {
namespace {

// A binary float with E exponent bits and M mantissa bits. `finite_nan` marks the
// E4M3 "FN" flavour where the all-ones exponent still holds finite numbers and only
// the all-ones code is NaN.
template <int E, int M, bool finite_nan>
struct MiniFloat {
  static constexpr int bias = (1 << (E - 1)) - 1;
  static constexpr uint32_t exp_max = (1u << E) - 1;
  static constexpr uint32_t sign_bit = 1u << (E + M);
  static constexpr uint32_t nan_code =
      finite_nan ? (exp_max << M) | ((1u << M) - 1) : (exp_max << M) | (1u << (M - 1));
  static constexpr uint32_t inf_code = exp_max << M;  // only meaningful when !finite_nan
  static constexpr uint32_t max_finite = finite_nan ? nan_code - 1 : inf_code - 1;

  static uint32_t encode(float f) {
    const uint32_t u = f32_bits(f);
    const uint32_t sign = (u >> 31) ? sign_bit : 0;
    const uint32_t e32 = (u >> 23) & 0xff, m32 = u & 0x7fffff;
    if (e32 == 0xff) {
      if (m32 != 0 || finite_nan) return sign | nan_code;
      return sign | inf_code;
    }
    // value = full * 2^(e - 23), with full holding the implicit bit for normal f32.
    const uint32_t full = e32 ? (m32 | 0x800000u) : m32;
    const int e = e32 ? static_cast<int>(e32) - 127 : -126;
    const int target_exp = e + bias;
    uint32_t shift = 23 - M;
    uint32_t code;
    if (target_exp >= 1) {
      code = (static_cast<uint32_t>(target_exp) << M) | ((full & 0x7fffff) >> shift);
    } else {
      shift += static_cast<uint32_t>(1 - target_exp);
      if (shift > 25) return sign;  // below half the smallest subnormal
      code = full >> shift;
    }
    const uint32_t rem = full & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (code & 1))) ++code;  // a carry moves into the exponent
    if (code > max_finite) return sign | (finite_nan ? nan_code : inf_code);
    return sign | code;
  }

  static float decode(uint32_t v) {
    const bool neg = v & sign_bit;
    const uint32_t exp = (v >> M) & exp_max, mant = v & ((1u << M) - 1);
    float r;
    if (finite_nan && (v & ~sign_bit) == nan_code) {
      r = NAN;
    } else if (!finite_nan && exp == exp_max) {
      r = mant ? NAN : INFINITY;
    } else if (exp == 0) {
      r = std::ldexp(static_cast<float>(mant), 1 - bias - M);
    } else {
      r = std::ldexp(static_cast<float>(mant | (1u << M)), static_cast<int>(exp) - bias - M);
    }
    return neg ? -r : r;
  }
};

using F16 = MiniFloat<5, 10, false>;
using E4M3 = MiniFloat<4, 3, true>;
using E5M2 = MiniFloat<5, 2, false>;

const std::array<float, 65536>& f16_table() {
  static const auto table = [] {
    std::array<float, 65536> t{};
    for (uint32_t i = 0; i < 65536; ++i) t[i] = F16::decode(i);
    return t;
  }();
  return table;
}

}  // namespace

uint16_t f32_to_f16(float f) { return static_cast<uint16_t>(F16::encode(f)); }
float f16_to_f32(uint16_t h) { return f16_table()[h]; }
uint8_t f32_to_e4m3(float f) { return static_cast<uint8_t>(E4M3::encode(f)); }
float e4m3_to_f32(uint8_t v) { return E4M3::decode(v); }
uint8_t f32_to_e5m2(float f) { return static_cast<uint8_t>(E5M2::encode(f)); }
float e5m2_to_f32(uint8_t v) { return E5M2::decode(v); }

}  // namespace lowbit

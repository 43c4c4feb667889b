// Scalar conversions between f32 and the narrow float formats that model files use.
// All encoders round to nearest, ties to even, and keep NaN a NaN.
//   f16      IEEE binary16: 1 sign, 5 exponent (bias 15), 10 mantissa; Inf and subnormals.
//   bf16     the top half of an f32: 1 sign, 8 exponent, 7 mantissa.
//   fp8 E4M3 "FN" variant (OCP / PyTorch float8_e4m3fn): bias 7, no Inf, S.1111.111 is NaN,
//            largest finite 448. Values that round past 448 become NaN (not saturated).
//   fp8 E5M2 IEEE-like: bias 15, Inf and NaN as in f16; values past 57344 become Inf.
#pragma once

#include <cstdint>
#include <cstring>

namespace lowbit {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

uint16_t f32_to_f16(float f);
float f16_to_f32(uint16_t h);  // table lookup
uint8_t f32_to_e4m3(float f);
float e4m3_to_f32(uint8_t v);
uint8_t f32_to_e5m2(float f);
float e5m2_to_f32(uint8_t v);

inline float bf16_to_f32(uint16_t b) { return f32_from_bits(static_cast<uint32_t>(b) << 16); }
inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

}  // namespace lowbit

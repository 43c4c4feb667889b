#include <gtest/gtest.h>

#include <cmath>

#include "lowbit/float_convert.h"

namespace lowbit {
namespace {

// Independent references written from the IEEE binary16 definition: a decoder by formula,
// and an encoder that picks the nearest of all finite codes (ties to the even code).
double f16_value(uint16_t v) {
  int s = v >> 15, e = (v >> 10) & 31, m = v & 1023;
  if (e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
  double r = e == 0 ? std::ldexp(m / 1024.0, -14) : std::ldexp(1 + m / 1024.0, e - 15);
  return s ? -r : r;
}
uint16_t f16_nearest(double x) {
  const uint16_t sign = std::signbit(x) ? 0x8000 : 0;
  const double a = std::fabs(x);
  uint16_t lo = 0, hi = 0x7bff;  // binary search over the ordered positive finite codes
  if (a >= f16_value(0x7bff)) {
    const double half_ulp = (65536.0 - 65504.0) / 2;
    return sign | (a - 65504.0 < half_ulp ? 0x7bff : 0x7c00);
  }
  while (hi - lo > 1) {
    uint16_t mid = (lo + hi) / 2;
    (f16_value(mid) <= a ? lo : hi) = mid;
  }
  const double dl = a - f16_value(lo), dh = f16_value(hi) - a;
  return sign | (dl < dh ? lo : dh < dl ? hi : (lo % 2 == 0 ? lo : hi));
}

TEST(FloatConvert, F16DecodeMatchesDefinitionForAllCodes) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const double want = f16_value(static_cast<uint16_t>(h));
    const float got = f16_to_f32(static_cast<uint16_t>(h));
    if (std::isnan(want)) EXPECT_TRUE(std::isnan(got)) << h;
    else EXPECT_EQ(static_cast<double>(got), want) << "code " << h;
  }
}

TEST(FloatConvert, F16EncodeRoundTripsAllCodesAndRoundsBetweenThemToNearestEven) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const uint16_t bits = static_cast<uint16_t>(h);
    const float f = f16_to_f32(bits);
    if (std::isnan(f)) {
      EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(f))));
      continue;
    }
    EXPECT_EQ(f32_to_f16(f), bits) << "code " << h;
    if ((h & 0x7fff) < 0x7bff) {  // points between this code and the next
      const float next = f16_to_f32(static_cast<uint16_t>(h + 1));
      for (float t : {0.25f, 0.5f, 0.75f}) {
        const float x = f + (next - f) * t;
        ASSERT_EQ(f32_to_f16(x), f16_nearest(x))
            << "x=" << x << " between codes " << h << " and " << h + 1;
      }
    }
  }
}

TEST(FloatConvert, F16OverflowAndUnderflow) {
  EXPECT_EQ(f32_to_f16(65504.0f), 0x7bff);
  EXPECT_EQ(f32_to_f16(65520.0f), 0x7c00);  // halfway to the next binade rounds to Inf
  EXPECT_EQ(f32_to_f16(-1e9f), 0xfc00);
  EXPECT_EQ(f32_to_f16(std::ldexp(1.0f, -25)),
            0x0000);  // exactly half the smallest subnormal: ties to even (0)
  EXPECT_EQ(f32_to_f16(std::ldexp(1.5f, -25)), 0x0001);          // above half rounds up
  EXPECT_EQ(f32_to_f16(-0.0f), 0x8000);
}

TEST(FloatConvert, Bf16AllCodesAndRounding) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_f32(static_cast<uint16_t>(h));
    EXPECT_EQ(f32_bits(f), h << 16);
    if (!std::isnan(f)) EXPECT_EQ(f32_to_bf16(f), h);
    else EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(f))));
  }
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808000)), 0x3f80);  // tie, even stays
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f818000)), 0x3f82);  // tie, odd rounds up
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x3f808001)), 0x3f81);  // above tie
  EXPECT_EQ(f32_to_bf16(f32_from_bits(0x7f7fffff)), 0x7f80);  // max float rounds to Inf
}

// Reference decoders written from the format definitions, independent of the codec.
double e4m3_value(uint8_t v) {
  int s = v >> 7, e = (v >> 3) & 15, m = v & 7;
  if (e == 15 && m == 7) return NAN;
  double r = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1 + m / 8.0, e - 7);
  return s ? -r : r;
}
double e5m2_value(uint8_t v) {
  int s = v >> 7, e = (v >> 2) & 31, m = v & 3;
  if (e == 31) return m ? NAN : (s ? -INFINITY : INFINITY);
  double r = e == 0 ? std::ldexp(m / 4.0, -14) : std::ldexp(1 + m / 4.0, e - 15);
  return s ? -r : r;
}

template <typename Dec, typename Enc, typename Ref>
void check_fp8(Dec dec, Enc enc, Ref ref, bool has_inf) {
  for (int v = 0; v < 256; ++v) {
    const double want = ref(static_cast<uint8_t>(v));
    const float got = dec(static_cast<uint8_t>(v));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << v;
      EXPECT_TRUE(std::isnan(dec(enc(got)))) << v;
      continue;
    }
    EXPECT_EQ(static_cast<double>(got), want) << "code " << v;
    EXPECT_EQ(enc(got), v) << "code " << v;
  }
  // Midpoints between neighbouring positive finite codes round to the even code.
  for (int v = 0; v < 127; ++v) {
    const double a = ref(v), b = ref(v + 1);
    if (std::isnan(b) || std::isinf(b)) continue;
    const float mid = static_cast<float>((a + b) / 2);
    EXPECT_EQ(enc(mid), (v % 2 == 0) ? v : v + 1) << "midpoint of " << v << " and " << v + 1;
    EXPECT_EQ(enc(std::nextafter(mid, 0.0f)), v);
    EXPECT_EQ(enc(std::nextafter(mid, 1e9f)), v + 1);
  }
  EXPECT_TRUE(has_inf ? std::isinf(dec(enc(1e30f))) : std::isnan(dec(enc(1e30f))));
}

TEST(FloatConvert, Fp8E4M3AllCodes) { check_fp8(e4m3_to_f32, f32_to_e4m3, e4m3_value, false); }
TEST(FloatConvert, Fp8E5M2AllCodes) { check_fp8(e5m2_to_f32, f32_to_e5m2, e5m2_value, true); }

TEST(FloatConvert, Fp8E4M3Limits) {
  EXPECT_EQ(e4m3_to_f32(f32_to_e4m3(448.0f)), 448.0f);
  EXPECT_EQ(f32_to_e4m3(460.0f), 0x7e);  // below the midpoint to "480": stays 448
  EXPECT_EQ(f32_to_e4m3(464.0f), 0x7e);  // the tie goes to the even code, 448
  EXPECT_TRUE(std::isnan(e4m3_to_f32(f32_to_e4m3(465.0f))));  // past it: NaN, not saturated
}

}  // namespace
}  // namespace lowbit

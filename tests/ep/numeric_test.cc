// BF16 and FP8 E4M3 conversions of the CPU reference: exact on every code, ties to even,
// saturation, and the FP8 scale rule.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "reference/numeric.h"

namespace epyard::ep::ref {
namespace {

float fromBits(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}

TEST(Bf16, RoundsToNearestEven) {
  EXPECT_EQ(floatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(floatToBf16(fromBits(0x3f808000u)), 0x3f80) << "tie goes to the even mantissa";
  EXPECT_EQ(floatToBf16(fromBits(0x3f818000u)), 0x3f82) << "tie goes to the even mantissa";
  EXPECT_EQ(floatToBf16(fromBits(0x3f808001u)), 0x3f81) << "above the tie rounds up";
  EXPECT_EQ(floatToBf16(-2.5f), 0xc020);
  EXPECT_TRUE(std::isnan(bf16ToFloat(floatToBf16(NAN))));
}

TEST(Bf16, EveryFiniteCodeRoundTrips) {
  for (uint32_t b = 0; b < 0x10000; ++b) {
    float f = bf16ToFloat(static_cast<uint16_t>(b));
    if (std::isnan(f)) continue;
    ASSERT_EQ(floatToBf16(f), b) << std::hex << b;
  }
}

TEST(E4m3, EveryCodeRoundTrips) {
  for (int q = 0; q < 256; ++q) {
    float f = e4m3ToFloat(static_cast<uint8_t>(q));
    if (std::isnan(f)) continue;
    if (f == 0.0f && q == 0x80) continue;  // -0 encodes as 0x80, checked below
    ASSERT_EQ(floatToE4m3(f), q) << "code 0x" << std::hex << q << " = " << f;
  }
  EXPECT_EQ(floatToE4m3(-0.0f), 0x80);
}

TEST(E4m3, KnownValues) {
  EXPECT_EQ(e4m3ToFloat(0x7e), 448.0f);
  EXPECT_EQ(e4m3ToFloat(0x08), std::ldexp(1.0f, -6)) << "smallest normal";
  EXPECT_EQ(e4m3ToFloat(0x01), std::ldexp(1.0f, -9)) << "smallest subnormal";
  EXPECT_EQ(e4m3ToFloat(0x38), 1.0f);
  EXPECT_TRUE(std::isnan(e4m3ToFloat(0x7f)));
}

TEST(E4m3, SaturatesAndRoundsTiesToEven) {
  EXPECT_EQ(floatToE4m3(1000.0f), 0x7e);
  EXPECT_EQ(floatToE4m3(-1e30f), 0xfe);
  EXPECT_EQ(floatToE4m3(INFINITY), 0x7e);
  // 1.0625 lies halfway between 1.0 (0x38, even) and 1.125 (0x39).
  EXPECT_EQ(floatToE4m3(1.0625f), 0x38);
  // 1.1875 lies halfway between 1.125 (0x39) and 1.25 (0x3a, even).
  EXPECT_EQ(floatToE4m3(1.1875f), 0x3a);
  // Halfway between the two smallest subnormals (1 and 2 times 2^-9): to 2 (even).
  EXPECT_EQ(floatToE4m3(1.5f * std::ldexp(1.0f, -9)), 0x02);
  // Just below half the smallest subnormal flushes to zero.
  EXPECT_EQ(floatToE4m3(0.49f * std::ldexp(1.0f, -9)), 0x00);
}

TEST(Fp8Scale, FloorAndPowerOfTwo) {
  EXPECT_FLOAT_EQ(fp8Scale(0.0f, false), kMinAmax / kFp8Max);
  EXPECT_FLOAT_EQ(fp8Scale(448.0f, false), 1.0f);
  EXPECT_FLOAT_EQ(fp8Scale(3.0f, false), 3.0f / 448.0f);
  float p = fp8Scale(3.0f, true);
  EXPECT_EQ(p, std::exp2(std::round(std::log2(p)))) << "a power of two";
  EXPECT_GE(p, 3.0f / 448.0f) << "rounded up, so amax / scale never exceeds 448";
  EXPECT_LT(p, 2 * 3.0f / 448.0f);
  // Exact powers of two stay; one ulp above one rounds up to the next (float log2 would not).
  EXPECT_EQ(fp8Scale(448.0f * 4.0f, true), 4.0f);
  float above = std::nextafter(4.0f, 8.0f) * 448.0f;
  EXPECT_GT(above / 448.0f, 4.0f);
  EXPECT_EQ(fp8Scale(above, true), 8.0f);
}

}  // namespace
}  // namespace epyard::ep::ref

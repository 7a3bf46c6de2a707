#include "reference/numeric.h"

#include <cmath>
#include <cstring>

namespace epyard::ep::ref {

uint16_t floatToBf16(float x) {
  uint32_t bits;
  memcpy(&bits, &x, 4);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);  // NaN
  uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

float bf16ToFloat(uint16_t b) {
  uint32_t bits = static_cast<uint32_t>(b) << 16;
  float x;
  memcpy(&x, &bits, 4);
  return x;
}

uint8_t floatToE4m3(float x) {
  if (std::isnan(x)) return 0x7f;
  uint8_t sign = std::signbit(x) ? 0x80 : 0x00;
  double a = std::fabs(static_cast<double>(x));
  if (a >= kFp8Max) return sign | 0x7e;  // satfinite
  if (a < std::ldexp(1.0, -6)) {
    // Subnormal: value = mantissa * 2^-9. A result of 8 is the smallest normal, whose
    // encoding (exponent 1, mantissa 0) is also 8.
    double q = std::nearbyint(a * 512.0);
    return sign | static_cast<uint8_t>(q);
  }
  int e = 0;
  double m = std::frexp(a, &e);  // a = m * 2^e, m in [0.5, 1)
  --e;                           // a = (2m) * 2^e, 2m in [1, 2)
  double q = std::nearbyint((2.0 * m - 1.0) * 8.0);
  if (q == 8.0) {
    q = 0.0;
    ++e;
  }
  int biased = e + 7;
  if (biased > 15 || (biased == 15 && q == 7.0)) return sign | 0x7e;
  return sign | static_cast<uint8_t>((biased << 3) | static_cast<int>(q));
}

float e4m3ToFloat(uint8_t q) {
  int sign = (q & 0x80) ? -1 : 1;
  int exp = (q >> 3) & 0xf;
  int mant = q & 0x7;
  if (exp == 15 && mant == 7) return NAN;
  if (exp == 0) return sign * std::ldexp(static_cast<float>(mant), -9);
  return sign * std::ldexp(1.0f + mant / 8.0f, exp - 7);
}

float fp8Scale(float amax, bool round_to_pow2) {
  float scale = (amax > kMinAmax ? amax : kMinAmax) / kFp8Max;
  if (!round_to_pow2) return scale;
  // Round up to a power of two from the bits (log2 in float can round 2^k(1+eps) down to k).
  int e = 0;
  float m = std::frexp(scale, &e);  // scale = m * 2^e, m in [0.5, 1)
  return m == 0.5f ? scale : std::ldexp(1.0f, e);
}

}  // namespace epyard::ep::ref

// Number formats on the device, bit-exact with ep/reference/numeric.*: BF16 <-> float, the
// per-128-channel FP8 scale, and E4M3 quantisation (nearest even, saturating).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <cstdint>

namespace epyard::ep {

constexpr float kFp8MaxValue = 448.0f;
constexpr float kFp8MinAmax = 1e-4f;

__device__ __forceinline__ float bf16Bits(uint32_t bits16) { return __uint_as_float(bits16 << 16); }

__device__ __forceinline__ uint16_t toBf16Bits(float x) {
  return __bfloat16_as_ushort(__float2bfloat16_rn(x));
}

// acc[i] += the i-th of the 8 BF16 values in v (float, round to nearest at each add, as the CPU
// reference sums).
__device__ __forceinline__ void addBf16x8(float acc[8], const int4& v) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    acc[2 * q] = __fadd_rn(acc[2 * q], bf16Bits(w[q] & 0xffffu));
    acc[2 * q + 1] = __fadd_rn(acc[2 * q + 1], bf16Bits(w[q] >> 16));
  }
}

// acc[i] += weight x the i-th BF16 value in v (product rounded, then the sum).
__device__ __forceinline__ void addScaledBf16x8(float acc[8], const int4& v, float weight) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(&v);
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    acc[2 * q] = __fadd_rn(acc[2 * q], __fmul_rn(weight, bf16Bits(w[q] & 0xffffu)));
    acc[2 * q + 1] = __fadd_rn(acc[2 * q + 1], __fmul_rn(weight, bf16Bits(w[q] >> 16)));
  }
}

// The 8 floats rounded to BF16, packed in order.
__device__ __forceinline__ int4 packBf16x8(const float acc[8]) {
  int4 o;
  uint32_t* ow = reinterpret_cast<uint32_t*>(&o);
#pragma unroll
  for (int q = 0; q < 4; ++q)
    ow[q] = uint32_t(toBf16Bits(acc[2 * q])) | (uint32_t(toBf16Bits(acc[2 * q + 1])) << 16);
  return o;
}

// max(amax, 1e-4) / 448, rounded up to a power of two when `round_pow2` (from the bits: a
// scale with a zero mantissa already is one).
__device__ __forceinline__ float fp8ScaleFor(float amax, bool round_pow2) {
  float scale = __fdiv_rn(fmaxf(amax, kFp8MinAmax), kFp8MaxValue);
  if (round_pow2) {
    uint32_t bits = __float_as_uint(scale);
    if (bits & 0x7fffffu) bits = (bits & 0x7f800000u) + 0x00800000u;
    scale = __uint_as_float(bits);
  }
  return scale;
}

__device__ __forceinline__ uint8_t toE4m3(float x) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(x, __NV_SATFINITE, __NV_E4M3));
}

// The 16 BF16 values in `v` (two 16-byte loads) as floats.
__device__ __forceinline__ void unpackBf16x16(const int4 v[2], float out[16]) {
  const uint32_t* w = reinterpret_cast<const uint32_t*>(v);
#pragma unroll
  for (int i = 0; i < 8; ++i) {
    out[2 * i] = bf16Bits(w[i] & 0xffffu);
    out[2 * i + 1] = bf16Bits(w[i] >> 16);
  }
}

// 16 values divided by `scale` (correctly rounded, as the reference) and quantised to E4M3.
__device__ __forceinline__ int4 quantizeE4m3x16(const float v[16], float scale) {
  int4 r;
  uint32_t* w = reinterpret_cast<uint32_t*>(&r);
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    uint32_t packed = 0;
#pragma unroll
    for (int j = 0; j < 4; ++j) packed |= uint32_t(toE4m3(__fdiv_rn(v[4 * i + j], scale))) << (8 * j);
    w[i] = packed;
  }
  return r;
}

}  // namespace epyard::ep

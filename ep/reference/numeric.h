// Bit-exact CPU models of the number formats the EP kernels produce: BF16 (round to nearest
// even) and FP8 E4M3 (round to nearest even, saturating at ±448, as CUDA's satfinite
// conversion), plus the per-128-channel scale rule used by FP8 dispatch.
#pragma once

#include <cstdint>

namespace epyard::ep::ref {

constexpr int kScaleBlock = 128;   // channels sharing one FP8 scale
constexpr float kFp8Max = 448.0f;  // largest finite E4M3 value
constexpr float kMinAmax = 1e-4f;  // amax floor, so an all-zero block gets a finite scale

uint16_t floatToBf16(float x);
float bf16ToFloat(uint16_t b);
uint8_t floatToE4m3(float x);
float e4m3ToFloat(uint8_t q);

// Scale for a block whose largest magnitude is `amax`: max(amax, kMinAmax) / 448, rounded up
// to a power of two when `round_to_pow2` (so dequantisation is an exact exponent shift).
float fp8Scale(float amax, bool round_to_pow2);

}  // namespace epyard::ep::ref

// Pseudo-gradient codecs: how an fp32 block travels between replicas
// (../shared/reference/optimizers.md §2.6, docs/outer.md).
//
// Every codec turns n fp32 values into encodedBytes(codec, n) bytes and back.
// Decoding is a pure function of the bytes, so ranks that decode the same
// bytes hold byte-identical values: this is what keeps replicas' shared state
// identical after a lossy sync (group_average.h).
//
//   kFp32         the values themselves (lossless)
//   kFp16         IEEE half, values clamped to +-65504 first; |x - x^| <= 2^-11 |x| (2^-25 below 2^-14)
//   kBf16         bfloat16, rounded to nearest even (values clamped to +-3.3895e38, the largest
//                 finite bf16, first); |x - x^| <= 2^-8 |x|
//   kUint8MinMax  header [min, max] (2 x fp32), then q = trunc((x - min) / (max - min) * 255);
//                 x^ = min + q * (max - min) / 255 (in double, rounded once to fp32; q = 0 and 255
//                 give min and max exactly), so 0 <= x - x^ < (max - min) / 255 + ulp(x^);
//                 max == min decodes exactly
//   kUint8Lut     header: 256 fp32 bin means; sigma = ||x||_2 / sqrt(n - 1) (|x| for n = 1),
//                 scale = 6 sigma / 256, q = clamp(round(x / scale) + 128, 0, 255) (ties up);
//                 x^ = LUT[q], the mean of q's bin (an empty bin holds its centre (q - 128) scale).
//                 x and x^ lie in the same bin, so |x - x^| <= scale for x in bins 1..254
//                 (-127.5 scale <= x < 126.5 scale, about |x| < 2.96 sigma), and in general
//                 |x - x^| <= (largest - smallest value of x's bin), which is what the end bins
//                 0 / 255 hold for values clipped beyond them. sigma = 0 (all zero) decodes exactly.
//
// n = 0 encodes to no bytes. encode() throws InputError (a c10::ValueError) on a NaN or
// inf, naming the element; encode() and decode() throw InputError when the tensors'
// dtype, device, contiguity or sizes are wrong.
#pragma once

#include "runtime/config/options.h"

#include <ATen/core/Tensor.h>

#include <cstdint>

namespace loom::optim::outer {

/// "fp32", "fp16", "bf16", "uint8_minmax", "uint8_lut".
const char* codecName(PseudoGradientCodec codec);

/// Bytes that encode() writes for n values (header included; 0 for n = 0).
int64_t encodedBytes(PseudoGradientCodec codec, int64_t n);

/// Encodes `values` (contiguous fp32, n elements, n >= 0) into `bytes`
/// (contiguous uint8, encodedBytes(codec, n) elements).
void encode(PseudoGradientCodec codec, const at::Tensor& values, at::Tensor& bytes);

/// Decodes `bytes` (as written by encode for n values) into `values`
/// (contiguous fp32, n elements). Throws ValueError when the sizes disagree.
void decode(PseudoGradientCodec codec, const at::Tensor& bytes, at::Tensor& values);

}  // namespace loom::optim::outer

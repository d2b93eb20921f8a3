// Tolerance checks for kernel tests.
#pragma once

#include <ATen/ATen.h>
#include <gtest/gtest.h>

namespace loom::test {

/// Passes when actual and expected have one shape and, elementwise (in float64),
///   |actual - expected| <= rtol * |expected| + atol.
/// Products (y = x * r * w) carry a purely relative error, so their checks use atol 0.
/// Gradients are sums and differences of terms whose rounding error follows the
/// terms' magnitude, not the result's, so their checks use atol = rtol * that
/// magnitude (gradientScales in rms_norm_reference.h).
inline ::testing::AssertionResult allClose(const at::Tensor& actual, const at::Tensor& expected, double rtol,
                                           double atol) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  if (expected.numel() == 0) {
    return ::testing::AssertionSuccess();
  }
  const at::Tensor a = actual.detach().to(at::kDouble).cpu().reshape(-1);
  const at::Tensor e = expected.detach().to(at::kDouble).cpu().reshape(-1);
  const at::Tensor err = (a - e).abs();
  const at::Tensor bound = rtol * e.abs() + atol;
  if (!(err <= bound).all().item<bool>()) {  // NaN compares false: fails too
    const int64_t i = (err - bound).nan_to_num(1e300).argmax().item<int64_t>();
    return ::testing::AssertionFailure() << "|actual - expected| > rtol * |expected| + atol at flat index " << i
                                         << ": actual " << a[i].item<double>() << ", expected " << e[i].item<double>()
                                         << ", bound " << bound[i].item<double>() << " (rtol " << rtol << ", atol "
                                         << atol << "); largest error " << err.max().item<double>();
  }
  return ::testing::AssertionSuccess();
}

}  // namespace loom::test

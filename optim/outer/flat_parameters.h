// A model's parameters seen as one flat fp32 vector, in parameter order, so
// outer state lives in flat buffers and a streaming fragment is a range of it.
#pragma once

#include "optim/adamw.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace loom::optim::outer {

/// Elements [begin, end) of the flat vector.
struct FlatRange {
  int64_t begin = 0;
  int64_t end = 0;
  int64_t numel() const { return end - begin; }
};

class FlatParameters {
 public:
  /// REQUIRES: float32 CPU tensors that outlive this object.
  explicit FlatParameters(NamedTensors params);

  int64_t numel() const { return numel_; }
  /// `count` ranges that cover the vector in order, cut at parameter
  /// boundaries, each as close to numel() / count elements as those allow.
  /// `sizes` (one per parameter, optional) replaces the parameters' element
  /// counts in choosing the cuts: with tensor parallelism, the whole tensors'
  /// counts, so every layout cuts at the same parameters. Throws InputError
  /// when there are fewer parameters than `count`.
  std::vector<FlatRange> fragments(int64_t count, const std::vector<int64_t>& sizes = {}) const;

  /// flat[range] <- the parameters' values there (`flat` has numel() elements).
  void gather(at::Tensor& flat, FlatRange range) const;
  /// The parameters' values in `range` <- flat[range].
  void scatter(const at::Tensor& flat, FlatRange range) const;
  FlatRange all() const { return {0, numel_}; }

 private:
  NamedTensors params_;
  std::vector<int64_t> offsets_;  ///< offsets_[i]: first element of params_[i]; back() == numel_
  int64_t numel_ = 0;
};

}  // namespace loom::optim::outer

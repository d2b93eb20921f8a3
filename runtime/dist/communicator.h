// The communication seam every layer above runtime/ talks through
// (ARCHITECTURE.md §2). Collectives are asynchronous: each returns a Work to
// wait on, so callers can overlap communication with compute. Every backend
// counts the bytes it sends and receives, which is how tests assert volumes.
#pragma once

#include <ATen/core/Tensor.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace loom::dist {

enum class ReduceOp { kSum, kAvg, kMax, kMin };

/// A collective in flight. wait() returns once this rank's part is complete and
/// the output tensor may be read; it throws when the operation failed or the
/// timeout expired, naming the operation.
class Work {
 public:
  virtual ~Work() = default;
  virtual void wait(std::chrono::milliseconds timeout) = 0;
  virtual bool isCompleted() const = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "self", "gloo", "mpi" or "nccl": for logs and metrics.
  virtual std::string backendName() const = 0;

  /// In place: afterwards every rank holds op(tensor over all ranks).
  virtual std::unique_ptr<Work> allReduce(at::Tensor& tensor, ReduceOp op) = 0;
  /// In place: afterwards every rank holds root's tensor.
  virtual std::unique_ptr<Work> broadcast(at::Tensor& tensor, int root) = 0;
  /// Returns when every rank has called barrier(), or throws after `timeout`.
  virtual void barrier(std::chrono::milliseconds timeout) = 0;

  virtual int64_t bytesSent() const = 0;
  virtual int64_t bytesReceived() const = 0;
};

/// Creates the communicator of a world that holds only this process. Its
/// collectives are complete on return and move no bytes; it is what a
/// single-rank job runs on, not a test double.
std::unique_ptr<Communicator> makeSelfCommunicator();

}  // namespace loom::dist

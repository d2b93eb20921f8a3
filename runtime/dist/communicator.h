// The communication seam every layer above runtime/ talks through
// (ARCHITECTURE.md §2).
//
// Collectives are asynchronous: each returns a Work to wait on, so callers can
// overlap communication with compute. Every operation has a timeout (the
// communicator's default or a per-op one); when it fails or times out, wait()
// throws loom::PeerLostError naming the operation, its sequence number, the
// training step and, when the ranks publish their progress (ProgressBoard), the
// ranks that did not arrive:
//   "gloo allReduce #17 (step 42, 1048576 x Float) on rank 1 of 4 timed out after
//    600000 ms; ranks 3 did not arrive (last seen at #16)"
//
// Backends implement the protected do*() methods; this base class numbers the
// operations, applies timeouts, counts bytes and formats failures, so every
// backend behaves the same at the seam.
#pragma once

#include <ATen/core/Tensor.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::dist {

class ProgressBoard;

enum class ReduceOp { kSum, kAvg, kMax, kMin };
const char* reduceOpName(ReduceOp op);

/// Per-operation settings. A zero timeout means the communicator's default.
struct OpOptions {
  std::chrono::milliseconds timeout{0};
};

/// A backend's handle on one operation in flight.
class BackendWork {
 public:
  virtual ~BackendWork() = default;
  /// Waits up to `timeout`. Returns false when it expired (the operation may
  /// still be pending); throws std::exception when the operation failed.
  virtual bool waitFor(std::chrono::milliseconds timeout) = 0;
  virtual bool isCompleted() = 0;
};

/// Everything a failure message says about an operation.
struct OpRecord {
  std::string backend;
  std::string name;     ///< "allReduce", "broadcast", ...
  uint64_t seq = 0;     ///< 1-based, per communicator, in issue order
  int64_t step = -1;    ///< training step, -1 when unknown
  std::string payload;  ///< "1048576 x Float"
  int rank = 0;
  int size = 1;
  std::chrono::milliseconds timeout{0};
};

/// An operation in flight, as callers see it.
class Work {
 public:
  Work(std::unique_ptr<BackendWork> work, OpRecord record, std::shared_ptr<ProgressBoard> board);

  /// Returns once this rank's part is done and outputs may be read. Throws
  /// loom::PeerLostError (with the message above) on failure or timeout.
  void wait();
  bool isCompleted();
  const OpRecord& record() const { return record_; }

 private:
  std::unique_ptr<BackendWork> work_;
  OpRecord record_;
  std::shared_ptr<ProgressBoard> board_;
};

struct CommunicatorOptions {
  /// Default timeout of every operation (10 minutes, like NCCL in PyTorch 2.x).
  std::chrono::milliseconds timeout{std::chrono::minutes(10)};
};

class Communicator {
 public:
  explicit Communicator(const CommunicatorOptions& opts);
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "self", "gloo", "mpi" or "nccl": for logs and metrics.
  virtual std::string backendName() const = 0;

  /// In place: every rank ends with op(tensor over all ranks). kAvg divides by size().
  std::unique_ptr<Work> allReduce(at::Tensor& tensor, ReduceOp op, const OpOptions& opts = {});
  /// In place: every rank ends with root's tensor.
  std::unique_ptr<Work> broadcast(at::Tensor& tensor, int root, const OpOptions& opts = {});
  /// `output` (contiguous, size() * input.numel() elements, input's dtype) receives
  /// rank r's input at elements [r * n, (r + 1) * n).
  std::unique_ptr<Work> allGather(const at::Tensor& input, at::Tensor& output, const OpOptions& opts = {});
  /// `input` holds size() * n elements; `output` (n elements) receives op over all
  /// ranks of input's elements [rank() * n, (rank() + 1) * n).
  std::unique_ptr<Work> reduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op,
                                      const OpOptions& opts = {});
  /// Point to point; `tag` tells apart messages between the same pair.
  std::unique_ptr<Work> send(const at::Tensor& tensor, int dst, int tag, const OpOptions& opts = {});
  std::unique_ptr<Work> recv(at::Tensor& tensor, int src, int tag, const OpOptions& opts = {});
  /// Returns when every rank has called barrier(); throws like Work::wait().
  void barrier(const OpOptions& opts = {});

  /// A communicator over `ranks` (ranks of this one, ascending, including
  /// rank()); its rank is the index in `ranks`. Every member calls split() with
  /// the same list at the same point of its program; other ranks do not call.
  virtual std::unique_ptr<Communicator> split(const std::vector<int>& ranks) = 0;

  /// Fails this rank's pending and future operations at once (they throw); for
  /// when a peer is known to be lost. Idempotent, callable from any thread.
  virtual void abort() = 0;

  /// Bytes this rank sent / received so far, counted with the ring-algorithm
  /// volumes nccl-tests uses (docs/distributed.md): all-reduce 2(n-1)/n * bytes
  /// each way, all-gather and reduce-scatter (n-1)/n * the full buffer, broadcast
  /// bytes (root sends, the others receive), send/recv their bytes.
  int64_t bytesSent() const { return bytes_sent_.load(); }
  int64_t bytesReceived() const { return bytes_received_.load(); }
  /// Collectives (all but send/recv) this rank has issued so far.
  uint64_t collectivesIssued() const { return seq_.load(); }

  /// The training step named in failure messages.
  void setStep(int64_t step) { step_.store(step); }
  const CommunicatorOptions& options() const { return opts_; }

 protected:
  /// Where ranks publish their progress, so a timeout can name laggards; optional.
  void setProgressBoard(std::shared_ptr<ProgressBoard> board) { board_ = std::move(board); }

  virtual std::unique_ptr<BackendWork> doAllReduce(at::Tensor& tensor, ReduceOp op) = 0;
  virtual std::unique_ptr<BackendWork> doBroadcast(at::Tensor& tensor, int root) = 0;
  virtual std::unique_ptr<BackendWork> doAllGather(const at::Tensor& input, at::Tensor& output) = 0;
  virtual std::unique_ptr<BackendWork> doReduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) = 0;
  virtual std::unique_ptr<BackendWork> doSend(const at::Tensor& tensor, int dst, int tag) = 0;
  virtual std::unique_ptr<BackendWork> doRecv(at::Tensor& tensor, int src, int tag) = 0;
  virtual std::unique_ptr<BackendWork> doBarrier() = 0;

 private:
  OpRecord begin(const char* name, const at::Tensor* payload, const OpOptions& opts);
  std::unique_ptr<Work> finish(std::unique_ptr<BackendWork> work, OpRecord record);
  void count(int64_t sent, int64_t received);

  CommunicatorOptions opts_;
  std::shared_ptr<ProgressBoard> board_;
  std::atomic<uint64_t> seq_{0};
  std::atomic<int64_t> step_{-1};
  std::atomic<int64_t> bytes_sent_{0};
  std::atomic<int64_t> bytes_received_{0};
};

/// The communicator of a world that holds only this process. Its operations
/// complete on return and move no bytes; it is what a single-rank job runs on.
std::unique_ptr<Communicator> makeSelfCommunicator(const CommunicatorOptions& opts = {});

}  // namespace loom::dist

// The NCCL backend of the Communicator (ARCHITECTURE.md §2): CUDA tensors over
// NCCL 2.28, one process (or thread) per GPU.
#pragma once

#include "runtime/core/build_config.h"

#if LOOM_WITH_NCCL

#include "runtime/dist/communicator.h"

#include <cuda_runtime_api.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace loom::dist {

class NcclComm;
class NcclCommunicator;

/// Creates rank `rank` of `size` on CUDA device `device`: rank 0 makes the
/// NCCL unique id (ncclGetUniqueId) and shares it through `store`, which must
/// be private to this communicator (e.g. a PrefixStore per generation: it also
/// holds the progress board and the stores of split communicators); then
/// ncclCommInitRankConfig in non-blocking mode, polled up to opts.timeout.
/// Every rank calls it with its own device (NCCL does not support two ranks on
/// one device). Throws InputError for a bad rank or device, PeerLostError when
/// a rank does not join in time, c10::Error for CUDA/NCCL failures.
std::unique_ptr<NcclCommunicator> makeNcclCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                       int device, const CommunicatorOptions& opts = {});

/// Collectives run on the communicator's own CUDA stream, after the work
/// queued so far on the compute stream (setComputeStream); each returns a Work
/// whose wait() blocks the host until the operation's CUDA event completed,
/// polling ncclCommGetAsyncError meanwhile, up to the operation's timeout.
/// Tensors must be contiguous and on this communicator's device. kAvg is
/// ncclAvg (integers truncate). Sends and receives are launched together as
/// one NCCL group when a collective follows or one of them is waited on or
/// polled; NCCL pairs them in issue order per peer, so `tag` is not used.
///
/// A timed-out operation is still running on the GPU: abort() the
/// communicator (ncclCommAbort) before rebuilding. Thread-safe.
class NcclCommunicator final : public Communicator {
 public:
  ~NcclCommunicator() override;

  int rank() const override;
  int size() const override;
  std::string backendName() const override { return "nccl"; }
  int device() const;
  /// The stream NCCL runs on; callers that read results on the GPU without
  /// wait() can make their stream wait on an event recorded here.
  cudaStream_t stream() const;
  /// Operations wait for the work queued on `stream` when they are launched
  /// (default: the legacy default stream, libtorch's default too). Returns the
  /// stream it replaces.
  cudaStream_t setComputeStream(cudaStream_t stream);

  /// A new NCCL communicator over `ranks`, created only by them (as the
  /// contract requires): the unique id travels through the store. Throws
  /// PeerLostError when a member does not join within the timeout.
  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override;

  /// ncclCommSplit: EVERY rank of this communicator calls it; ranks with the
  /// same color >= 0 form a communicator, ordered by `key`; a negative color
  /// yields nullptr. Cheaper than split() (no store round trip, resources shared).
  std::unique_ptr<NcclCommunicator> splitByColor(int color, int key);

  /// ncclCommShrink (NCCL 2.28): the ranks not in `excluded_ranks` call it and
  /// get a communicator over themselves, renumbered in order. With
  /// `abort_pending` (NCCL_SHRINK_ABORT) this communicator's pending operations
  /// are terminated first, which is what a survivor of a lost peer needs; this
  /// communicator then only fails its waits and should be destroyed.
  std::unique_ptr<NcclCommunicator> shrink(const std::vector<int>& excluded_ranks, bool abort_pending = true);

  void abort() override;

 protected:
  std::unique_ptr<BackendWork> doAllReduce(at::Tensor& tensor, ReduceOp op) override;
  std::unique_ptr<BackendWork> doBroadcast(at::Tensor& tensor, int root) override;
  std::unique_ptr<BackendWork> doAllGather(const at::Tensor& input, at::Tensor& output) override;
  std::unique_ptr<BackendWork> doReduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override;
  std::unique_ptr<BackendWork> doSend(const at::Tensor& tensor, int dst, int tag) override;
  std::unique_ptr<BackendWork> doRecv(at::Tensor& tensor, int src, int tag) override;
  std::unique_ptr<BackendWork> doBarrier() override;

 private:
  NcclCommunicator(std::shared_ptr<NcclComm> comm, c10::intrusive_ptr<c10d::Store> store,
                   const CommunicatorOptions& opts);
  friend std::unique_ptr<NcclCommunicator> makeNcclCommunicator(c10::intrusive_ptr<c10d::Store>, int, int, int,
                                                                const CommunicatorOptions&);
  /// The store of a communicator derived from this one, under a prefix that
  /// every member computes alike: "<kind>/<detail>/<n-th such derivation>".
  c10::intrusive_ptr<c10d::Store> childStore(const std::string& kind, const std::string& detail);
  void checkTensor(const at::Tensor& t, const char* op) const;

  std::shared_ptr<NcclComm> comm_;
  c10::intrusive_ptr<c10d::Store> store_;
  std::mutex children_mutex_;
  std::map<std::string, int> children_;  // derivations so far per kind/detail; guarded by children_mutex_
};

}  // namespace loom::dist

#endif  // LOOM_WITH_NCCL

// TokenWeave's second stream (parallel_elastic.md §3.4) for the jobs a
// CommStream runs on CUDA tensors.
//
// On the CPU a CommStream job is ordered by its ticket alone: the job reads its
// inputs when it runs and its results exist when wait() returns. On a GPU the
// host calls only enqueue work, so the job's kernels and collectives need an
// order of their own: a job queued while the submitter's stream still computes
// must start after what was queued before it, but not after the compute queued
// since (the other half of the tokens), or nothing overlaps. A SideStream runs
// every job's device work on one stream of its own (high priority, like
// TokenWeave's copy stream), made current for libtorch and the group's NCCL
// calls while the job runs:
//
//   submitting thread  handOff(inputs): marks its current stream (an event)
//   job's thread       StreamHandoff::run(job): the side stream waits for the
//                      mark, then `job` enqueues on it, then marks its end
//   waiting thread     after the ticket's wait, join(results): its current
//                      stream waits for that end
//
// The caching allocator is told which streams use which blocks (record_stream):
// inputs made on the submitter's stream are not reused until the side stream
// read them, results made on the side stream until the joining stream used them.
#pragma once

#include "runtime/dist/communicator.h"

#include <ATen/core/Tensor.h>
#include <c10/core/Device.h>

#include <functional>
#include <memory>
#include <vector>

namespace loom::parallel {

/// One job's crossing from its submitter's stream to the side stream and back.
class StreamHandoff {
 public:
  virtual ~StreamHandoff() = default;
  /// On the job's thread: `job` with the side stream current, after the work
  /// the submitter had queued when it handed off.
  virtual void run(const std::function<void()>& job) = 0;
  /// On a waiting thread, after the job ran: its current stream waits for the
  /// job's device work. `results` are tensors the job made that it will use.
  virtual void join(const std::vector<at::Tensor>& results) = 0;
};

class SideStream {
 public:
  virtual ~SideStream() = default;
  /// On the submitting thread, before queuing the job. `inputs`: tensors the
  /// job reads that this thread's stream made.
  virtual std::shared_ptr<StreamHandoff> handOff(const std::vector<at::Tensor>& inputs) = 0;
};

/// The side stream for jobs on `device` over `group`: nullptr for the CPU. For a
/// CUDA device, a high-priority stream from libtorch's pool; while a job runs,
/// an NCCL `group` orders its collectives after that stream (outside jobs, after
/// its usual compute stream). Throws InputError for a CUDA device in a build
/// without a CUDA libtorch.
std::unique_ptr<SideStream> makeSideStream(const c10::Device& device, dist::Communicator& group);

/// While it lives, an NCCL `group`'s collectives order after the constructing
/// thread's current libtorch stream on `device` (as c10d's do) rather than after
/// the group's compute stream, so tensors just made on a stream of the caller's
/// choosing are complete when NCCL reads them. Nothing for other devices or
/// backends.
class CurrentStreamOrder {
 public:
  CurrentStreamOrder(dist::Communicator& group, const c10::Device& device);
  ~CurrentStreamOrder();
  CurrentStreamOrder(const CurrentStreamOrder&) = delete;
  CurrentStreamOrder& operator=(const CurrentStreamOrder&) = delete;

 private:
  struct Order;
  std::unique_ptr<Order> order_;
};

}  // namespace loom::parallel

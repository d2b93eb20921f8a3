#include "runtime/dist/mpi_communicator.h"

#include "runtime/core/error.h"
#include "runtime/dist/mpi_check.h"
#include "runtime/dist/mpi_environment.h"
#include "runtime/dist/mpi_executor.h"
#include "runtime/dist/mpi_types.h"
#include "runtime/dist/progress_board.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <algorithm>
#include <climits>
#include <map>
#include <mutex>
#include <sstream>

namespace loom::dist {
namespace {

// MPI_Comm_create_group's tag; calls on one communicator are serialised on its thread.
constexpr int kSplitTag = 0;

// Owns an MPI communicator; shared by the communicator and its queued tasks.
class MpiCommHandle {
 public:
  explicit MpiCommHandle(MPI_Comm comm) : comm_(comm) {}
  ~MpiCommHandle() {
    int finalized = 0;
    if (comm_ != MPI_COMM_NULL && MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Comm_free(&comm_);
  }
  MpiCommHandle(const MpiCommHandle&) = delete;
  MpiCommHandle& operator=(const MpiCommHandle&) = delete;
  MPI_Comm get() const { return comm_; }

 private:
  MPI_Comm comm_;
};

int countOf(const at::Tensor& t, const char* op) {
  LOOM_CHECK_INPUT(t.numel() <= INT_MAX, "mpi ", op, ": ", t.numel(),
                   " elements exceed MPI's int count (2^31 - 1); split the tensor into smaller ones");
  return static_cast<int>(t.numel());
}

// A predefined datatype as wide as one element: data that is only moved needs no arithmetic type.
MPI_Datatype transferType(const at::Tensor& t) {
  switch (t.element_size()) {
    case 1:
      return MPI_UINT8_T;
    case 2:
      return MPI_UINT16_T;
    case 4:
      return MPI_UINT32_T;
    case 8:
      return MPI_UINT64_T;
    case 16:
      return MPI_C_DOUBLE_COMPLEX;
  }
  LOOM_THROW(InputError, "mpi: cannot move ", t.scalar_type(), " tensors (", t.element_size(), "-byte elements)");
}

int64_t bytesOf(const at::Tensor& t) {
  return t.numel() * static_cast<int64_t>(t.element_size());
}

bool overlap(const at::Tensor& a, const at::Tensor& b) {
  return bytesOverlap(a.data_ptr(), bytesOf(a), b.data_ptr(), bytesOf(b));
}

void divideBy(at::Tensor& t, int size) {
  if (at::isIntegralType(t.scalar_type(), /*includeBool=*/false)) {
    t.div_(size, "trunc");
  } else {
    t.div_(size);
  }
}

std::string joined(const std::vector<int>& ranks) {
  std::ostringstream out;
  for (size_t i = 0; i < ranks.size(); ++i) out << (i ? "," : "") << ranks[i];
  return out.str();
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(std::shared_ptr<MpiCommHandle> comm, const CommunicatorOptions& opts,
                  c10::intrusive_ptr<c10d::Store> store)
      : Communicator(opts),
        comm_(std::move(comm)),
        ops_(std::make_shared<MpiReduceOps>()),
        signals_(std::make_shared<MpiSignals>()),
        store_(std::move(store)),
        collectives_(signals_, AfterAbort::kSkip),
        requests_(signals_, AfterAbort::kRun) {
    LOOM_MPI_CHECK(MPI_Comm_set_errhandler(comm_->get(), MPI_ERRORS_RETURN), "making MPI errors return to loom");
    LOOM_MPI_CHECK(MPI_Comm_rank(comm_->get(), &rank_), "rank in loom's communicator");
    LOOM_MPI_CHECK(MPI_Comm_size(comm_->get(), &size_), "size of loom's communicator");
    void* tag_ub = nullptr;
    int found = 0;
    LOOM_MPI_CHECK(MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &tag_ub, &found), "reading MPI_TAG_UB");
    tag_ub_ = found ? *static_cast<int*>(tag_ub) : 32767;  // the standard's guaranteed minimum
    if (store_) setProgressBoard(std::make_shared<ProgressBoard>(store_, rank_, size_));
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backendName() const override { return "mpi"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    checkSplitRanks(ranks);
    LOOM_CHECK(!aborted(), "mpi split: the communicator was aborted; build a new job instead");
    auto child = std::make_shared<MPI_Comm>(MPI_COMM_NULL);
    auto work = collectives_.submit([comm = comm_, members = ranks, child]() mutable {
      MPI_Group parent = MPI_GROUP_NULL;
      MPI_Group group = MPI_GROUP_NULL;
      LOOM_MPI_CHECK(MPI_Comm_group(comm->get(), &parent), "group of the communicator being split");
      const int included = MPI_Group_incl(parent, static_cast<int>(members.size()), members.data(), &group);
      MPI_Group_free(&parent);
      LOOM_MPI_CHECK(included, "group of ranks ", joined(members));
      const int created = MPI_Comm_create_group(comm->get(), group, kSplitTag, child.get());
      MPI_Group_free(&group);
      LOOM_MPI_CHECK(created, "communicator over ranks ", joined(members));
    });
    if (!work->waitFor(options().timeout)) {
      LOOM_THROW(PeerLostError, "mpi split into ranks [", joined(ranks), "] on rank ", rank_, " of ", size_,
                 " timed out after ", options().timeout.count(),
                 " ms: a member did not call split(); every listed rank must call it at the same point");
    }
    auto handle = std::make_shared<MpiCommHandle>(*child);
    c10::intrusive_ptr<c10d::Store> child_store;
    if (store_) {
      std::lock_guard<std::mutex> lock(split_mutex_);
      // Every member calls split() with this list in the same order, so the count agrees.
      const int nth = ++split_counts_[ranks];
      child_store =
          c10::make_intrusive<c10d::PrefixStore>("split/" + joined(ranks) + "/" + std::to_string(nth), store_);
    }
    return std::make_unique<MpiCommunicator>(std::move(handle), options(), std::move(child_store));
  }

  void abort() override {
    {
      std::lock_guard<std::mutex> lock(signals_->mutex);
      signals_->aborted = true;
    }
    signals_->changed.notify_all();
  }

 protected:
  std::unique_ptr<BackendWork> doAllReduce(at::Tensor& tensor, ReduceOp op) override {
    const MpiReduction reduction = ops_->reduction(op, tensor.scalar_type());
    const int count = countOf(tensor, "allReduce");
    at::Tensor buffer = tensor.contiguous();
    return collectives_.submit(
        [comm = comm_, ops = ops_, tensor, buffer, reduction, count, op, size = size_]() mutable {
          LOOM_MPI_CHECK(
              MPI_Allreduce(MPI_IN_PLACE, buffer.data_ptr(), count, reduction.datatype, reduction.op, comm->get()),
              "allReduce of ", count, " x ", buffer.scalar_type());
          if (op == ReduceOp::kAvg) divideBy(buffer, size);
          if (!buffer.is_same(tensor)) tensor.copy_(buffer);
        });
  }

  std::unique_ptr<BackendWork> doBroadcast(at::Tensor& tensor, int root) override {
    const MPI_Datatype type = transferType(tensor);
    const int count = countOf(tensor, "broadcast");
    at::Tensor buffer = tensor.contiguous();
    return collectives_.submit([comm = comm_, tensor, buffer, type, count, root]() mutable {
      LOOM_MPI_CHECK(MPI_Bcast(buffer.data_ptr(), count, type, root, comm->get()), "broadcast from rank ", root);
      if (!buffer.is_same(tensor)) tensor.copy_(buffer);
    });
  }

  std::unique_ptr<BackendWork> doAllGather(const at::Tensor& input, at::Tensor& output) override {
    const MPI_Datatype type = transferType(input);
    const int count = countOf(input, "allGather");
    // ZeRO-style callers gather from their own slice of the output: MPI's in-place form.
    const bool in_place =
        input.is_contiguous() && input.data_ptr() == static_cast<char*>(output.data_ptr()) + rank_ * bytesOf(input);
    at::Tensor send = in_place ? input : input.contiguous();
    if (!in_place && overlap(send, output)) send = send.clone();  // MPI forbids aliased buffers
    return collectives_.submit([comm = comm_, send, output, type, count, in_place]() mutable {
      LOOM_MPI_CHECK(MPI_Allgather(in_place ? MPI_IN_PLACE : send.data_ptr(), count, type, output.data_ptr(), count,
                                   type, comm->get()),
                     "allGather of ", count, " x ", send.scalar_type(), " per rank");
    });
  }

  std::unique_ptr<BackendWork> doReduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    const MpiReduction reduction = ops_->reduction(op, input.scalar_type());
    const int count = countOf(output, "reduceScatter");
    // MPI forbids aliased buffers; a shard that is a view into the input is common (ZeRO).
    at::Tensor receive = output.is_contiguous() && !overlap(input, output)
                             ? output
                             : at::empty_like(output, at::MemoryFormat::Contiguous);
    return collectives_.submit(
        [comm = comm_, ops = ops_, input, output, receive, reduction, count, op, size = size_]() mutable {
          LOOM_MPI_CHECK(MPI_Reduce_scatter_block(input.data_ptr(), receive.data_ptr(), count, reduction.datatype,
                                                  reduction.op, comm->get()),
                         "reduceScatter of ", count, " x ", input.scalar_type(), " per rank");
          if (op == ReduceOp::kAvg) divideBy(receive, size);
          if (!receive.is_same(output)) output.copy_(receive);
        });
  }

  std::unique_ptr<BackendWork> doSend(const at::Tensor& tensor, int dst, int tag) override {
    checkTag(tag);
    const MPI_Datatype type = transferType(tensor);
    const int count = countOf(tensor, "send");
    if (aborted()) return MpiWork::failed(signals_, abortedError("send"));
    at::Tensor buffer = tensor.contiguous();
    MPI_Request request = MPI_REQUEST_NULL;
    try {
      LOOM_MPI_CHECK(MPI_Isend(buffer.data_ptr(), count, type, dst, tag, comm_->get(), &request), "send to rank ", dst,
                     " tag ", tag);
    } catch (...) {
      return MpiWork::failed(signals_, std::current_exception());
    }
    return requests_.submit([comm = comm_, buffer, request, dst, tag]() mutable {
      LOOM_MPI_CHECK(MPI_Wait(&request, MPI_STATUS_IGNORE), "send to rank ", dst, " tag ", tag);
    });
  }

  std::unique_ptr<BackendWork> doRecv(at::Tensor& tensor, int src, int tag) override {
    checkTag(tag);
    const MPI_Datatype type = transferType(tensor);
    const int count = countOf(tensor, "recv");
    if (aborted()) return MpiWork::failed(signals_, abortedError("recv"));
    at::Tensor buffer = tensor.is_contiguous() ? tensor : at::empty_like(tensor, at::MemoryFormat::Contiguous);
    MPI_Request request = MPI_REQUEST_NULL;
    try {
      LOOM_MPI_CHECK(MPI_Irecv(buffer.data_ptr(), count, type, src, tag, comm_->get(), &request), "recv from rank ",
                     src, " tag ", tag);
    } catch (...) {
      return MpiWork::failed(signals_, std::current_exception());
    }
    return requests_.submit([comm = comm_, tensor, buffer, request, type, count, src, tag]() mutable {
      MPI_Status status;
      LOOM_MPI_CHECK(MPI_Wait(&request, &status), "recv from rank ", src, " tag ", tag);
      int received = 0;
      LOOM_MPI_CHECK(MPI_Get_count(&status, type, &received), "size of the message from rank ", src);
      LOOM_CHECK(received == count, "mpi recv from rank ", src, " tag ", tag, ": got ", received,
                 " elements, expected ", count, "; sender and receiver must use tensors of the same size and dtype");
      if (!buffer.is_same(tensor)) tensor.copy_(buffer);
    });
  }

  std::unique_ptr<BackendWork> doBarrier() override {
    return collectives_.submit([comm = comm_] { LOOM_MPI_CHECK(MPI_Barrier(comm->get()), "barrier"); });
  }

 private:
  bool aborted() const {
    std::lock_guard<std::mutex> lock(signals_->mutex);
    return signals_->aborted;
  }

  static std::exception_ptr abortedError(const char* op) {
    try {
      LOOM_THROW(c10::Error, "mpi ", op, " issued after the communicator was aborted");
    } catch (...) {
      return std::current_exception();
    }
  }

  void checkTag(int tag) const {
    LOOM_CHECK_INPUT(tag >= 0 && tag <= tag_ub_, "mpi: tag ", tag, " is outside [0, ", tag_ub_, "] (MPI_TAG_UB)");
  }

  void checkSplitRanks(const std::vector<int>& ranks) const {
    bool ascending = !ranks.empty();
    for (size_t i = 0; i < ranks.size(); ++i) {
      ascending = ascending && ranks[i] >= 0 && ranks[i] < size_ && (i == 0 || ranks[i - 1] < ranks[i]);
    }
    LOOM_CHECK_INPUT(ascending, "mpi split: ranks [", joined(ranks), "] must be distinct, ascending ranks of [0, ",
                     size_, ")");
    LOOM_CHECK_INPUT(std::binary_search(ranks.begin(), ranks.end(), rank_), "mpi split: ranks [", joined(ranks),
                     "] do not include the calling rank ", rank_, "; only members call split()");
  }

  std::shared_ptr<MpiCommHandle> comm_;
  std::shared_ptr<MpiReduceOps> ops_;
  std::shared_ptr<MpiSignals> signals_;
  c10::intrusive_ptr<c10d::Store> store_;
  int rank_ = 0;
  int size_ = 1;
  int tag_ub_ = 32767;
  std::mutex split_mutex_;
  std::map<std::vector<int>, int> split_counts_;  // guarded by split_mutex_
  // Last: destroyed first, so their threads finish before the members above go.
  MpiExecutor collectives_;
  MpiExecutor requests_;
};

}  // namespace

std::unique_ptr<Communicator> makeMpiCommunicator(const CommunicatorOptions& opts,
                                                  c10::intrusive_ptr<c10d::Store> progress_store) {
  MpiEnvironment::instance();
  MPI_Comm comm = MPI_COMM_NULL;
  LOOM_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm), "duplicating MPI_COMM_WORLD for loom's communicator");
  return std::make_unique<MpiCommunicator>(std::make_shared<MpiCommHandle>(comm), opts, std::move(progress_store));
}

}  // namespace loom::dist

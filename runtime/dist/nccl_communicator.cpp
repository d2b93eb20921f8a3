#include "runtime/dist/nccl_communicator.h"

#include "runtime/core/error.h"
#include "runtime/dist/nccl_check.h"
#include "runtime/dist/nccl_comm.h"
#include "runtime/dist/nccl_recent_api.h"
#include "runtime/dist/progress_board.h"

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>

namespace loom::dist {
namespace {

const char* const kUniqueIdKey = "nccl_unique_id";

std::string joined(const std::vector<int>& ranks) {
  std::ostringstream out;
  for (size_t i = 0; i < ranks.size(); ++i) out << (i ? "," : "") << ranks[i];
  return out.str();
}

// Rank 0 makes the id; the others read it from the store, waiting up to `timeout`.
ncclUniqueId shareUniqueId(c10d::Store& store, int rank, std::chrono::milliseconds timeout) {
  ncclUniqueId id;
  if (rank == 0) {
    LOOM_NCCL_CHECK(ncclGetUniqueId(&id), nullptr, "making the communicator's unique id");
    const auto* bytes = reinterpret_cast<const uint8_t*>(&id);
    store.set(kUniqueIdKey, std::vector<uint8_t>(bytes, bytes + sizeof(id)));
    return id;
  }
  try {
    store.wait({kUniqueIdKey}, timeout);
  } catch (const std::exception& e) {
    LOOM_THROW(PeerLostError, "nccl: rank 0 did not publish the communicator's unique id within ", timeout.count(),
               " ms (", errorMessage(e), "); is rank 0 running and using the same store?");
  }
  const std::vector<uint8_t> bytes = store.get(kUniqueIdKey);
  LOOM_CHECK(bytes.size() == sizeof(id), "nccl: the store holds a unique id of ", bytes.size(), " bytes, expected ",
             sizeof(id));
  std::memcpy(&id, bytes.data(), sizeof(id));
  return id;
}

void* dataOf(const at::Tensor& t) {
  return t.data_ptr();
}

// Bool travels as uint8, but a sum of bools is no bool.
ncclDataType_t reducibleTypeOf(const at::Tensor& t, const char* op) {
  LOOM_CHECK_INPUT(t.scalar_type() != at::kBool, "nccl ", op, ": Bool tensors can be moved but not reduced; ",
                   "reduce them as Byte (uint8)");
  return ncclDataTypeOf(t.scalar_type());
}

}  // namespace

std::unique_ptr<NcclCommunicator> makeNcclCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                       int device, const CommunicatorOptions& opts) {
  LOOM_CHECK_INPUT(store, "nccl: a store is required to share the communicator's unique id");
  LOOM_CHECK_INPUT(size >= 1 && rank >= 0 && rank < size, "nccl: rank ", rank, " is outside a world of size ", size);
  checkCudaDevice(device);  // before sharing the id, so a bad device fails here and not as a peer's timeout
  const ncclUniqueId id = shareUniqueId(*store, rank, opts.timeout);
  auto comm = NcclComm::create(id, rank, size, device, opts.timeout);
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(comm), std::move(store), opts));
}

NcclCommunicator::NcclCommunicator(std::shared_ptr<NcclComm> comm, c10::intrusive_ptr<c10d::Store> store,
                                   const CommunicatorOptions& opts)
    : Communicator(opts), comm_(std::move(comm)), store_(std::move(store)) {
  setProgressBoard(std::make_shared<ProgressBoard>(store_, comm_->rank(), comm_->size()));
}

NcclCommunicator::~NcclCommunicator() = default;

int NcclCommunicator::rank() const {
  return comm_->rank();
}
int NcclCommunicator::size() const {
  return comm_->size();
}
int NcclCommunicator::device() const {
  return comm_->device();
}
cudaStream_t NcclCommunicator::stream() const {
  return comm_->stream();
}
cudaStream_t NcclCommunicator::setComputeStream(cudaStream_t stream) {
  return comm_->setComputeStream(stream);
}
void NcclCommunicator::abort() {
  comm_->abort();
}

c10::intrusive_ptr<c10d::Store> NcclCommunicator::childStore(const std::string& kind, const std::string& detail) {
  std::lock_guard<std::mutex> lock(children_mutex_);
  const std::string key = kind + "/" + detail;
  return c10::make_intrusive<c10d::PrefixStore>(key + "/" + std::to_string(++children_[key]), store_);
}

std::unique_ptr<Communicator> NcclCommunicator::split(const std::vector<int>& ranks) {
  const int n = size();
  bool valid = !ranks.empty();
  for (size_t i = 0; i < ranks.size(); ++i) {
    valid = valid && ranks[i] >= 0 && ranks[i] < n && (i == 0 || ranks[i - 1] < ranks[i]);
  }
  LOOM_CHECK_INPUT(valid, "nccl split: ranks [", joined(ranks), "] must be distinct, ascending ranks of [0, ", n, ")");
  const auto self = std::find(ranks.begin(), ranks.end(), rank());
  LOOM_CHECK_INPUT(self != ranks.end(), "nccl split: ranks [", joined(ranks), "] do not include the calling rank ",
                   rank(), "; only members call split()");
  // Members only: a fresh communicator whose id travels through a store prefix every member derives alike.
  auto store = childStore("split", joined(ranks));
  const int group_rank = static_cast<int>(self - ranks.begin());
  const ncclUniqueId id = shareUniqueId(*store, group_rank, options().timeout);
  auto comm = NcclComm::create(id, group_rank, static_cast<int>(ranks.size()), device(), options().timeout);
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(comm), std::move(store), options()));
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::splitByColor(int color, int key) {
  const int nccl_color = color < 0 ? NCCL_SPLIT_NOCOLOR : color;
  auto store = childStore("color", std::to_string(color));  // counted on every rank: all of them call
  auto child = comm_->derive(
      [&](ncclComm_t parent, ncclComm_t* out) { return ncclCommSplit(parent, nccl_color, key, out, nullptr); },
      "ncclCommSplit", /*poll_parent=*/true);
  if (!child) return nullptr;
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(child), std::move(store), options()));
}

std::unique_ptr<NcclCommunicator> NcclCommunicator::shrink(const std::vector<int>& excluded_ranks, bool abort_pending) {
  std::vector<int> excluded(excluded_ranks.begin(), excluded_ranks.end());
  std::sort(excluded.begin(), excluded.end());
  const bool distinct = std::adjacent_find(excluded.begin(), excluded.end()) == excluded.end();
  const bool in_range = excluded.empty() || (excluded.front() >= 0 && excluded.back() < size());
  LOOM_CHECK_INPUT(distinct && in_range, "nccl shrink: excluded ranks [", joined(excluded_ranks),
                   "] must be distinct ranks of [0, ", size(), ")");
  LOOM_CHECK_INPUT(!std::binary_search(excluded.begin(), excluded.end(), rank()), "nccl shrink: rank ", rank(),
                   " excludes itself; only the ranks that stay call shrink()");
  requireNcclFunction(ncclCommShrink != nullptr, "ncclCommShrink", "2.27", "nccl shrink");
  auto store = childStore("shrink", joined(excluded));
  const int flags = abort_pending ? NCCL_SHRINK_ABORT : NCCL_SHRINK_DEFAULT;
  auto child = comm_->derive(
      [&](ncclComm_t parent, ncclComm_t* out) {
        return ncclCommShrink(parent, excluded.data(), static_cast<int>(excluded.size()), out, nullptr, flags);
      },
      "ncclCommShrink", /*poll_parent=*/!abort_pending);  // an aborted parent reports its abort, not readiness
  if (abort_pending) comm_->markAborted();
  return std::unique_ptr<NcclCommunicator>(new NcclCommunicator(std::move(child), std::move(store), options()));
}

void NcclCommunicator::checkTensor(const at::Tensor& t, const char* op) const {
  LOOM_CHECK_INPUT(t.device().is_cuda() && t.device().index() == device(), "nccl ", op, ": the tensor is on ",
                   t.device(), " but this communicator runs on cuda:", device());
  LOOM_CHECK_INPUT(t.is_contiguous(), "nccl ", op, ": the tensor must be contiguous (NCCL reads flat buffers); ",
                   "pass t.contiguous() and copy the result back");
}

std::unique_ptr<BackendWork> NcclCommunicator::doAllReduce(at::Tensor& tensor, ReduceOp op) {
  checkTensor(tensor, "allReduce");
  const ncclDataType_t type = reducibleTypeOf(tensor, "allReduce");
  const ncclRedOp_t nccl_op = ncclRedOpOf(op);
  void* data = dataOf(tensor);
  const size_t count = tensor.numel();
  return comm_->launch(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclAllReduce(data, data, count, type, nccl_op, comm, stream);
      },
      {tensor});
}

std::unique_ptr<BackendWork> NcclCommunicator::doBroadcast(at::Tensor& tensor, int root) {
  checkTensor(tensor, "broadcast");
  const ncclDataType_t type = ncclDataTypeOf(tensor.scalar_type());
  void* data = dataOf(tensor);
  const size_t count = tensor.numel();
  return comm_->launch(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclBroadcast(data, data, count, type, root, comm, stream);
      },
      {tensor});
}

std::unique_ptr<BackendWork> NcclCommunicator::doAllGather(const at::Tensor& input, at::Tensor& output) {
  checkTensor(input, "allGather");
  checkTensor(output, "allGather");
  const ncclDataType_t type = ncclDataTypeOf(input.scalar_type());
  const void* send = dataOf(input);  // NCCL handles input == output + rank * count in place
  void* receive = dataOf(output);
  const size_t count = input.numel();
  return comm_->launch(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclAllGather(send, receive, count, type, comm, stream);
      },
      {input, output});
}

std::unique_ptr<BackendWork> NcclCommunicator::doReduceScatter(const at::Tensor& input, at::Tensor& output,
                                                               ReduceOp op) {
  checkTensor(input, "reduceScatter");
  checkTensor(output, "reduceScatter");
  const ncclDataType_t type = reducibleTypeOf(input, "reduceScatter");
  const ncclRedOp_t nccl_op = ncclRedOpOf(op);
  const void* send = dataOf(input);  // NCCL handles output == input + rank * count in place
  void* receive = dataOf(output);
  const size_t count = output.numel();
  return comm_->launch(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclReduceScatter(send, receive, count, type, nccl_op, comm, stream);
      },
      {input, output});
}

std::unique_ptr<BackendWork> NcclCommunicator::doSend(const at::Tensor& tensor, int dst, int /*tag*/) {
  checkTensor(tensor, "send");
  const ncclDataType_t type = ncclDataTypeOf(tensor.scalar_type());
  const void* data = dataOf(tensor);
  const size_t count = tensor.numel();
  return comm_->defer(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclSend(data, count, type, dst, comm, stream);
      },
      {tensor});
}

std::unique_ptr<BackendWork> NcclCommunicator::doRecv(at::Tensor& tensor, int src, int /*tag*/) {
  checkTensor(tensor, "recv");
  const ncclDataType_t type = ncclDataTypeOf(tensor.scalar_type());
  void* data = dataOf(tensor);
  const size_t count = tensor.numel();
  return comm_->defer(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return count == 0 ? ncclSuccess : ncclRecv(data, count, type, src, comm, stream);
      },
      {tensor});
}

std::unique_ptr<BackendWork> NcclCommunicator::doBarrier() {
  void* flag = comm_->barrierBuffer();
  return comm_->launch(
      [=](ncclComm_t comm, cudaStream_t stream) {
        return ncclAllReduce(flag, flag, 1, ncclInt32, ncclSum, comm, stream);
      },
      {});
}

}  // namespace loom::dist

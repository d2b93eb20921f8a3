#include "runtime/dist/communicator.h"

#include "runtime/core/error.h"
#include "runtime/dist/progress_board.h"

#include <sstream>

namespace loom::dist {
namespace {

// Backends get a new TensorImpl over the caller's memory, never the caller's own
// (detach(): the same storage, no autograd). Backend threads (Gloo's run loops,
// the MPI executor, point-to-point waiters) drop their references once a work
// completes and can be the last holder; releasing a tensor that Python owns
// needs the GIL on that thread, which deadlocks against a Python thread that
// holds the GIL while it destroys the communicator and so joins those threads
// (seen with libtorch 2.x).
at::Tensor handOff(const at::Tensor& caller) {
  return caller.detach();
}

int64_t bytesOf(const at::Tensor& t) { return t.numel() * static_cast<int64_t>(t.element_size()); }

std::string describePayload(const at::Tensor& t) {
  std::ostringstream out;
  out << t.numel() << " x " << t.scalar_type();
  return out.str();
}

std::string describe(const OpRecord& r) {
  std::ostringstream out;
  out << r.backend << " " << r.name;
  if (r.seq > 0) out << " #" << r.seq;
  out << " (";
  if (r.step >= 0) out << "step " << r.step << ", ";
  out << r.payload << ") on rank " << r.rank << " of " << r.size;
  return out.str();
}

// "; ranks 3, 5 did not arrive (last seen at #16, #12)"
std::string describeLaggards(const std::vector<std::pair<int, uint64_t>>& behind) {
  if (behind.empty()) return "; every rank reached it, so the failure is in transport (check the network)";
  std::ostringstream ranks;
  std::ostringstream seen;
  for (size_t i = 0; i < behind.size(); ++i) {
    ranks << (i ? ", " : "") << behind[i].first;
    seen << (i ? ", #" : "#") << behind[i].second;
  }
  return "; ranks " + ranks.str() + " did not arrive (last seen at " + seen.str() + ")";
}

}  // namespace

const char* reduceOpName(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum: return "sum";
    case ReduceOp::kAvg: return "avg";
    case ReduceOp::kMax: return "max";
    case ReduceOp::kMin: return "min";
  }
  return "?";
}

Work::Work(std::unique_ptr<BackendWork> work, OpRecord record, std::shared_ptr<ProgressBoard> board)
    : work_(std::move(work)), record_(std::move(record)), board_(std::move(board)) {}

bool Work::isCompleted() { return work_->isCompleted(); }

void Work::wait() {
  std::string failure;
  try {
    if (work_->waitFor(record_.timeout)) return;
    failure = "timed out after " + std::to_string(record_.timeout.count()) + " ms";
  } catch (const std::exception& e) {
    failure = std::string("failed: ") + errorMessage(e);
  }
  std::string message = describe(record_) + " " + failure;
  if (board_ && record_.seq > 0) message += describeLaggards(board_->laggards(record_.seq));
  LOOM_THROW(PeerLostError, message);
}

Communicator::Communicator(const CommunicatorOptions& opts) : opts_(opts) {
  LOOM_CHECK_INPUT(opts_.timeout.count() > 0, "the communication timeout must be positive, got ",
                   opts_.timeout.count(), " ms");
}

void Communicator::count(int64_t sent, int64_t received) {
  bytes_sent_ += sent;
  bytes_received_ += received;
}

OpRecord Communicator::begin(const char* name, const at::Tensor* payload, const OpOptions& opts) {
  OpRecord r;
  r.backend = backendName();
  r.name = name;
  r.step = step_.load();
  r.payload = payload != nullptr ? describePayload(*payload) : "no data";
  r.rank = rank();
  r.size = size();
  r.timeout = opts.timeout.count() > 0 ? opts.timeout : opts_.timeout;
  return r;
}

std::unique_ptr<Work> Communicator::finish(std::unique_ptr<BackendWork> work, OpRecord record) {
  return std::make_unique<Work>(std::move(work), std::move(record), board_);
}

// Collectives are numbered (every rank issues them in the same order, so equal
// numbers mean the same operation) and published on the progress board.
#define LOOM_COLLECTIVE_RECORD(name, payload, opts) \
  OpRecord record = begin(name, payload, opts);     \
  record.seq = ++seq_;                              \
  if (board_) board_->started(record.seq)

std::unique_ptr<Work> Communicator::allReduce(at::Tensor& tensor, ReduceOp op, const OpOptions& opts) {
  LOOM_COLLECTIVE_RECORD("allReduce", &tensor, opts);
  at::Tensor handed = handOff(tensor);
  auto work = doAllReduce(handed, op);
  const int64_t n = size();
  const int64_t volume = 2 * (n - 1) * bytesOf(tensor) / n;
  count(volume, volume);
  return finish(std::move(work), std::move(record));
}

std::unique_ptr<Work> Communicator::broadcast(at::Tensor& tensor, int root, const OpOptions& opts) {
  LOOM_CHECK_INPUT(root >= 0 && root < size(), "broadcast root ", root, " is outside a world of size ", size());
  LOOM_COLLECTIVE_RECORD("broadcast", &tensor, opts);
  at::Tensor handed = handOff(tensor);
  auto work = doBroadcast(handed, root);
  if (size() > 1) count(rank() == root ? bytesOf(tensor) : 0, rank() == root ? 0 : bytesOf(tensor));
  return finish(std::move(work), std::move(record));
}

std::unique_ptr<Work> Communicator::allGather(const at::Tensor& input, at::Tensor& output, const OpOptions& opts) {
  LOOM_CHECK_INPUT(output.numel() == size() * input.numel() && output.scalar_type() == input.scalar_type() &&
                       output.is_contiguous(),
                   "allGather: output must be contiguous ", input.scalar_type(), " with ", size(), " x ",
                   input.numel(), " elements, got ", output.numel(), " x ", output.scalar_type());
  LOOM_COLLECTIVE_RECORD("allGather", &input, opts);
  at::Tensor handed_output = handOff(output);
  auto work = doAllGather(handOff(input), handed_output);
  const int64_t volume = (size() - 1) * bytesOf(input);
  count(volume, volume);
  return finish(std::move(work), std::move(record));
}

std::unique_ptr<Work> Communicator::reduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op,
                                                  const OpOptions& opts) {
  LOOM_CHECK_INPUT(input.numel() == size() * output.numel() && output.scalar_type() == input.scalar_type() &&
                       input.is_contiguous(),
                   "reduceScatter: input must be contiguous ", output.scalar_type(), " with ", size(), " x ",
                   output.numel(), " elements, got ", input.numel(), " x ", input.scalar_type());
  LOOM_COLLECTIVE_RECORD("reduceScatter", &input, opts);
  at::Tensor handed_output = handOff(output);
  auto work = doReduceScatter(handOff(input), handed_output, op);
  const int64_t volume = (size() - 1) * bytesOf(output);
  count(volume, volume);
  return finish(std::move(work), std::move(record));
}

void Communicator::barrier(const OpOptions& opts) {
  LOOM_COLLECTIVE_RECORD("barrier", nullptr, opts);
  finish(doBarrier(), std::move(record))->wait();
}

#undef LOOM_COLLECTIVE_RECORD

std::unique_ptr<Work> Communicator::send(const at::Tensor& tensor, int dst, int tag, const OpOptions& opts) {
  LOOM_CHECK_INPUT(dst >= 0 && dst < size() && dst != rank(), "send: destination ", dst, " must be another rank of ",
                   size());
  OpRecord record = begin("send", &tensor, opts);
  record.name += " to rank " + std::to_string(dst) + " tag " + std::to_string(tag);
  auto work = doSend(handOff(tensor), dst, tag);
  count(bytesOf(tensor), 0);
  return finish(std::move(work), std::move(record));
}

std::unique_ptr<Work> Communicator::recv(at::Tensor& tensor, int src, int tag, const OpOptions& opts) {
  LOOM_CHECK_INPUT(src >= 0 && src < size() && src != rank(), "recv: source ", src, " must be another rank of ",
                   size());
  OpRecord record = begin("recv", &tensor, opts);
  record.name += " from rank " + std::to_string(src) + " tag " + std::to_string(tag);
  at::Tensor handed = handOff(tensor);
  auto work = doRecv(handed, src, tag);
  count(0, bytesOf(tensor));
  return finish(std::move(work), std::move(record));
}

}  // namespace loom::dist

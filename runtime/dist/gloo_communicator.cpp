#include "runtime/dist/gloo_communicator.h"

#include "runtime/core/error.h"
#include "runtime/dist/gloo_device.h"
#include "runtime/dist/gloo_group.h"
#include "runtime/dist/gloo_work.h"
#include "runtime/dist/progress_board.h"
#include "runtime/dist/store_barrier.h"

#include <ATen/ATen.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>

#include <csignal>
#include <map>
#include <mutex>
#include <sstream>

namespace loom::dist {
namespace {

// Gloo writes to its peers' sockets with writev(); when a peer is gone, the
// write must fail with EPIPE and surface as a failed operation, not raise
// SIGPIPE and kill this process.
// Ignored only while still at the default action, so a program's own choice stands.
void ignoreSigpipeUnlessHandled() {
  struct sigaction current {};
  if (::sigaction(SIGPIPE, nullptr, &current) == 0 && current.sa_handler == SIG_DFL) {
    struct sigaction ignore {};
    ignore.sa_handler = SIG_IGN;
    ::sigemptyset(&ignore.sa_mask);
    ::sigaction(SIGPIPE, &ignore, nullptr);
  }
}

using Devices = std::vector<std::shared_ptr<gloo::transport::Device>>;

c10d::ReduceOp toGloo(ReduceOp op) {
  switch (op) {
    case ReduceOp::kSum:
    case ReduceOp::kAvg:
      return c10d::ReduceOp::SUM;  // 1.13's Gloo has no AVG: divided on completion
    case ReduceOp::kMax:
      return c10d::ReduceOp::MAX;
    case ReduceOp::kMin:
      return c10d::ReduceOp::MIN;
  }
  return c10d::ReduceOp::SUM;
}

void checkCpu(const at::Tensor& t, const char* op) {
  LOOM_CHECK_INPUT(t.device().is_cpu(), "gloo ", op, ": tensors must be on the CPU, got one on ", t.device(),
                   "; use the NCCL backend for GPU tensors");
}

void checkReducible(const at::Tensor& t, const char* op) {
  checkCpu(t, op);
  switch (t.scalar_type()) {
    case at::kFloat:
    case at::kDouble:
    case at::kHalf:
    case at::kBFloat16:
    case at::kChar:
    case at::kByte:
    case at::kInt:
    case at::kLong:
      return;
    default:
      LOOM_THROW(InputError, "gloo ", op, " cannot reduce ", t.scalar_type(),
                 " tensors; reductions take Float, Double, Half, BFloat16, Char, Byte, Int and Long");
  }
}

// Gloo's broadcast and allgather dispatch on dtype, and which dtypes a build
// takes varies (libtorch 2.x with a Gloo built without torch dtypes, Debian's,
// takes neither float16 nor bfloat16); every build takes bytes, and a move only
// copies them. Flat, so that a 0-dim tensor can change its element size too.
at::Tensor asBytes(const at::Tensor& contiguous) {
  return contiguous.view({-1}).view(at::kByte);
}

void divideBy(at::Tensor& t, int n) {
  if (at::isFloatingType(t.scalar_type())) {
    t.div_(n);
  } else {
    t.div_(n, "trunc");
  }
}

std::chrono::milliseconds transportTimeout(const GlooOptions& opts) {
  return opts.transport_timeout.count() > 0 ? opts.transport_timeout : opts.comm.timeout * 5 / 4;
}

std::string joinRanks(const std::vector<int>& ranks) {
  std::ostringstream out;
  for (size_t i = 0; i < ranks.size(); ++i) out << (i ? "," : "") << ranks[i];
  return out.str();
}

class GlooCommunicator final : public Communicator {
 public:
  GlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size, const GlooOptions& opts, Devices devices)
      : Communicator(opts.comm),
        store_(std::move(store)),
        rank_(rank),
        size_(size),
        opts_(opts),
        devices_(std::move(devices)) {
    LOOM_CHECK_INPUT(size >= 1 && rank >= 0 && rank < size, "gloo: rank ", rank, " is outside a world of size ", size);
    ignoreSigpipeUnlessHandled();
    // Gloo's own connect would time out without saying who is missing.
    const auto connect_timeout = opts.connect_timeout.count() > 0 ? opts.connect_timeout : opts.comm.timeout;
    storeBarrier(*store_, "ready", rank, size, connect_timeout, "gloo communicator of " + std::to_string(size));
    auto options = GlooGroup::Options::create(transportTimeout(opts));
    options->devices = devices_;
    try {
      group_ =
          c10::make_intrusive<GlooGroup>(c10::make_intrusive<c10d::PrefixStore>("gloo", store_), rank, size, options);
    } catch (const std::exception& e) {
      LOOM_THROW(PeerLostError, "gloo: rank ", rank, " of ", size, " could not connect to its peers: ", errorMessage(e),
                 ". If the ranks run on several hosts, name the network interface they share "
                 "(LOOM_GLOO_IFNAME or GLOO_SOCKET_IFNAME)");
    }
    // Gloo's connecting side is done once the kernel completes the handshake,
    // before the listening peer has accepted; a rank that returned then and
    // closed its sockets (a short body, a quick failure) would fail that
    // peer's connect with "Connection closed by peer". So nobody returns
    // before every rank is connected.
    storeBarrier(*store_, "connected", rank, size, connect_timeout,
                 "gloo communicator of " + std::to_string(size) + " (after connecting)");
    setProgressBoard(
        std::make_shared<ProgressBoard>(c10::make_intrusive<c10d::PrefixStore>("board", store_), rank, size));
  }

  // Works that outlive the communicator fail instead of waiting. Then members
  // go in reverse order: p2p_ releases and joins its waiter threads, and group_
  // drains its queue and joins Gloo's worker threads (see the header on how
  // long a collective stuck on a silent peer can hold that up).
  ~GlooCommunicator() override { signals_->abort(); }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backendName() const override { return "gloo"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    LOOM_CHECK_INPUT(!ranks.empty(), "split: the rank list is empty");
    int group_rank = -1;
    for (size_t i = 0; i < ranks.size(); ++i) {
      LOOM_CHECK_INPUT(ranks[i] >= 0 && ranks[i] < size_ && (i == 0 || ranks[i] > ranks[i - 1]), "split: ranks [",
                       joinRanks(ranks), "] must be ascending, distinct and within 0..", size_ - 1);
      if (ranks[i] == rank_) group_rank = static_cast<int>(i);
    }
    LOOM_CHECK_INPUT(group_rank >= 0, "split: rank ", rank_, " called split([", joinRanks(ranks),
                     "]) but is not in it; only members call split()");
    if (signals_->aborted()) LOOM_THROW(PeerLostError, "gloo split: the communicator was aborted");
    int generation = 0;
    {
      std::lock_guard<std::mutex> lock(issue_mutex_);
      generation = splits_[ranks]++;
    }
    // Members agree on the key: the same list, split for the same time.
    auto sub_store =
        c10::make_intrusive<c10d::PrefixStore>("split/" + joinRanks(ranks) + "/" + std::to_string(generation), store_);
    return std::make_unique<GlooCommunicator>(sub_store, group_rank, static_cast<int>(ranks.size()), opts_, devices_);
  }

  void abort() override {
    signals_->abort();
    p2p_.abortAll();
  }

 protected:
  std::unique_ptr<BackendWork> doAllReduce(at::Tensor& tensor, ReduceOp op) override {
    checkReducible(tensor, "allReduce");
    if (auto refused = refuse(tensor)) return refused;
    // Reduce 16-bit floats as a float32 copy: 1.13's Gloo reduces no bfloat16, 2.x's
    // without torch dtypes (Debian's) no float16 either; and float32 sums lose less.
    const bool half = tensor.scalar_type() == at::kBFloat16 || tensor.scalar_type() == at::kHalf;
    at::Tensor wire = half ? tensor.to(at::kFloat) : tensor.contiguous();
    const bool staged = !wire.is_same(tensor);
    c10d::AllreduceOptions gloo_opts;
    gloo_opts.reduceOp = toGloo(op);
    std::vector<at::Tensor> tensors{wire};
    std::function<void()> finalize;
    if (op == ReduceOp::kAvg || staged) {
      finalize = [tensor, wire, staged, op, n = size_]() mutable {
        if (op == ReduceOp::kAvg) divideBy(wire, n);
        if (staged) tensor.copy_(wire);
      };
    }
    return collective([&] { return group_->allreduce(tensors, gloo_opts); }, std::move(finalize));
  }

  std::unique_ptr<BackendWork> doBroadcast(at::Tensor& tensor, int root) override {
    checkCpu(tensor, "broadcast");
    if (auto refused = refuse(tensor)) return refused;
    at::Tensor wire = tensor.contiguous();
    std::vector<at::Tensor> tensors{asBytes(wire)};
    c10d::BroadcastOptions gloo_opts;
    gloo_opts.rootRank = root;
    return collective([&] { return group_->broadcast(tensors, gloo_opts); }, copyBack(tensor, wire));
  }

  std::unique_ptr<BackendWork> doAllGather(const at::Tensor& input, at::Tensor& output) override {
    checkCpu(input, "allGather");
    checkCpu(output, "allGather");
    if (auto refused = refuse(input)) return refused;
    std::vector<at::Tensor> inputs{asBytes(input.contiguous())};
    const int64_t n = inputs[0].numel();
    const at::Tensor flat_output = asBytes(output);
    std::vector<std::vector<at::Tensor>> outputs(1);
    for (int r = 0; r < size_; ++r) outputs[0].push_back(flat_output.narrow(0, r * n, n));
    return collective([&] { return group_->allgather(outputs, inputs); });
  }

  std::unique_ptr<BackendWork> doReduceScatter(const at::Tensor& input, at::Tensor& output, ReduceOp op) override {
    checkReducible(input, "reduceScatter");
    checkCpu(output, "reduceScatter");
    if (auto refused = refuse(output)) return refused;
    return collective([&] { return group_->reduceScatterRing(input, output, op); });
  }

  std::unique_ptr<BackendWork> doSend(const at::Tensor& tensor, int dst, int tag) override {
    checkCpu(tensor, "send");
    LOOM_CHECK_INPUT(tag >= 0, "gloo send: tag ", tag, " must be >= 0");
    if (auto refused = refuse(tensor)) return refused;
    std::vector<at::Tensor> tensors{tensor.contiguous()};
    return pointToPoint([&] { return group_->send(tensors, dst, tag); });
  }

  std::unique_ptr<BackendWork> doRecv(at::Tensor& tensor, int src, int tag) override {
    checkCpu(tensor, "recv");
    LOOM_CHECK_INPUT(tag >= 0, "gloo recv: tag ", tag, " must be >= 0");
    if (auto refused = refuse(tensor)) return refused;
    at::Tensor wire = tensor.is_contiguous() ? tensor : at::empty_like(tensor, at::MemoryFormat::Contiguous);
    std::vector<at::Tensor> tensors{wire};
    return pointToPoint([&] { return group_->recv(tensors, src, tag); }, copyBack(tensor, wire));
  }

  std::unique_ptr<BackendWork> doBarrier() override {
    if (signals_->aborted()) return GlooWork::settled(signals_, abortedError());
    return collective([&] { return group_->barrier(); });
  }

 private:
  /// A settled work instead of a Gloo operation: failed after abort(), done at
  /// once for an empty tensor (every rank sees the same size, so all skip).
  std::unique_ptr<BackendWork> refuse(const at::Tensor& payload) {
    if (signals_->aborted()) return GlooWork::settled(signals_, abortedError());
    if (payload.numel() == 0) return GlooWork::settled(signals_);
    return nullptr;
  }

  /// Issues a c10d operation and hands it to `track`. c10d's issue path (its tag
  /// counter) is not thread-safe. Gloo posts sends and receives in this thread,
  /// where a connection already broken by a lost peer throws at once: that
  /// becomes a failed work, so wait() reports it as a peer loss like any other.
  template <typename Issue, typename Track>
  std::unique_ptr<BackendWork> issue(const Issue& call, const Track& track) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      std::lock_guard<std::mutex> lock(issue_mutex_);
      work = call();
    } catch (const std::exception&) {
      return GlooWork::settled(signals_, std::current_exception());
    }
    return track(std::move(work));
  }

  template <typename Issue>
  std::unique_ptr<BackendWork> collective(const Issue& call, std::function<void()> finalize = nullptr) {
    return issue(call, [&](c10::intrusive_ptr<c10d::Work> work) {
      return GlooWork::ofCollective(signals_, std::move(work), std::move(finalize));
    });
  }

  template <typename Issue>
  std::unique_ptr<BackendWork> pointToPoint(const Issue& call, std::function<void()> finalize = nullptr) {
    return issue(call, [&](c10::intrusive_ptr<c10d::Work> work) {
      return p2p_.watch(signals_, std::move(work), std::move(finalize));
    });
  }

  static std::function<void()> copyBack(const at::Tensor& user, const at::Tensor& wire) {
    if (wire.is_same(user)) return nullptr;
    return [user, wire]() mutable { user.copy_(wire); };
  }

  c10::intrusive_ptr<c10d::Store> store_;
  int rank_;
  int size_;
  GlooOptions opts_;
  Devices devices_;
  std::shared_ptr<GlooSignals> signals_ = std::make_shared<GlooSignals>();
  std::mutex issue_mutex_;
  std::map<std::vector<int>, int> splits_;  // guarded by issue_mutex_
  c10::intrusive_ptr<GlooGroup> group_;
  P2pWaiters p2p_;
};

}  // namespace

std::unique_ptr<Communicator> makeGlooCommunicator(c10::intrusive_ptr<c10d::Store> store, int rank, int size,
                                                   const GlooOptions& opts) {
  LOOM_CHECK_INPUT(store, "makeGlooCommunicator: the store is null");
  return std::make_unique<GlooCommunicator>(std::move(store), rank, size, opts, makeGlooDevices(opts));
}

}  // namespace loom::dist

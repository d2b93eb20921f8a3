// loom's distributed API as TorchScript classes (torch.classes.loom.* in Python):
//
//   comm = torch.classes.loom.Communicator("gloo", 600.0)   # joins the job from the environment
//   comm.all_reduce(t, "sum"); comm.broadcast(t, 0); g = comm.all_gather(t); comm.barrier()
//   dp = torch.classes.loom.DataParallel(comm, list(model.parameters()), 1.0, True)
//   dp.zero_grad(); dp.arm(); loss.backward(); dp.finish(); optimizer.step()
//   cp = comm.split([0, 1])                  # a group of ranks (every listed rank calls it)
//   out = torch.ops.loom.ring_attention(q, k, v, positions, documents, cp, True, 0.0)
//   out, residual = torch.ops.loom.fused_allreduce_add_rms_norm(x, residual, w, eps, tp, "all_reduce")
//
// Compiled only into libloom_torch.so (loom/CMakeLists.txt). The identity comes
// from torchrun / loom-launch / mpirun variables like loom-train's (runtime/dist/world.h).
// Communicator is declared in communicator_class.h, for the other registration files
// that take one: fused_norm_op.cpp (fused_allreduce_add_rms_norm, token_shard) and
// optim/torch/register.cpp (OuterOptimizer).
#include "parallel/gradient_reducer.h"
#include "parallel/ring_attention.h"
#include "parallel/torch/communicator_class.h"
#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <torch/custom_class.h>
#include <torch/library.h>

namespace loom::parallel {
namespace {

dist::ReduceOp parseOp(const std::string& op) {
  if (op == "sum") return dist::ReduceOp::kSum;
  if (op == "avg") return dist::ReduceOp::kAvg;
  if (op == "max") return dist::ReduceOp::kMax;
  if (op == "min") return dist::ReduceOp::kMin;
  LOOM_THROW(InputError, "all_reduce: op \"", op, "\" must be one of sum, avg, max, min");
}

CommBackend parseBackend(const std::string& backend) {
  if (backend == "gloo") return CommBackend::kGloo;
  if (backend == "mpi") return CommBackend::kMpi;
  if (backend == "nccl") return CommBackend::kNccl;
  LOOM_THROW(InputError, "Communicator: backend \"", backend, "\" must be one of gloo, mpi, nccl");
}

}  // namespace

CommunicatorClass::CommunicatorClass(const std::string& backend, double timeout_s) {
  ParallelOptions opts;
  opts.backend = parseBackend(backend);
  opts.timeout_s = timeout_s;
  LOOM_CHECK_INPUT(timeout_s > 0, "Communicator: timeout_s (", timeout_s, ") must be > 0");
  world_ = dist::joinWorld(dist::identityFromEnvironment(), opts);
}

CommunicatorClass::CommunicatorClass(c10::intrusive_ptr<CommunicatorClass> parent,
                                     std::unique_ptr<dist::Communicator> comm)
    : parent_(std::move(parent)) {
  world_.identity = parent_->world_.identity;
  world_.store = parent_->world_.store;
  world_.comm = std::move(comm);
}

c10::intrusive_ptr<CommunicatorClass> CommunicatorClass::split(const std::vector<int64_t>& ranks) {
  const std::vector<int> members(ranks.begin(), ranks.end());
  return c10::make_intrusive<CommunicatorClass>(c10::intrusive_ptr<CommunicatorClass>::reclaim_copy(this),
                                                comm().split(members));
}

void CommunicatorClass::allReduce(at::Tensor tensor, const std::string& op) {
  comm().allReduce(tensor, parseOp(op))->wait();
}

void CommunicatorClass::broadcast(at::Tensor tensor, int64_t root) {
  comm().broadcast(tensor, static_cast<int>(root))->wait();
}

at::Tensor CommunicatorClass::allGather(const at::Tensor& tensor) {
  const at::Tensor input = tensor.contiguous();
  at::Tensor output = at::empty({size() * input.numel()}, input.options());
  comm().allGather(input, output)->wait();
  std::vector<int64_t> shape{size()};
  for (int64_t d : input.sizes()) shape.push_back(d);
  return output.view(shape);
}

namespace {

// Gradients of `params` become views into the reducer's buckets: zero them with
// zero_grad() (never set them to None), call arm() before the last backward of
// a step, finish() after it. With `average`, gradients are divided by the world
// size afterwards (DistributedDataParallel's convention for per-rank mean losses);
// without it they are sums over ranks (loom-train's convention).
class DataParallelClass : public torch::CustomClassHolder {
 public:
  DataParallelClass(c10::intrusive_ptr<CommunicatorClass> comm, std::vector<at::Tensor> params, double bucket_mb,
                    bool average)
      : comm_(std::move(comm)), average_(average) {
    LOOM_CHECK_INPUT(bucket_mb > 0, "DataParallel: bucket_mb (", bucket_mb, ") must be > 0");
    reducer_ = std::make_unique<GradientReducer>(
        std::move(params), comm_->comm(),
        ReducerOptions{std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20))), false});
  }

  void zeroGrad() { reducer_->zeroGrad(); }
  void arm() { reducer_->armForLastBackward(); }
  /// Waits for the reductions; returns [comm_ms, exposed_ms, buckets].
  std::vector<double> finish() {
    const ReduceStats stats = reducer_->finish();
    if (average_ && comm_->size() > 1) {
      for (const at::Tensor& p : reducer_->params()) p.grad().div_(static_cast<double>(comm_->size()));
    }
    return {stats.comm_ms, stats.exposed_ms, static_cast<double>(stats.buckets)};
  }
  int64_t buckets() const { return static_cast<int64_t>(reducer_->plan().buckets.size()); }

 private:
  c10::intrusive_ptr<CommunicatorClass> comm_;  // keeps the communicator alive as long as the reducer
  bool average_;
  std::unique_ptr<GradientReducer> reducer_;
};

// torch.ops.loom.ring_attention: ring attention (parallel/ring_attention.h)
// over `group`; q [B, L, H, hd], k and v [B, L, KV, hd], int64 positions and
// documents [L] of this rank's tokens. Autograd runs the ring backward.
at::Tensor ringAttentionOp(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& positions,
                           const at::Tensor& documents, const c10::intrusive_ptr<CommunicatorClass>& group,
                           bool causal, double scale) {
  return ringAttention(q, k, v, TokenLayout{positions, documents}, group->comm(), RingAttentionOptions{causal, scale});
}

}  // namespace
}  // namespace loom::parallel

TORCH_LIBRARY_FRAGMENT(loom, m) {
  using loom::parallel::CommunicatorClass;
  using loom::parallel::DataParallelClass;
  m.class_<CommunicatorClass>("Communicator")
      .def(torch::init<std::string, double>())
      .def("rank", &CommunicatorClass::rank)
      .def("size", &CommunicatorClass::size)
      .def("backend", &CommunicatorClass::backend)
      .def("identity", &CommunicatorClass::identity)
      .def("all_reduce", &CommunicatorClass::allReduce)
      .def("broadcast", &CommunicatorClass::broadcast)
      .def("all_gather", &CommunicatorClass::allGather)
      .def("barrier", &CommunicatorClass::barrier)
      .def("bytes_sent", &CommunicatorClass::bytesSent)
      .def("bytes_received", &CommunicatorClass::bytesReceived)
      .def("split", &CommunicatorClass::split);
  m.class_<DataParallelClass>("DataParallel")
      .def(torch::init<c10::intrusive_ptr<CommunicatorClass>, std::vector<at::Tensor>, double, bool>())
      .def("zero_grad", &DataParallelClass::zeroGrad)
      .def("arm", &DataParallelClass::arm)
      .def("finish", &DataParallelClass::finish)
      .def("buckets", &DataParallelClass::buckets);
  m.def(
      "ring_attention(Tensor q, Tensor k, Tensor v, Tensor positions, Tensor documents, "
      "__torch__.torch.classes.loom.Communicator group, bool causal=True, float scale=0.) -> Tensor",
      &loom::parallel::ringAttentionOp);
}

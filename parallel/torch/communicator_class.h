// torch.classes.loom.Communicator: this process's place in the job, joined from
// the environment (runtime/dist/world.h). Registered by parallel/torch/register.cpp;
// declared here so that other registration files (fused_norm_op.cpp,
// optim/torch/register.cpp) can take it as an argument and reach the communicator
// underneath.
//
// Compiled only into libloom_torch.so (loom/CMakeLists.txt).
#pragma once

#include "runtime/dist/world.h"

#include <ATen/core/Tensor.h>
#include <torch/custom_class.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace loom::parallel {

class CommunicatorClass : public torch::CustomClassHolder {
 public:
  /// `backend`: "gloo", "mpi" or "nccl"; `timeout_s` (> 0) bounds every collective.
  CommunicatorClass(const std::string& backend, double timeout_s);
  /// A group of `parent`'s ranks (split()); keeps the parent alive.
  CommunicatorClass(c10::intrusive_ptr<CommunicatorClass> parent, std::unique_ptr<dist::Communicator> comm);

  /// A communicator over `ranks` (ascending ranks of this one, this rank's
  /// included), e.g. a context-parallel group; every listed rank calls it with
  /// the same list, the others do not.
  c10::intrusive_ptr<CommunicatorClass> split(const std::vector<int64_t>& ranks);

  /// The communicator every method below uses. A class that needs one of its
  /// own (one nothing else issues operations on) split()s it.
  dist::Communicator& comm() { return *world_.comm; }

  int64_t rank() const { return world_.comm->rank(); }
  int64_t size() const { return world_.comm->size(); }
  std::string backend() const { return world_.comm->backendName(); }
  std::string identity() const { return world_.identity.describe(); }

  void allReduce(at::Tensor tensor, const std::string& op);
  void broadcast(at::Tensor tensor, int64_t root);
  at::Tensor allGather(const at::Tensor& tensor);
  void barrier() { comm().barrier(); }
  int64_t bytesSent() const { return world_.comm->bytesSent(); }
  int64_t bytesReceived() const { return world_.comm->bytesReceived(); }

 private:
  c10::intrusive_ptr<CommunicatorClass> parent_;  ///< a group's world (its store and connections)
  dist::World world_;
};

}  // namespace loom::parallel

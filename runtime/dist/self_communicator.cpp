#include "runtime/core/error.h"
#include "runtime/dist/communicator.h"

namespace loom::dist {
namespace {

class CompletedWork final : public BackendWork {
 public:
  bool waitFor(std::chrono::milliseconds /*timeout*/) override { return true; }
  bool isCompleted() override { return true; }
};

// With one rank every reduction is the identity (the average of one value is
// itself), a gather or scatter is a copy, and a broadcast already holds root's data.
class SelfCommunicator final : public Communicator {
 public:
  using Communicator::Communicator;

  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::string backendName() const override { return "self"; }

  std::unique_ptr<Communicator> split(const std::vector<int>& ranks) override {
    LOOM_CHECK_INPUT(ranks == std::vector<int>{0}, "split: a world of one rank only splits into {0}");
    return std::make_unique<SelfCommunicator>(options());
  }
  void abort() override {}

 protected:
  std::unique_ptr<BackendWork> doAllReduce(at::Tensor& /*tensor*/, ReduceOp /*op*/) override { return done(); }
  std::unique_ptr<BackendWork> doBroadcast(at::Tensor& /*tensor*/, int /*root*/) override { return done(); }
  std::unique_ptr<BackendWork> doAllGather(const at::Tensor& input, at::Tensor& output) override {
    output.view_as(input).copy_(input);
    return done();
  }
  std::unique_ptr<BackendWork> doReduceScatter(const at::Tensor& input, at::Tensor& output,
                                               ReduceOp /*op*/) override {
    output.copy_(input.view_as(output));
    return done();
  }
  std::unique_ptr<BackendWork> doSend(const at::Tensor& /*tensor*/, int /*dst*/, int /*tag*/) override {
    LOOM_THROW(c10::Error, "send in a world of one rank");  // unreachable: send() checks dst
  }
  std::unique_ptr<BackendWork> doRecv(at::Tensor& /*tensor*/, int /*src*/, int /*tag*/) override {
    LOOM_THROW(c10::Error, "recv in a world of one rank");
  }
  std::unique_ptr<BackendWork> doBarrier() override { return done(); }

 private:
  static std::unique_ptr<BackendWork> done() { return std::make_unique<CompletedWork>(); }
};

}  // namespace

std::unique_ptr<Communicator> makeSelfCommunicator(const CommunicatorOptions& opts) {
  return std::make_unique<SelfCommunicator>(opts);
}

}  // namespace loom::dist

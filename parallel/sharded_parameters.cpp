#include "parallel/sharded_parameters.h"

#include "runtime/core/error.h"

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace loom::parallel {
namespace {

const ParamSlot& slotOf(const BucketPlan& plan, int param) {
  const auto [b, s] = plan.where[static_cast<size_t>(param)];
  return plan.buckets[static_cast<size_t>(b)].slots[static_cast<size_t>(s)];
}

size_t bucketOf(const BucketPlan& plan, int param) {
  return static_cast<size_t>(plan.where[static_cast<size_t>(param)].first);
}

}  // namespace

ShardedParameters::ShardedParameters(const GradientReducer& reducer) : reducer_(reducer) {
  LOOM_CHECK(reducer_.sharded(), "ShardedParameters needs a sharded GradientReducer");
  const BucketPlan& plan = reducer_.plan();
  for (const Bucket& bucket : plan.buckets) master_.push_back(at::zeros({bucket.segment}));
  c10::NoGradGuard no_grad;
  for (size_t i = 0; i < reducer_.params().size(); ++i) {
    masterChunk(static_cast<int>(i)).copy_(slice(static_cast<int>(i), reducer_.params()[i]));
  }
}

at::Tensor ShardedParameters::masterChunk(int param) const {
  const ParamSlot& slot = slotOf(reducer_.plan(), param);
  return master_[bucketOf(reducer_.plan(), param)].narrow(0, slot.offset, slot.chunk);
}

at::Tensor ShardedParameters::gradChunk(int param) const {
  const ParamSlot& slot = slotOf(reducer_.plan(), param);
  return reducer_.shardGrad(bucketOf(reducer_.plan(), param)).narrow(0, slot.offset, slot.chunk);
}

at::Tensor ShardedParameters::slice(int param, const at::Tensor& full) const {
  const ParamSlot& slot = slotOf(reducer_.plan(), param);
  LOOM_CHECK(full.numel() == slot.numel, "ShardedParameters::slice: ", full.numel(), " elements, expected ",
             slot.numel);
  const int64_t rank = reducer_.comm().rank();
  const int64_t begin = std::min(rank * slot.chunk, slot.numel);
  const int64_t end = std::min(begin + slot.chunk, slot.numel);
  at::Tensor chunk = at::zeros({slot.chunk}, full.options());
  chunk.narrow(0, 0, end - begin).copy_(full.reshape({-1}).narrow(0, begin, end - begin));
  return chunk;
}

std::vector<at::Tensor> ShardedParameters::gatherSegments(const std::vector<at::Tensor>& segments) const {
  std::vector<at::Tensor> gathered;
  gathered.reserve(segments.size());  // the collectives hold on to the output tensors
  std::vector<std::unique_ptr<dist::Work>> works;
  for (size_t b = 0; b < segments.size(); ++b) {
    gathered.push_back(at::empty({reducer_.plan().buckets[b].elements()}));
    works.push_back(reducer_.comm().allGather(segments[b], gathered.back()));
  }
  for (auto& work : works) work->wait();
  return gathered;
}

void ShardedParameters::gatherIntoParameters() {
  const std::vector<at::Tensor> gathered = gatherSegments(master_);
  const BucketPlan& plan = reducer_.plan();
  c10::NoGradGuard no_grad;
  for (size_t b = 0; b < plan.buckets.size(); ++b) {
    const Bucket& bucket = plan.buckets[b];
    for (const ParamSlot& slot : bucket.slots) {
      const at::Tensor chunks = gathered[b].as_strided({bucket.shards, slot.chunk}, {bucket.segment, 1}, slot.offset);
      at::Tensor param = reducer_.params()[static_cast<size_t>(slot.param)];
      param.view({-1}).copy_(chunks.reshape({-1}).narrow(0, 0, slot.numel));
    }
  }
}

std::vector<at::Tensor> ShardedParameters::gatherFull(const std::vector<at::Tensor>& chunks) const {
  const BucketPlan& plan = reducer_.plan();
  std::vector<at::Tensor> segments;
  for (const Bucket& bucket : plan.buckets) segments.push_back(at::empty({bucket.segment}));
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ParamSlot& slot = slotOf(plan, static_cast<int>(i));
    segments[bucketOf(plan, static_cast<int>(i))].narrow(0, slot.offset, slot.chunk).copy_(chunks[i].reshape({-1}));
  }
  const std::vector<at::Tensor> gathered = gatherSegments(segments);
  std::vector<at::Tensor> full;
  for (size_t i = 0; i < chunks.size(); ++i) {
    const ParamSlot& slot = slotOf(plan, static_cast<int>(i));
    const Bucket& bucket = plan.buckets[bucketOf(plan, static_cast<int>(i))];
    const at::Tensor all = gathered[bucketOf(plan, static_cast<int>(i))].as_strided(
        {bucket.shards, slot.chunk}, {bucket.segment, 1}, slot.offset);
    full.push_back(all.reshape({-1}).narrow(0, 0, slot.numel).reshape(reducer_.params()[i].sizes()).clone());
  }
  return full;
}

}  // namespace loom::parallel

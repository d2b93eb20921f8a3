#include "train/data/data_loader.h"

#include "runtime/core/error.h"
#include "train/data/sample_order.h"

#include <ATen/ops/empty.h>

#include <algorithm>

namespace loom::data {

DataLoader::DataLoader(std::shared_ptr<const TokenShard> shard, const LoaderOptions& opts)
    : shard_(std::move(shard)), opts_(opts) {
  LOOM_CHECK(shard_ != nullptr, "DataLoader needs a shard");
  LOOM_CHECK_INPUT(opts_.seq_len >= 1, "data.seq_len must be >= 1, got ", opts_.seq_len);
  LOOM_CHECK_INPUT(opts_.global_batch >= 1, "train.global_batch must be >= 1, got ", opts_.global_batch);
  LOOM_CHECK_INPUT(opts_.micro_batch >= 1, "train.micro_batch must be >= 1, got ", opts_.micro_batch);
  LOOM_CHECK_INPUT(opts_.world_size >= 1 && opts_.rank >= 0 && opts_.rank < opts_.world_size, "rank ", opts_.rank,
                   " is outside the data-parallel world [0, ", opts_.world_size, ")");
  LOOM_CHECK_INPUT(opts_.groups >= 1 && opts_.group >= 0 && opts_.group < opts_.groups, "data group ", opts_.group,
                   " is outside [0, ", opts_.groups, ")");
  const int64_t tokens = shard_->size();
  LOOM_CHECK_INPUT(tokens >= opts_.seq_len + 1, shard_->path(), ": ", tokens,
                   " tokens is shorter than one window of data.seq_len + 1 = ", opts_.seq_len + 1,
                   " tokens; lower data.seq_len or use a bigger shard");
  windows_ = (tokens - 1) / opts_.seq_len;
}

int64_t DataLoader::windowOf(int64_t global_sample) const {
  std::lock_guard<std::mutex> lock(cache_->mutex);
  return windowLocked(global_sample);
}

int64_t DataLoader::windowLocked(int64_t global_sample) const {
  LOOM_CHECK(global_sample >= 0, "negative global sample ", global_sample);
  const int64_t position = global_sample % windows_;
  if (opts_.order == SampleOrder::kSequential) return position;
  const int64_t epoch = global_sample / windows_;
  if (epoch != cache_->epoch) {
    cache_->order = epochPermutation(windows_, opts_.seed, epoch);
    cache_->epoch = epoch;
  }
  return cache_->order[static_cast<size_t>(position)];
}

at::Tensor DataLoader::samples(int64_t first_global_sample, int64_t count) const {
  LOOM_CHECK(first_global_sample >= 0 && count >= 0, "samples(", first_global_sample, ", ", count, ")");
  const int64_t width = opts_.seq_len + 1;
  at::Tensor out = at::empty({count, width}, at::TensorOptions().dtype(at::kLong));
  int64_t* row = out.data_ptr<int64_t>();
  const uint16_t* tokens = shard_->tokens();
  std::lock_guard<std::mutex> lock(cache_->mutex);
  for (int64_t i = 0; i < count; ++i, row += width) {
    const uint16_t* window = tokens + windowLocked(first_global_sample + i) * opts_.seq_len;
    for (int64_t t = 0; t < width; ++t) row[t] = window[t];
  }
  return out;
}

namespace {

// Start of part i of n of a range of `total` items: floor(i * total / n).
int64_t partStart(int64_t i, int64_t total, int64_t n) { return i * total / n; }

}  // namespace

int64_t DataLoader::groupCount() const {
  return partStart(opts_.group + 1, opts_.global_batch, opts_.groups) -
         partStart(opts_.group, opts_.global_batch, opts_.groups);
}

int64_t DataLoader::rankOffset() const {
  return partStart(opts_.group, opts_.global_batch, opts_.groups) +
         partStart(opts_.rank, groupCount(), opts_.world_size);
}

int64_t DataLoader::rankCount() const {
  return partStart(opts_.rank + 1, groupCount(), opts_.world_size) - partStart(opts_.rank, groupCount(), opts_.world_size);
}

std::vector<at::Tensor> DataLoader::nextStep() {
  const int64_t first = cursor_ + rankOffset();
  const int64_t count = rankCount();
  std::vector<at::Tensor> micro_batches;
  micro_batches.reserve(static_cast<size_t>((count + opts_.micro_batch - 1) / opts_.micro_batch));
  for (int64_t offset = 0; offset < count; offset += opts_.micro_batch) {
    micro_batches.push_back(samples(first + offset, std::min(opts_.micro_batch, count - offset)));
  }
  cursor_ += opts_.global_batch;
  return micro_batches;
}

void DataLoader::seek(int64_t cursor) {
  LOOM_CHECK_INPUT(cursor >= 0 && cursor % opts_.global_batch == 0, "cannot resume the data loader at sample ", cursor,
                   ": it must be a non-negative multiple of train.global_batch (", opts_.global_batch,
                   "); the checkpoint was written with another global batch");
  cursor_ = cursor;
}

}  // namespace loom::data

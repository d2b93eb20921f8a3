#include "train/data/document_sampler.h"

#include "runtime/core/error.h"
#include "train/data/sample_order.h"

#include <ATen/ops/empty.h>

#include <algorithm>
#include <cmath>

namespace loom::data {
namespace {

constexpr double kTwoPi = 6.283185307179586;
constexpr double kTwoToMinus53 = 1.0 / 9007199254740992.0;  // 2^-53

// The length document `rng` draws (its first two outputs), before the step's
// cut. Box-Muller: u1 in (0, 1], u2 in [0, 1) from the top 53 bits of each
// output, z = sqrt(-2 ln u1) cos(2 pi u2) is standard normal.
int64_t drawLength(SplitMix64& rng, const DocumentOptions& opts) {
  const uint64_t r1 = rng.next();
  const uint64_t r2 = rng.next();
  if (opts.distribution == LengthDistribution::kFixed) return opts.fixed_tokens;
  const double u1 = static_cast<double>((r1 >> 11) + 1) * kTwoToMinus53;
  const double u2 = static_cast<double>(r2 >> 11) * kTwoToMinus53;
  const double z = std::sqrt(-2.0 * std::log(u1)) * std::cos(kTwoPi * u2);
  const double x = std::exp(opts.lognormal_mu + opts.lognormal_sigma * z);  // may be +inf: clamped next
  const double clamped =
      std::min(std::max(x, static_cast<double>(opts.min_tokens)), static_cast<double>(opts.max_tokens));
  return static_cast<int64_t>(std::llround(clamped));
}

}  // namespace

DocumentSampler::DocumentSampler(std::shared_ptr<const TokenShard> shard, const DocumentOptions& opts)
    : shard_(std::move(shard)), opts_(opts) {
  LOOM_CHECK(shard_ != nullptr, "DocumentSampler needs a shard");
  LOOM_CHECK(opts_.distribution == LengthDistribution::kLognormal || opts_.distribution == LengthDistribution::kFixed,
             "unknown LengthDistribution ", static_cast<int>(opts_.distribution));
  LOOM_CHECK_INPUT(opts_.min_tokens >= 1, "DocumentOptions.min_tokens must be >= 1, got ", opts_.min_tokens);
  LOOM_CHECK_INPUT(opts_.max_tokens >= 2 * opts_.min_tokens - 1, "DocumentOptions.max_tokens (", opts_.max_tokens,
                   ") must be >= 2 * min_tokens - 1 = ", 2 * opts_.min_tokens - 1,
                   " so that every step total splits into lengths within [min_tokens, max_tokens]");
  LOOM_CHECK_INPUT(opts_.tokens_per_step >= opts_.min_tokens, "DocumentOptions.tokens_per_step (",
                   opts_.tokens_per_step, ") must be >= min_tokens (", opts_.min_tokens, ")");
  LOOM_CHECK_INPUT(opts_.tokens_per_step / opts_.min_tokens <= kDocumentIdStride, "DocumentOptions.tokens_per_step (",
                   opts_.tokens_per_step, ") allows more than ", kDocumentIdStride,
                   " documents per step, and their ids would collide; raise min_tokens (", opts_.min_tokens,
                   ") or lower tokens_per_step");
  LOOM_CHECK_INPUT(std::isfinite(opts_.lognormal_mu), "DocumentOptions.lognormal_mu must be finite, got ",
                   opts_.lognormal_mu);
  LOOM_CHECK_INPUT(std::isfinite(opts_.lognormal_sigma) && opts_.lognormal_sigma >= 0,
                   "DocumentOptions.lognormal_sigma must be finite and >= 0, got ", opts_.lognormal_sigma);
  if (opts_.distribution == LengthDistribution::kFixed) {
    LOOM_CHECK_INPUT(opts_.fixed_tokens >= opts_.min_tokens && opts_.fixed_tokens <= opts_.max_tokens,
                     "DocumentOptions.fixed_tokens (", opts_.fixed_tokens,
                     ") must be within [min_tokens, max_tokens] = [", opts_.min_tokens, ", ", opts_.max_tokens, "]");
  }
  LOOM_CHECK_INPUT(shard_->size() >= opts_.max_tokens + 1, shard_->path(), ": ", shard_->size(),
                   " tokens is shorter than the longest document, DocumentOptions.max_tokens + 1 = ",
                   opts_.max_tokens + 1, " tokens; lower max_tokens or use a bigger shard");
}

std::vector<Document> DocumentSampler::step(int64_t s) const {
  LOOM_CHECK_INPUT(s >= 0 && s <= kMaxDocumentStep, "document step ", s, " is outside [0, ", kMaxDocumentStep, "]");
  const std::vector<int64_t>& offsets = shard_->documents();
  const auto real_documents = static_cast<uint64_t>(shard_->documentCount());
  const uint64_t step_key = epochStreamState(opts_.seed ^ kDocumentSalt, s);
  std::vector<Document> documents;
  int64_t left = opts_.tokens_per_step;  // invariant: left == 0 or left >= min_tokens
  for (int64_t i = 0; left > 0; ++i) {
    SplitMix64 rng(epochStreamState(step_key, i));
    const int64_t drawn = drawLength(rng, opts_);
    int64_t length = drawn;
    if (left - drawn < opts_.min_tokens) length = left <= opts_.max_tokens ? left : left - opts_.min_tokens;
    left -= length;

    Document d;
    d.id = s * kDocumentIdStride + i;
    d.length = length;
    d.source = static_cast<int64_t>(rng.below(real_documents));
    const int64_t begin = offsets[static_cast<size_t>(d.source)];
    const int64_t source_tokens = offsets[static_cast<size_t>(d.source) + 1] - begin;
    const auto pieces = static_cast<uint64_t>((source_tokens + length - 1) / length);
    d.start = begin + static_cast<int64_t>(rng.below(pieces)) * length;
    documents.push_back(d);
  }
  return documents;
}

at::Tensor DocumentSampler::tokens(const Document& d) const {
  const int64_t size = shard_->size();
  LOOM_CHECK_INPUT(d.start >= 0 && d.start < size && d.length >= 1 && d.length <= size - 1, "document ", d.id,
                   " (start ", d.start, ", length ", d.length, ") does not fit ", shard_->path(), " (", size,
                   " tokens): it comes from another shard");
  at::Tensor out = at::empty({d.length + 1}, at::TensorOptions().dtype(at::kLong));
  int64_t* dst = out.data_ptr<int64_t>();
  const uint16_t* src = shard_->tokens();
  const int64_t first_run = std::min(d.length + 1, size - d.start);  // before the wrap
  for (int64_t t = 0; t < first_run; ++t) dst[t] = src[d.start + t];
  for (int64_t t = first_run; t <= d.length; ++t) dst[t] = src[t - first_run];
  return out;
}

}  // namespace loom::data

// Document mode (docs/data.md, "Document mode"): each step's global batch is a
// list of whole documents of varying length, drawn from a long-tail length
// distribution and cut from the shard's real documents, so that a few long
// sequences (up to max_tokens, 16K by default) mix with many short ones.
// Deterministic from (seed, step) alone: no state, the same on every rank.
//
//   length      document i of step s draws L from its own generator
//               SplitMix64(key(key(seed ^ kDocumentSalt, s), i)), key(a, b) =
//               epochStreamState(a, b) (sample_order.h): lognormal by
//               Box-Muller, exp(mu + sigma z), clamped to [min_tokens,
//               max_tokens] and rounded; or fixed_tokens.
//   step total  documents are drawn until they hold exactly tokens_per_step
//               tokens; with R tokens left, document i keeps L when
//               R - L >= min_tokens, else it is the last and takes R (cut or
//               extended by < min_tokens), unless R > max_tokens: then it takes
//               R - min_tokens and the next (last) one min_tokens.
//   tokens      the same generator picks a real document k uniformly, cuts it
//               into pieces of `length` tokens and picks one piece j; the
//               document reads length + 1 consecutive tokens from there,
//               continuing across end-of-document tokens (kept: real data)
//               into the next documents and wrapping around the shard's end.
#pragma once

#include "train/data/token_shard.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <memory>
#include <vector>

namespace loom::data {

enum class LengthDistribution {
  kLognormal,  ///< exp(mu + sigma z), z standard normal: a long right tail for sigma >~ 1
  kFixed,      ///< every document fixed_tokens long (the step's last one may differ)
};

/// Document ids are step * kDocumentIdStride + index, unique across steps.
inline constexpr int64_t kDocumentIdStride = int64_t{1} << 20;
/// The largest step whose ids fit in int64.
inline constexpr int64_t kMaxDocumentStep = (int64_t{1} << 43) - 1;
/// Mixed into the seed ("document" in ASCII) so that document streams differ
/// from the window shuffle's streams under the same seed.
inline constexpr uint64_t kDocumentSalt = 0x646F63756D656E74ULL;

struct DocumentOptions {
  LengthDistribution distribution = LengthDistribution::kLognormal;
  double lognormal_mu = 6.931471805599453;  ///< ln of the median length in tokens (ln 1024); finite
  double lognormal_sigma = 1.5;             ///< of ln(length); finite, >= 0. 1.5: ~8% of draws >= 8K
  int64_t fixed_tokens = 2048;              ///< kFixed only; in [min_tokens, max_tokens]
  int64_t min_tokens = 16;                  ///< every document's length >= this; >= 1
  int64_t max_tokens = 16384;               ///< every document's length <= this; >= 2 min_tokens - 1
  /// A step's global batch holds exactly this many tokens (inputs), so every
  /// step costs the same; >= min_tokens and <= min_tokens * kDocumentIdStride.
  int64_t tokens_per_step = 65536;
  uint64_t seed = 1234;  ///< train.seed
};

struct Document {
  int64_t id = 0;      ///< step * kDocumentIdStride + index within the step
  int64_t length = 0;  ///< input tokens; tokens() returns length + 1 (targets shifted by one)
  int64_t start = 0;   ///< shard offset of its first token; reading wraps around the shard's end
  int64_t source = 0;  ///< the real shard document that `start` lies in

  bool operator==(const Document& other) const {
    return id == other.id && length == other.length && start == other.start && source == other.source;
  }
  bool operator!=(const Document& other) const { return !(*this == other); }
};

/// Immutable: all methods are const and may be called from any thread.
class DocumentSampler {
 public:
  /// Throws InputError naming the DocumentOptions field: min_tokens < 1;
  /// max_tokens < 2 min_tokens - 1 (some totals would not split into lengths
  /// in range); tokens_per_step < min_tokens or > min_tokens * kDocumentIdStride
  /// (ids would collide); lognormal_mu or lognormal_sigma not finite, sigma < 0;
  /// kFixed with fixed_tokens outside [min_tokens, max_tokens]; a shard shorter
  /// than max_tokens + 1 tokens (a document would read a token twice).
  DocumentSampler(std::shared_ptr<const TokenShard> shard, const DocumentOptions& opts);

  /// The documents of step `s`, in order; their lengths sum to tokens_per_step.
  /// Depends on (seed, s) and the shard alone. Throws InputError when s is
  /// outside [0, kMaxDocumentStep].
  std::vector<Document> step(int64_t s) const;

  /// int64 [d.length + 1]: token t is the shard's token (d.start + t) mod size();
  /// inputs are the first d.length, targets the last d.length. Throws InputError
  /// when `d` cannot come from this shard (start outside [0, size()), length
  /// outside [1, size() - 1]).
  at::Tensor tokens(const Document& d) const;

  const DocumentOptions& options() const { return opts_; }
  const TokenShard& shard() const { return *shard_; }

 private:
  std::shared_ptr<const TokenShard> shard_;
  DocumentOptions opts_;
};

}  // namespace loom::data

// DocumentSampler: determinism, the step-total and cut rules, the lognormal
// length distribution and its long tail, tokens against direct reads of the
// shard (joined documents, cut documents, wrap-around), a re-implementation of
// the algorithm written from docs/data.md, bad options, and the Brown shard.
#include "train/data/document_sampler.h"

#include "tests/support/test_util.h"
#include "tests/train/data/data_test_util.h"
#include "train/data/sample_order.h"
#include "train/data/shard_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace loom::data {
namespace {

using loom::test::TempDir;
using test::inputErrorOf;
using ::testing::AllOf;
using ::testing::HasSubstr;

// Documents of the given lengths (each ending with EOD); token i is 1000 + i
// otherwise, so positions below 64000 are distinct and a misplaced read shows.
std::vector<uint16_t> corpusTokens(const std::vector<int64_t>& document_lengths) {
  std::vector<uint16_t> tokens;
  for (int64_t length : document_lengths) {
    for (int64_t t = 0; t + 1 < length; ++t) tokens.push_back(static_cast<uint16_t>(1000 + tokens.size() % 64000));
    tokens.push_back(256);
  }
  return tokens;
}

// `count` documents cycling through `pattern`.
std::vector<int64_t> cycle(const std::vector<int64_t>& pattern, size_t count) {
  std::vector<int64_t> out;
  for (size_t i = 0; i < count; ++i) out.push_back(pattern[i % pattern.size()]);
  return out;
}

std::vector<int64_t> values(const at::Tensor& t) {
  EXPECT_EQ(t.scalar_type(), at::kLong);
  EXPECT_EQ(t.dim(), 1);
  const int64_t* p = t.data_ptr<int64_t>();
  return std::vector<int64_t>(p, p + t.numel());
}

// The shard's tokens (start + t) mod size for t in [0, count): the definition.
std::vector<int64_t> directRead(const std::vector<uint16_t>& tokens, int64_t start, int64_t count) {
  std::vector<int64_t> out;
  const auto size = static_cast<int64_t>(tokens.size());
  for (int64_t t = 0; t < count; ++t) out.push_back(tokens[static_cast<size_t>((start + t) % size)]);
  return out;
}

int64_t total(const std::vector<Document>& documents) {
  int64_t sum = 0;
  for (const Document& d : documents) sum += d.length;
  return sum;
}

std::vector<int64_t> lengths(const std::vector<Document>& documents) {
  std::vector<int64_t> out;
  for (const Document& d : documents) out.push_back(d.length);
  return out;
}

DocumentOptions fixedOptions(int64_t fixed, int64_t min, int64_t max, int64_t per_step) {
  DocumentOptions opts;
  opts.distribution = LengthDistribution::kFixed;
  opts.fixed_tokens = fixed;
  opts.min_tokens = min;
  opts.max_tokens = max;
  opts.tokens_per_step = per_step;
  return opts;
}

class DocumentSamplerTest : public ::testing::Test {
 protected:
  // A shard of `tokens`, with a `.idx` of its documents when `with_index`.
  std::shared_ptr<const TokenShard> shardOf(const std::vector<uint16_t>& tokens, bool with_index = true) {
    const std::string path = dir_.file("shard" + std::to_string(next_++) + ".bin");
    loom::test::writeTextFile(path, test::shardBytes(tokens));
    if (with_index) {
      std::vector<int64_t> offsets{0};
      for (size_t i = 0; i < tokens.size(); ++i) {
        if (tokens[i] == 256) offsets.push_back(static_cast<int64_t>(i) + 1);
      }
      loom::test::writeTextFile(indexPathFor(path), test::indexBytes(offsets));
    }
    return TokenShard::open(path, 65536);
  }

  // About 61K tokens in documents of 50 to 12000 tokens: long enough for 16K documents.
  const std::vector<uint16_t> long_tokens_ = corpusTokens(cycle({50, 300, 2000, 12000, 7, 900}, 24));
  TempDir dir_;
  int next_ = 0;
};

TEST_F(DocumentSamplerTest, SameSeedGivesTheSameStepsAndStepsDiffer) {
  DocumentOptions opts;
  opts.seed = 99;
  // Two shards opened separately, steps asked in different orders: no state.
  const DocumentSampler a(shardOf(long_tokens_), opts);
  const DocumentSampler b(shardOf(long_tokens_), opts);
  std::vector<std::vector<Document>> forward;
  for (int64_t s = 0; s < 20; ++s) forward.push_back(a.step(s));
  for (int64_t s = 19; s >= 0; --s) EXPECT_EQ(b.step(s), forward[static_cast<size_t>(s)]) << "step " << s;
  EXPECT_EQ(a.step(7), forward[7]);  // asking again changes nothing

  EXPECT_NE(lengths(forward[0]), lengths(forward[1]));
  opts.seed = 100;
  const DocumentSampler c(shardOf(long_tokens_), opts);
  EXPECT_NE(lengths(c.step(0)), lengths(forward[0]));
}

TEST_F(DocumentSamplerTest, LengthsStayInRangeAndEveryStepHoldsExactlyTokensPerStep) {
  for (const int64_t per_step :
       {int64_t{16}, int64_t{17}, int64_t{31}, int64_t{1000}, int64_t{16385}, int64_t{65536}, int64_t{100003}}) {
    DocumentOptions opts;
    opts.lognormal_sigma = 2.5;  // many draws at both clamps
    opts.tokens_per_step = per_step;
    const DocumentSampler sampler(shardOf(long_tokens_), opts);
    for (int64_t s = 0; s < 60; ++s) {
      const std::vector<Document> docs = sampler.step(s);
      ASSERT_FALSE(docs.empty());
      EXPECT_EQ(total(docs), per_step) << "step " << s;
      for (size_t i = 0; i < docs.size(); ++i) {
        EXPECT_GE(docs[i].length, opts.min_tokens) << "step " << s << " document " << i;
        EXPECT_LE(docs[i].length, opts.max_tokens) << "step " << s << " document " << i;
        EXPECT_EQ(docs[i].id, s * kDocumentIdStride + static_cast<int64_t>(i));
      }
    }
  }
}

TEST_F(DocumentSamplerTest, TheLastDocumentIsCutOrExtendedAndNeverShorterThanMinTokens) {
  const auto shard = shardOf(long_tokens_);
  // 10 x 100 then 50 left: the eleventh draw (100) is cut to 50.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(100, 16, 1000, 1050)).step(0)),
            std::vector<int64_t>({100, 100, 100, 100, 100, 100, 100, 100, 100, 100, 50}));
  // 9 x 100 then 110 left: 110 - 100 < 16, so the tenth document takes all 110.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(100, 16, 1000, 1010)).step(0)),
            std::vector<int64_t>({100, 100, 100, 100, 100, 100, 100, 100, 100, 110}));
  // Exactly divisible: no cut.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(100, 16, 1000, 300)).step(0)),
            std::vector<int64_t>({100, 100, 100}));
  // 130 left, draw 120 = max: 130 > max_tokens, so 130 - 16 = 114, then the last takes 16.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(120, 16, 120, 130)).step(0)), std::vector<int64_t>({114, 16}));
  // tokens_per_step == min_tokens: one document.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(100, 16, 1000, 16)).step(0)), std::vector<int64_t>({16}));
  // max_tokens = 2 min - 1, the tightest allowed: 34 left > 31, so 34 - 16 = 18, then 16.
  EXPECT_EQ(lengths(DocumentSampler(shard, fixedOptions(31, 16, 31, 34)).step(0)), std::vector<int64_t>({18, 16}));
}

TEST_F(DocumentSamplerTest, LognormalLengthsHaveTheStatedMedianAndALongTail) {
  DocumentOptions opts;  // mu = ln 1024, sigma = 1.5, [16, 16384]
  opts.tokens_per_step = 1 << 20;
  const DocumentSampler sampler(shardOf(long_tokens_), opts);
  // All but each step's last document, which the total cuts. Leaving it out
  // lowers the tail fractions by ~1% of their value (the last one is the
  // length-biased one that reached the total): far inside the tolerances.
  std::vector<int64_t> drawn;
  for (int64_t s = 0; s < 60; ++s) {
    const std::vector<Document> docs = sampler.step(s);
    for (size_t i = 0; i + 1 < docs.size(); ++i) drawn.push_back(docs[i].length);
  }
  ASSERT_GT(drawn.size(), 15000u);
  const auto n = static_cast<double>(drawn.size());
  std::sort(drawn.begin(), drawn.end());
  const double median = static_cast<double>(drawn[drawn.size() / 2]);
  // The sample median of ln L has a standard error of about sigma * 1.25 / sqrt(n) ~ 1.5%: allow 6%.
  EXPECT_NEAR(median, std::exp(opts.lognormal_mu), 0.06 * 1024) << "median of " << drawn.size();

  // P(L >= 8192) = P(z >= ln 8 / 1.5) = 0.0828 and P(L = 16384) = P(z >= ln 16 / 1.5) = 0.0323
  // (rounding moves the bounds by half a token); standard errors 0.0017 and 0.0011 here.
  const double at_least_8k =
      static_cast<double>(drawn.end() - std::lower_bound(drawn.begin(), drawn.end(), int64_t{8192})) / n;
  const double at_max = static_cast<double>(std::count(drawn.begin(), drawn.end(), opts.max_tokens)) / n;
  EXPECT_NEAR(at_least_8k, 0.0828, 0.01);
  EXPECT_NEAR(at_max, 0.0323, 0.006);
  EXPECT_GE(drawn.front(), 16);
  EXPECT_EQ(drawn.back(), 16384);

  // A narrow distribution has no tail: sigma does something.
  opts.lognormal_sigma = 0.1;
  const DocumentSampler narrow(shardOf(long_tokens_), opts);
  for (const Document& d : narrow.step(0)) EXPECT_LT(d.length, 2048);
}

TEST_F(DocumentSamplerTest, TokensEqualTheShardAtTheDocumentsStart) {
  DocumentOptions opts;
  opts.tokens_per_step = 200000;
  const auto shard = shardOf(long_tokens_);
  const DocumentSampler sampler(shard, opts);
  const std::vector<int64_t>& offsets = shard->documents();
  bool saw_cut = false;     // starts inside a real document
  bool saw_joined = false;  // runs past its real document's end-of-document token
  for (int64_t s = 0; s < 3; ++s) {
    for (const Document& d : sampler.step(s)) {
      ASSERT_GE(d.source, 0);
      ASSERT_LT(d.source, shard->documentCount());
      const int64_t begin = offsets[static_cast<size_t>(d.source)];
      const int64_t end = offsets[static_cast<size_t>(d.source) + 1];
      // A piece of its source cut into pieces of its length.
      EXPECT_GE(d.start, begin);
      EXPECT_LT(d.start, end);
      EXPECT_EQ((d.start - begin) % d.length, 0) << "document " << d.id;
      const std::vector<int64_t> got = values(sampler.tokens(d));
      ASSERT_EQ(got, directRead(long_tokens_, d.start, d.length + 1)) << "document " << d.id;
      saw_cut = saw_cut || d.start > begin;
      if (d.start + d.length + 1 > end) {
        saw_joined = true;
        EXPECT_EQ(got[static_cast<size_t>(end - 1 - d.start)], 256) << "the joined source's end-of-document token";
      }
    }
  }
  EXPECT_TRUE(saw_cut);
  EXPECT_TRUE(saw_joined);
}

TEST_F(DocumentSamplerTest, DocumentsWrapAroundTheShardEnd) {
  // 300 tokens in documents of 40 and 60; documents up to 64 tokens.
  const std::vector<uint16_t> tokens = corpusTokens(cycle({40, 60}, 6));
  ASSERT_EQ(tokens.size(), 300u);
  DocumentOptions opts;
  opts.min_tokens = 8;
  opts.max_tokens = 64;
  opts.lognormal_mu = std::log(40.0);
  opts.lognormal_sigma = 0.5;
  opts.tokens_per_step = 200;
  const DocumentSampler sampler(shardOf(tokens, /*with_index=*/false), opts);
  int wrapped = 0;
  for (int64_t s = 0; s < 200; ++s) {
    for (const Document& d : sampler.step(s)) {
      if (d.start + d.length + 1 <= 300) continue;
      ++wrapped;
      const std::vector<int64_t> got = values(sampler.tokens(d));
      ASSERT_EQ(got, directRead(tokens, d.start, d.length + 1)) << "step " << s << " document " << d.id;
      EXPECT_EQ(got[static_cast<size_t>(300 - d.start)], tokens[0]) << "continues at the shard's first token";
    }
  }
  EXPECT_GT(wrapped, 0);

  // By hand: the last 3 tokens, then the first 8.
  Document d;
  d.start = 297;
  d.length = 10;
  std::vector<int64_t> expected{tokens[297], tokens[298], tokens[299]};
  for (size_t t = 0; t < 8; ++t) expected.push_back(tokens[t]);
  EXPECT_EQ(values(sampler.tokens(d)), expected);
}

// docs/data.md "Document mode", written out again from the text.
std::vector<Document> documentedStep(const TokenShard& shard, const DocumentOptions& o, int64_t s) {
  auto key = [](uint64_t a, int64_t b) { return SplitMix64(a ^ SplitMix64(static_cast<uint64_t>(b)).next()).next(); };
  const uint64_t step_key = key(o.seed ^ 0x646F63756D656E74ULL, s);
  std::vector<Document> out;
  int64_t left = o.tokens_per_step;
  for (int64_t i = 0; left > 0; ++i) {
    SplitMix64 rng(key(step_key, i));
    const double u1 = static_cast<double>((rng.next() >> 11) + 1) / 9007199254740992.0;
    const double u2 = static_cast<double>(rng.next() >> 11) / 9007199254740992.0;
    const double z = std::sqrt(-2 * std::log(u1)) * std::cos(2 * M_PI * u2);
    double x = std::exp(o.lognormal_mu + o.lognormal_sigma * z);
    x = std::max(x, static_cast<double>(o.min_tokens));
    x = std::min(x, static_cast<double>(o.max_tokens));
    int64_t length = o.distribution == LengthDistribution::kFixed ? o.fixed_tokens : std::llround(x);
    if (left - length < o.min_tokens) length = left > o.max_tokens ? left - o.min_tokens : left;
    left -= length;
    const auto k = static_cast<int64_t>(rng.below(static_cast<uint64_t>(shard.documentCount())));
    const int64_t begin = shard.documents()[static_cast<size_t>(k)];
    const int64_t size = shard.documents()[static_cast<size_t>(k) + 1] - begin;
    const auto j = static_cast<int64_t>(rng.below(static_cast<uint64_t>((size + length - 1) / length)));
    out.push_back(Document{s * (int64_t{1} << 20) + i, length, begin + j * length, k});
  }
  return out;
}

TEST_F(DocumentSamplerTest, MatchesTheDocumentedAlgorithm) {
  const auto shard = shardOf(long_tokens_);
  for (const auto distribution : {LengthDistribution::kLognormal, LengthDistribution::kFixed}) {
    DocumentOptions opts;
    opts.distribution = distribution;
    opts.fixed_tokens = 3000;
    opts.seed = 31337;
    opts.tokens_per_step = 50000;
    const DocumentSampler sampler(shard, opts);
    for (const int64_t s : {int64_t{0}, int64_t{1}, int64_t{2}, int64_t{1000}, kMaxDocumentStep}) {
      EXPECT_EQ(sampler.step(s), documentedStep(*shard, opts, s)) << "step " << s;
    }
  }
}

TEST_F(DocumentSamplerTest, StepZeroIsPinned) {
  // Pins the definition across versions: changing any of it must change docs/data.md too.
  DocumentOptions opts;
  opts.tokens_per_step = 20000;
  const DocumentSampler sampler(shardOf(long_tokens_), opts);
  const std::vector<Document> docs = sampler.step(0);
  EXPECT_EQ(lengths(docs), std::vector<int64_t>({600, 2614, 2461, 4630, 80, 1079, 1818, 2028, 200, 4490}));
  std::vector<int64_t> starts;
  for (const Document& d : docs) starts.push_back(d.start);
  EXPECT_EQ(starts, std::vector<int64_t>({0, 44871, 50, 30514, 1070, 47200, 60121, 2350, 15257, 44871}));
}

TEST_F(DocumentSamplerTest, BadOptionsNameTheField) {
  const auto shard = shardOf(long_tokens_);
  auto errorFor = [&](DocumentOptions opts) { return inputErrorOf([&] { DocumentSampler(shard, opts); }); };
  DocumentOptions opts;
  opts.min_tokens = 0;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("min_tokens"), HasSubstr("got 0")));
  opts = {};
  opts.min_tokens = 100;
  opts.max_tokens = 198;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("max_tokens (198)"), HasSubstr("199")));
  opts = {};
  opts.tokens_per_step = 15;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("tokens_per_step (15)"), HasSubstr("min_tokens (16)")));
  opts = {};
  opts.min_tokens = 1;
  opts.tokens_per_step = kDocumentIdStride + 1;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("tokens_per_step"), HasSubstr("ids would collide")));
  opts = {};
  opts.lognormal_mu = std::numeric_limits<double>::quiet_NaN();
  EXPECT_THAT(errorFor(opts), HasSubstr("lognormal_mu"));
  opts = {};
  opts.lognormal_sigma = -0.5;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("lognormal_sigma"), HasSubstr("-0.5")));
  opts = {};
  opts.lognormal_sigma = std::numeric_limits<double>::infinity();
  EXPECT_THAT(errorFor(opts), HasSubstr("lognormal_sigma"));
  opts = fixedOptions(10, 16, 1000, 5000);
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("fixed_tokens (10)"), HasSubstr("[16, 1000]")));
  opts = {};
  opts.max_tokens = 70000;
  EXPECT_THAT(errorFor(opts), AllOf(HasSubstr("max_tokens + 1 = 70001"), HasSubstr(shard->path())));

  const DocumentSampler sampler(shard, DocumentOptions{});
  EXPECT_THAT(inputErrorOf([&] { sampler.step(-1); }), HasSubstr("step -1"));
  EXPECT_THAT(inputErrorOf([&] { sampler.step(kMaxDocumentStep + 1); }), HasSubstr("outside"));
  Document foreign;
  foreign.id = 5;
  foreign.start = shard->size();
  foreign.length = 10;
  EXPECT_THAT(inputErrorOf([&] { sampler.tokens(foreign); }), HasSubstr("another shard"));
  foreign.start = 0;
  foreign.length = 0;
  EXPECT_THAT(inputErrorOf([&] { sampler.tokens(foreign); }), HasSubstr("another shard"));
}

// A Brown-sized corpus (200 documents of 3000 tokens, 600K tokens) with the
// default options: 16K documents occur, and they join real documents.
TEST_F(DocumentSamplerTest, ACorpusOfShortDocumentsGivesSixteenKDocumentsWithEndOfDocumentInside) {
  const auto shard = shardOf(test::syntheticTokens(600000, 3000));
  DocumentOptions opts;  // defaults: lognormal median 1024, sigma 1.5, up to 16384, 65536 per step
  const DocumentSampler sampler(shard, opts);
  int64_t longest = 0;
  int64_t joined = 0;
  for (int64_t s = 0; s < 40; ++s) {
    const std::vector<Document> docs = sampler.step(s);
    EXPECT_EQ(total(docs), opts.tokens_per_step);
    for (const Document& d : docs) {
      longest = std::max(longest, d.length);
      const std::vector<int64_t> got = values(sampler.tokens(d));
      // EOD anywhere but as the last target means the document joined two real ones.
      joined += std::count(got.begin(), got.end() - 1, 256) > 0 ? 1 : 0;
    }
  }
  EXPECT_EQ(longest, 16384);
  EXPECT_GT(joined, 0);
}

}  // namespace
}  // namespace loom::data

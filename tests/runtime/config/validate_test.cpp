// Every validation rule, one broken at a time on an otherwise valid job, with
// the exact message; and the rules that depend on the world size.
#include "runtime/config/validate.h"
#include "runtime/core/error.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>

namespace loom::config {
namespace {

JobOptions validOptions() {
  JobOptions options;
  options.data.train_path = "t.bin";
  return options;
}

struct RuleCase {
  const char* name;
  std::function<void(JobOptions&)> breakIt;
  std::string message;
};

std::vector<std::string> messages(const JobOptions& options, int world_size) {
  std::vector<std::string> texts;
  for (const Violation& violation : findViolations(options, world_size)) {
    texts.push_back(violation.message);
  }
  return texts;
}

TEST(ValidateTest, ValidOptionsPassForSeveralWorldSizes) {
  for (int world : {1, 2, 4, 8, 16}) {
    EXPECT_TRUE(findViolations(validOptions(), world).empty()) << "world " << world;
    EXPECT_NO_THROW(validate(validOptions(), world));
  }
}

TEST(ValidateTest, EachRuleReportsItsFieldAndValue) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  const double nan = std::nan("");
  const std::vector<RuleCase> cases = {
      {"vocab low", [](JobOptions& o) { o.model.vocab_size = 256; },
       "model.vocab_size (256) must be in [257, 65536]: tokens are stored as uint16 and the byte tokenizer needs 257"},
      {"vocab high", [](JobOptions& o) { o.model.vocab_size = 65537; },
       "model.vocab_size (65537) must be in [257, 65536]: tokens are stored as uint16 and the byte tokenizer needs "
       "257"},
      {"dim", [](JobOptions& o) { o.model.dim = 0; }, "model.dim (0) must be >= 1"},
      {"layers", [](JobOptions& o) { o.model.layers = -2; }, "model.layers (-2) must be >= 1"},
      {"heads", [](JobOptions& o) { o.model.heads = 0; }, "model.heads (0) must be >= 1"},
      {"ffn_dim", [](JobOptions& o) { o.model.ffn_dim = 0; }, "model.ffn_dim (0) must be >= 1"},
      {"kv_heads negative", [](JobOptions& o) { o.model.kv_heads = -1; }, "model.kv_heads (-1) must be >= 0"},
      {"heads divide dim", [](JobOptions& o) { o.model.heads = 3; }, "model.heads (3) must divide model.dim (128)"},
      {"even head dim", [](JobOptions& o) { o.model.dim = 132; },
       "the head dim model.dim / model.heads (132 / 4 = 33) must be even: RoPE rotates pairs of features"},
      {"kv_heads divide heads", [](JobOptions& o) { o.model.kv_heads = 3; },
       "model.kv_heads (3) must divide model.heads (4); 0 means one key/value head per query head"},
      {"norm_eps", [](JobOptions& o) { o.model.norm_eps = 0; }, "model.norm_eps (0) must be > 0"},
      {"rope_theta", [&](JobOptions& o) { o.model.rope_theta = kInf; },
       "model.rope_theta (inf) must be a finite number"},
      {"init_std", [&](JobOptions& o) { o.model.init_std = nan; }, "model.init_std (nan) must be a finite number"},
      {"max_seq_len", [](JobOptions& o) { o.model.max_seq_len = 100; },
       "model.max_seq_len (100) must be >= data.seq_len (128)"},
      {"train_path", [](JobOptions& o) { o.data.train_path.clear(); },
       "data.train_path is empty: set it to the training token shard (.bin)"},
      {"seq_len", [](JobOptions& o) { o.data.seq_len = 0; }, "data.seq_len (0) must be >= 1"},
      {"steps", [](JobOptions& o) { o.train.steps = 0; }, "train.steps (0) must be >= 1"},
      {"global_batch", [](JobOptions& o) { o.train.global_batch = 0; }, "train.global_batch (0) must be >= 1"},
      {"micro_batch", [](JobOptions& o) { o.train.micro_batch = 0; }, "train.micro_batch (0) must be >= 1"},
      {"micro_batch divides", [](JobOptions& o) { o.train.micro_batch = 5; },
       "train.micro_batch (5) must divide the per-rank batch (train.global_batch / world size = 16 / 1 = 16): 16 / "
       "5 is not a whole number of accumulation steps; e.g. micro_batch 4 accumulates 4 micro-batches per step"},
      {"threads", [](JobOptions& o) { o.train.threads = -1; }, "train.threads (-1) must be >= 0"},
      {"out_dir", [](JobOptions& o) { o.train.out_dir.clear(); },
       "train.out_dir is empty: set the run's output directory"},
      {"checkpoint_every", [](JobOptions& o) { o.train.checkpoint_every = -1; },
       "train.checkpoint_every (-1) must be >= 0"},
      {"keep_checkpoints", [](JobOptions& o) { o.train.keep_checkpoints = 0; },
       "train.keep_checkpoints (0) must be >= 1"},
      {"val_every", [](JobOptions& o) { o.train.val_every = -5; }, "train.val_every (-5) must be >= 0"},
      {"val_batches", [](JobOptions& o) { o.train.val_batches = 0; }, "train.val_batches (0) must be >= 1"},
      {"grad_clip", [](JobOptions& o) { o.train.grad_clip = -0.5; }, "train.grad_clip (-0.5) must be >= 0"},
      {"dp", [](JobOptions& o) { o.parallel.dp = 2; }, "parallel.dp (2) must equal the world size (1) or be -1"},
      {"bucket_mb", [](JobOptions& o) { o.parallel.bucket_mb = 0; }, "parallel.bucket_mb (0) must be > 0"},
      {"timeout_s", [&](JobOptions& o) { o.parallel.timeout_s = kInf; },
       "parallel.timeout_s (inf) must be a finite number"},
      {"lr",
       [](JobOptions& o) {
         o.optimizer.lr = 0;
         o.optimizer.min_lr = 0;
       },
       "optimizer.lr (0) must be > 0"},
      {"min_lr negative", [](JobOptions& o) { o.optimizer.min_lr = -1e-4; }, "optimizer.min_lr (-0.0001) must be >= 0"},
      {"min_lr above lr", [](JobOptions& o) { o.optimizer.min_lr = 0.01; },
       "optimizer.min_lr (0.01) must be <= optimizer.lr (0.003)"},
      {"warmup_steps", [](JobOptions& o) { o.optimizer.warmup_steps = -1; },
       "optimizer.warmup_steps (-1) must be >= 0"},
      {"beta1", [](JobOptions& o) { o.optimizer.beta1 = 1; }, "optimizer.beta1 (1) must be in [0, 1)"},
      {"beta2", [](JobOptions& o) { o.optimizer.beta2 = -0.1; }, "optimizer.beta2 (-0.1) must be in [0, 1)"},
      {"beta nan", [&](JobOptions& o) { o.optimizer.beta2 = nan; }, "optimizer.beta2 (nan) must be in [0, 1)"},
      {"eps", [](JobOptions& o) { o.optimizer.eps = 0; }, "optimizer.eps (0) must be > 0"},
      {"weight_decay", [&](JobOptions& o) { o.optimizer.weight_decay = -kInf; },
       "optimizer.weight_decay (-inf) must be a finite number"},
      {"outer sync_every", [](JobOptions& o) { o.outer.sync_every = 0; }, "outer.sync_every (0) must be >= 1"},
      {"outer lr", [](JobOptions& o) { o.outer.lr = -0.5; }, "outer.lr (-0.5) must be >= 0"},
      {"outer lr inf", [&](JobOptions& o) { o.outer.lr = kInf; }, "outer.lr (inf) must be a finite number"},
      {"outer momentum 1", [](JobOptions& o) { o.outer.momentum = 1; },
       "outer.momentum (1) must be in [0, 1), or -1 for the algorithm's default"},
      {"outer momentum negative", [](JobOptions& o) { o.outer.momentum = -0.5; },
       "outer.momentum (-0.5) must be in [0, 1), or -1 for the algorithm's default"},
      {"outer momentum nan", [&](JobOptions& o) { o.outer.momentum = nan; },
       "outer.momentum (nan) must be in [0, 1), or -1 for the algorithm's default"},
      {"outer consensus", [](JobOptions& o) { o.outer.consensus = -2; },
       "outer.consensus (-2) must be a finite number >= 0, or -1 to use the outer learning rate"},
      {"outer consensus inf", [&](JobOptions& o) { o.outer.consensus = kInf; },
       "outer.consensus (inf) must be a finite number >= 0, or -1 to use the outer learning rate"},
      {"outer replicas", [](JobOptions& o) { o.outer.replicas = -1; }, "outer.replicas (-1) must be >= 0"},
      {"outer fragments", [](JobOptions& o) { o.outer.fragments = 0; }, "outer.fragments (0) must be >= 1"},
      {"outer fragments divide sync_every",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kDiLoCo;
         o.outer.fragments = 3;
       },
       "outer.sync_every (50) must be a multiple of outer.fragments (3): each fragment syncs every sync_every steps, "
       "one every sync_every / fragments"},
      {"outer fragment_delay negative", [](JobOptions& o) { o.outer.fragment_delay = -1; },
       "outer.fragment_delay (-1) must be >= 0"},
      {"outer fragment_delay too long",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kDiLoCo;
         o.outer.fragments = 2;
         o.outer.fragment_delay = 25;
       },
       "outer.fragment_delay (25) must be < outer.sync_every / outer.fragments (50 / 2 = 25): a fragment's sync must "
       "land before the next fragment's starts"},
      {"outer fragment_alpha high",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kDiLoCo;
         o.outer.fragment_alpha = 1.5;
       },
       "outer.fragment_alpha (1.5) must be in [0, 1]"},
      {"outer fragment_alpha negative", [](JobOptions& o) { o.outer.fragment_alpha = -0.1; },
       "outer.fragment_alpha (-0.1) must be in [0, 1]"},
      {"outer group_size", [](JobOptions& o) { o.outer.group_size = 1; }, "outer.group_size (1) must be >= 2"},
      {"outer staleness_penalty", [](JobOptions& o) { o.outer.staleness_penalty = 0; },
       "outer.staleness_penalty (0) must be > 0"},
      {"outer clip", [](JobOptions& o) { o.outer.clip = -1; }, "outer.clip (-1) must be >= 0"},
      {"outer clip nan", [&](JobOptions& o) { o.outer.clip = nan; }, "outer.clip (nan) must be a finite number"},
      {"outer delayed without DiLoCo",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kCo2;
         o.outer.delayed = true;
       },
       "outer.delayed (true) needs outer.algorithm DILOCO (not CO2): only DiLoCo has a delayed (async) variant; "
       "set outer.delayed: false"},
      {"outer delayed with fragments",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kDiLoCo;
         o.outer.delayed = true;
         o.outer.fragments = 2;
       },
       "outer.delayed (true) needs outer.fragments 1 (not 2): async DiLoCo is not combined with streaming fragments "
       "(outer.fragment_delay is streaming's overlap); drop outer.delayed or set outer.fragments: 1"},
      {"outer fragments without DiLoCo",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kCo2;
         o.outer.fragments = 2;
       },
       "outer.fragments (2) is streaming DiLoCo's and needs outer.algorithm DILOCO (not CO2); set outer.fragments: 1"},
      {"outer fragment_delay without DiLoCo", [](JobOptions& o) { o.outer.fragment_delay = 1; },
       "outer.fragment_delay (1) is streaming DiLoCo's and needs outer.algorithm DILOCO (not NONE); set "
       "outer.fragment_delay: 0"},
      {"outer fragment_alpha without DiLoCo",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kCo2;
         o.outer.fragment_alpha = 0.5;
       },
       "outer.fragment_alpha (0.5) is streaming DiLoCo's and needs outer.algorithm DILOCO (not CO2); set "
       "outer.fragment_alpha: 0"},
      {"outer with zero1 and one replica per rank",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kCo2;
         o.parallel.zero1 = true;
       },
       "parallel.zero1 (true) with outer.replicas (1) = the world size: each rank is its own replica, so there is no "
       "data-parallel group inside a replica to shard over; set outer.replicas to fewer than the ranks, or drop "
       "parallel.zero1"},
      {"outer replicas not dividing the world",
       [](JobOptions& o) {
         o.outer.algorithm = OuterAlgorithm::kDiLoCo;
         o.outer.replicas = 3;
       },
       "outer.replicas (3) must divide the world size (1): every replica has the same number of ranks"},
      {"noloco group larger than the replicas", [](JobOptions& o) { o.outer.algorithm = OuterAlgorithm::kNoLoCo; },
       "outer.group_size (2) must divide the number of replicas (1): NoLoCo partitions the replicas into equal groups "
       "every sync"},
      {"log_every", [](JobOptions& o) { o.logging.log_every = 0; }, "logging.log_every (0) must be >= 1"},
      {"peak_tflops", [](JobOptions& o) { o.logging.peak_tflops = -1; }, "logging.peak_tflops (-1) must be >= 0"},
  };
  for (const RuleCase& rule : cases) {
    JobOptions options = validOptions();
    rule.breakIt(options);
    EXPECT_EQ(messages(options, 1), std::vector<std::string>{rule.message}) << rule.name;
  }
}

TEST(ValidateTest, EveryOuterAlgorithmIsValidWithItsDefaults) {
  for (OuterAlgorithm algorithm :
       {OuterAlgorithm::kNone, OuterAlgorithm::kDiLoCo, OuterAlgorithm::kNoLoCo, OuterAlgorithm::kCo2}) {
    JobOptions options = validOptions();
    options.outer.algorithm = algorithm;
    EXPECT_TRUE(messages(options, 2).empty()) << static_cast<int>(algorithm);
    options.outer.lr = 0.5;  // explicit values instead of the sentinels
    options.outer.momentum = 0;
    options.outer.consensus = 0;
    EXPECT_TRUE(messages(options, 2).empty()) << static_cast<int>(algorithm);
  }
}

TEST(ValidateTest, StreamingAndAsyncDiLoCoAreValid) {
  JobOptions streaming = validOptions();
  streaming.outer.algorithm = OuterAlgorithm::kDiLoCo;
  streaming.outer.fragments = 5;
  streaming.outer.fragment_delay = 9;  // < 50 / 5
  streaming.outer.fragment_alpha = 1;
  EXPECT_TRUE(messages(streaming, 1).empty());
  streaming.outer.fragments = 50;  // one fragment every step, no overlap
  streaming.outer.fragment_delay = 0;
  EXPECT_TRUE(messages(streaming, 1).empty());

  JobOptions delayed = validOptions();
  delayed.outer.algorithm = OuterAlgorithm::kDiLoCo;
  delayed.outer.delayed = true;
  EXPECT_TRUE(messages(delayed, 1).empty());
}

TEST(ValidateTest, OuterZero1NeedsRanksInsideAReplica) {
  JobOptions options = validOptions();
  options.parallel.zero1 = true;
  EXPECT_TRUE(messages(options, 4).empty());  // no outer optimizer: plain ZeRO-1
  options.outer.algorithm = OuterAlgorithm::kDiLoCo;
  EXPECT_EQ(messages(options, 4).size(), 1u);
  options.outer.replicas = 2;  // 2 ranks per replica to shard over
  EXPECT_TRUE(messages(options, 4).empty());
}

TEST(ValidateTest, ElasticRules) {
  JobOptions options = validOptions();
  options.elastic.policy = ElasticPolicy::kShrink;
  options.elastic.min_ranks = 2;
  EXPECT_TRUE(messages(options, 4).empty());
  options.elastic.min_ranks = 5;
  options.elastic.max_ranks = 3;
  EXPECT_EQ(messages(options, 4),
            (std::vector<std::string>{
                "elastic.min_ranks (5) exceeds the starting world size (4): the job could never run; lower it or "
                "start more ranks",
                "elastic.max_ranks (3) is below the starting world size (4): raise it, or 0 for the starting size"}));
  options.elastic.min_ranks = 1;
  options.elastic.max_ranks = 0;
  options.elastic.heartbeat_timeout_s = 0.5;
  EXPECT_THAT(messages(options, 4), testing::ElementsAre(testing::HasSubstr("must exceed elastic.heartbeat_interval_s")));
  options.elastic.heartbeat_timeout_s = 5;
  options.parallel.backend = CommBackend::kMpi;
  EXPECT_THAT(messages(options, 4), testing::Contains(testing::HasSubstr("elastic.policy needs parallel.backend GLOO")));
  options.parallel.backend = CommBackend::kGloo;
  options.outer.algorithm = OuterAlgorithm::kDiLoCo;
  options.outer.replicas = 2;
  EXPECT_TRUE(messages(options, 4).empty());
  options.parallel.zero1 = true;
  EXPECT_THAT(messages(options, 4),
              testing::ElementsAre(testing::HasSubstr("with an outer optimizer needs parallel.zero1: false")));
  options.parallel.zero1 = false;
  // Not elastic: none of this applies.
  options.elastic.policy = ElasticPolicy::kNone;
  options.elastic.min_ranks = 9;
  EXPECT_TRUE(messages(options, 4).empty());
}

TEST(ValidateTest, ContextRules) {
  JobOptions options = validOptions();
  options.model.max_seq_len = 4096;
  options.context.mode = ContextMode::kHdp;
  options.context.capacity = 1024;
  options.context.max_tokens = 4096;
  EXPECT_TRUE(messages(options, 4).empty());
  // 3 ranks: the largest aligned group is 2, which holds 2048 tokens.
  EXPECT_THAT(messages(options, 3),
              testing::Contains(testing::HasSubstr("exceeds the largest group of 2 rank(s) x context.capacity")));
  // Elastic: it must fit the pool at elastic.min_ranks.
  options.elastic.policy = ElasticPolicy::kShrink;
  options.elastic.min_ranks = 2;
  EXPECT_THAT(messages(options, 4), testing::ElementsAre(testing::HasSubstr("at elastic.min_ranks")));
  options.elastic.policy = ElasticPolicy::kNone;
  options.context.mode = ContextMode::kStatic;  // cp sized for max_tokens: 4
  EXPECT_TRUE(messages(options, 4).empty());
  EXPECT_THAT(messages(options, 2), testing::Contains(testing::HasSubstr("must be a power of two dividing the world")));
  options.context.cp = 2;
  EXPECT_THAT(messages(options, 4), testing::ElementsAre(testing::HasSubstr("exceeds context.cp x context.capacity")));
  options.context.cp = 0;
  options.context.max_tokens = 8192;
  EXPECT_THAT(messages(options, 8), testing::Contains(testing::HasSubstr("exceeds model.max_seq_len")));
  options.context.max_tokens = 4096;
  options.context.min_tokens = 3000;
  EXPECT_THAT(messages(options, 4), testing::Contains(testing::HasSubstr("must be >= 2 * context.min_tokens - 1")));
  options.context.min_tokens = 16;
  options.outer.algorithm = OuterAlgorithm::kDiLoCo;
  EXPECT_THAT(messages(options, 4), testing::Contains(testing::HasSubstr("with an outer optimizer is not supported")));
}

TEST(ValidateTest, GlobalBatchMustSplitEvenlyOverRanks) {
  JobOptions options = validOptions();
  options.train.global_batch = 10;
  options.train.micro_batch = 1;
  EXPECT_EQ(messages(options, 4),
            std::vector<std::string>{"train.global_batch (10) must be divisible by the world size (4)"});
  EXPECT_TRUE(messages(options, 2).empty());
  EXPECT_TRUE(messages(options, 5).empty());
}

TEST(ValidateTest, MicroBatchAbovePerRankBatchMeansOnePass) {
  JobOptions options = validOptions();  // global 16, micro 16
  for (int world : {2, 4, 8, 16}) {
    EXPECT_TRUE(messages(options, world).empty()) << "world " << world;
  }
  options.train.micro_batch = 3;  // per-rank 8 on 2 ranks
  EXPECT_EQ(messages(options, 2),
            std::vector<std::string>{
                "train.micro_batch (3) must divide the per-rank batch (train.global_batch / world size = 16 / 2 = 8): "
                "8 / 3 is not a whole number of accumulation steps; e.g. micro_batch 2 accumulates 4 micro-batches "
                "per step"});
  EXPECT_TRUE(messages(options, 8).empty());  // per-rank batch 2 < 3: one pass
}

TEST(ValidateTest, TensorParallelRules) {
  JobOptions options = validOptions();
  options.parallel.tp = 2;
  options.model.heads = 4;
  options.model.kv_heads = 2;
  options.model.ffn_dim = 64;
  options.model.dim = 64;
  EXPECT_TRUE(messages(options, 4).empty());
  options.parallel.dp = 2;  // the data-parallel size is world / tp
  EXPECT_TRUE(messages(options, 4).empty());
  EXPECT_EQ(messages(options, 8),
            std::vector<std::string>{"parallel.dp (2) must equal the world size / parallel.tp (4) or be -1"});
  options.parallel.dp = -1;
  options.train.global_batch = 12;
  EXPECT_EQ(messages(options, 3),
            std::vector<std::string>{"parallel.tp (2) must divide the world size (3): ranks form groups of tp "
                                     "consecutive ranks"});
  options.model.kv_heads = 1;
  EXPECT_EQ(messages(options, 2), std::vector<std::string>{"parallel.tp (2) must divide model.heads (4), the kv heads "
                                                           "(1) and model.ffn_dim (64): each rank holds 1/tp of them"});
  options.model.kv_heads = 2;
  options.parallel.zero1 = true;  // ZeRO-1 over the data-parallel ranks of each position
  EXPECT_TRUE(messages(options, 4).empty());
  options.parallel.zero1 = false;
  options.outer.algorithm = OuterAlgorithm::kDiLoCo;  // replicas of tensor-parallel groups
  EXPECT_TRUE(messages(options, 4).empty());
  options.outer.algorithm = OuterAlgorithm::kNone;
  options.elastic.policy = ElasticPolicy::kReplace;
  EXPECT_EQ(messages(options, 4),
            std::vector<std::string>{"parallel.tp > 1 with elastic.policy is not supported yet (a lost rank takes a "
                                     "shard no buddy holds); set parallel.tp: 1 or elastic.policy: NONE"});
  options.elastic.policy = ElasticPolicy::kNone;
  options.parallel.token_split_min_tokens = -1;
  EXPECT_EQ(messages(options, 2).size(), 1u);
  options.parallel.token_split_min_tokens = 0;
  for (const int64_t tp : {0, -1}) {  // reported, not a division by zero
    options.parallel.tp = tp;
    EXPECT_EQ(messages(options, 4), std::vector<std::string>{c10::str("parallel.tp (", tp, ") must be >= 1")});
  }
}

TEST(ValidateTest, DataParallelSizeMustMatchTheWorld) {
  JobOptions options = validOptions();
  options.parallel.dp = 4;
  EXPECT_EQ(messages(options, 2), std::vector<std::string>{"parallel.dp (4) must equal the world size (2) or be -1"});
  EXPECT_TRUE(messages(options, 4).empty());
}

TEST(ValidateTest, HugeBatchesStillValidateQuickly) {
  JobOptions options = validOptions();
  options.train.global_batch = std::numeric_limits<int64_t>::max() - 1;
  options.train.micro_batch = std::numeric_limits<int64_t>::max() / 4;
  const std::vector<std::string> found = messages(options, 2);
  ASSERT_EQ(found.size(), 1u);
  EXPECT_NE(found[0].find("e.g. micro_batch 1 accumulates"), std::string::npos) << found[0];
}

TEST(ValidateTest, ValidateThrowsEveryViolationAtOnce) {
  JobOptions options = validOptions();
  options.model.layers = 0;
  options.logging.log_every = 0;
  try {
    validate(options, 1);
    FAIL() << "no InputError";
  } catch (const InputError& e) {
    EXPECT_EQ(errorMessage(e), "model.layers (0) must be >= 1\nlogging.log_every (0) must be >= 1");
  }
  EXPECT_THROW(validate(validOptions(), 0), InputError);
}

TEST(ValidateTest, FormatPrefixesTheFirstFieldWithAnOrigin) {
  const std::vector<Violation> violations = {{{"model.heads", "model.dim"}, "pair"}, {{"data.seq_len"}, "single"}};
  EXPECT_EQ(formatViolations(violations, {}), "pair\nsingle");
  EXPECT_EQ(formatViolations(violations, {{"model.dim", "f:2:3"}, {"data.seq_len", "--set data.seq_len=1"}}),
            "f:2:3: pair\n--set data.seq_len=1: single");
  EXPECT_EQ(formatViolations(violations, {{"model.dim", "f:2:3"}, {"model.heads", "f:9:9"}}), "f:9:9: pair\nsingle");
}

}  // namespace
}  // namespace loom::config

#include "runtime/config/convert.h"

#include "runtime/config/field_names.h"
#include "runtime/core/error.h"

#include <c10/util/StringUtil.h>

namespace loom::config {
namespace {

// Option structs and config messages use the same field names (options.h is the
// schema's source of truth), so one macro per direction keeps them in step.
#define LOOM_COPY_PRESENT(from, to, name) \
  if ((from).has_##name()) {              \
    (to).name = (from).name();            \
  }
#define LOOM_COPY_TO_PROTO(from, to, name) (to).set_##name((from).name)

void enumViolation(const google::protobuf::FieldDescriptor& field, int number, std::vector<Violation>& violations) {
  const std::string path = c10::str(sectionLabel(*field.containing_type()), ".", field.name());
  const google::protobuf::EnumValueDescriptor* value = field.enum_type()->FindValueByNumber(number);
  violations.push_back({{path},
                        c10::str(path, " (", value != nullptr ? value->name() : std::to_string(number),
                                 ") must be one of ", validEnumNames(*field.enum_type()))});
}

void copyModel(const ModelConfig& from, ModelOptions& to) {
  LOOM_COPY_PRESENT(from, to, vocab_size);
  LOOM_COPY_PRESENT(from, to, dim);
  LOOM_COPY_PRESENT(from, to, layers);
  LOOM_COPY_PRESENT(from, to, heads);
  LOOM_COPY_PRESENT(from, to, kv_heads);
  LOOM_COPY_PRESENT(from, to, ffn_dim);
  LOOM_COPY_PRESENT(from, to, norm_eps);
  LOOM_COPY_PRESENT(from, to, rope_theta);
  LOOM_COPY_PRESENT(from, to, init_std);
  LOOM_COPY_PRESENT(from, to, max_seq_len);
}

void copyData(const DataConfig& from, DataOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, train_path);
  LOOM_COPY_PRESENT(from, to, val_path);
  LOOM_COPY_PRESENT(from, to, seq_len);
  if (from.has_order()) {
    switch (from.order()) {
      case DataConfig::SHUFFLED:
        to.order = SampleOrder::kShuffled;
        break;
      case DataConfig::SEQUENTIAL:
        to.order = SampleOrder::kSequential;
        break;
      default:
        enumViolation(*DataConfig::descriptor()->FindFieldByName("order"), from.order(), violations);
    }
  }
}

void copyTrain(const TrainConfig& from, TrainOptions& to) {
  LOOM_COPY_PRESENT(from, to, steps);
  LOOM_COPY_PRESENT(from, to, global_batch);
  LOOM_COPY_PRESENT(from, to, micro_batch);
  LOOM_COPY_PRESENT(from, to, seed);
  LOOM_COPY_PRESENT(from, to, threads);
  LOOM_COPY_PRESENT(from, to, out_dir);
  LOOM_COPY_PRESENT(from, to, checkpoint_every);
  LOOM_COPY_PRESENT(from, to, keep_checkpoints);
  LOOM_COPY_PRESENT(from, to, resume);
  LOOM_COPY_PRESENT(from, to, val_every);
  LOOM_COPY_PRESENT(from, to, val_batches);
  LOOM_COPY_PRESENT(from, to, grad_clip);
}

void copyParallel(const ParallelConfig& from, ParallelOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, dp);
  LOOM_COPY_PRESENT(from, to, bucket_mb);
  LOOM_COPY_PRESENT(from, to, zero1);
  LOOM_COPY_PRESENT(from, to, timeout_s);
  LOOM_COPY_PRESENT(from, to, tp);
  LOOM_COPY_PRESENT(from, to, sequence_parallel);
  LOOM_COPY_PRESENT(from, to, token_split_min_tokens);
  if (from.has_backend()) {
    switch (from.backend()) {
      case ParallelConfig::GLOO:
        to.backend = CommBackend::kGloo;
        break;
      case ParallelConfig::MPI:
        to.backend = CommBackend::kMpi;
        break;
      case ParallelConfig::NCCL:
        to.backend = CommBackend::kNccl;
        break;
      default:
        enumViolation(*ParallelConfig::descriptor()->FindFieldByName("backend"), from.backend(), violations);
    }
  }
}

void copyOptimizer(const OptimizerConfig& from, OptimizerOptions& to) {
  LOOM_COPY_PRESENT(from, to, lr);
  LOOM_COPY_PRESENT(from, to, min_lr);
  LOOM_COPY_PRESENT(from, to, warmup_steps);
  LOOM_COPY_PRESENT(from, to, beta1);
  LOOM_COPY_PRESENT(from, to, beta2);
  LOOM_COPY_PRESENT(from, to, eps);
  LOOM_COPY_PRESENT(from, to, weight_decay);
}

void copyOuter(const OuterConfig& from, OuterOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, sync_every);
  LOOM_COPY_PRESENT(from, to, lr);
  LOOM_COPY_PRESENT(from, to, momentum);
  LOOM_COPY_PRESENT(from, to, nesterov);
  LOOM_COPY_PRESENT(from, to, replicas);
  LOOM_COPY_PRESENT(from, to, fragments);
  LOOM_COPY_PRESENT(from, to, fragment_delay);
  LOOM_COPY_PRESENT(from, to, fragment_alpha);
  LOOM_COPY_PRESENT(from, to, delayed);
  LOOM_COPY_PRESENT(from, to, group_size);
  LOOM_COPY_PRESENT(from, to, consensus);
  LOOM_COPY_PRESENT(from, to, staleness_penalty);
  LOOM_COPY_PRESENT(from, to, clip);
  if (from.has_algorithm()) {
    switch (from.algorithm()) {
      case OuterConfig::NONE:
        to.algorithm = OuterAlgorithm::kNone;
        break;
      case OuterConfig::DILOCO:
        to.algorithm = OuterAlgorithm::kDiLoCo;
        break;
      case OuterConfig::NOLOCO:
        to.algorithm = OuterAlgorithm::kNoLoCo;
        break;
      case OuterConfig::CO2:
        to.algorithm = OuterAlgorithm::kCo2;
        break;
      default:
        enumViolation(*OuterConfig::descriptor()->FindFieldByName("algorithm"), from.algorithm(), violations);
    }
  }
  if (from.has_codec()) {
    switch (from.codec()) {
      case OuterConfig::FP32:
        to.codec = PseudoGradientCodec::kFp32;
        break;
      case OuterConfig::FP16:
        to.codec = PseudoGradientCodec::kFp16;
        break;
      case OuterConfig::BF16:
        to.codec = PseudoGradientCodec::kBf16;
        break;
      case OuterConfig::UINT8_MINMAX:
        to.codec = PseudoGradientCodec::kUint8MinMax;
        break;
      case OuterConfig::UINT8_LUT:
        to.codec = PseudoGradientCodec::kUint8Lut;
        break;
      default:
        enumViolation(*OuterConfig::descriptor()->FindFieldByName("codec"), from.codec(), violations);
    }
  }
}

void copyElastic(const ElasticConfig& from, ElasticOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, min_ranks);
  LOOM_COPY_PRESENT(from, to, max_ranks);
  LOOM_COPY_PRESENT(from, to, heartbeat_interval_s);
  LOOM_COPY_PRESENT(from, to, heartbeat_timeout_s);
  LOOM_COPY_PRESENT(from, to, rebuild_timeout_s);
  LOOM_COPY_PRESENT(from, to, poll_interval_s);
  LOOM_COPY_PRESENT(from, to, join_timeout_s);
  if (from.has_policy()) {
    switch (from.policy()) {
      case ElasticConfig::NONE:
        to.policy = ElasticPolicy::kNone;
        break;
      case ElasticConfig::REPLACE:
        to.policy = ElasticPolicy::kReplace;
        break;
      case ElasticConfig::SHRINK:
        to.policy = ElasticPolicy::kShrink;
        break;
      default:
        enumViolation(*ElasticConfig::descriptor()->FindFieldByName("policy"), from.policy(), violations);
    }
  }
}

void copyContext(const ContextConfig& from, ContextOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, cp);
  LOOM_COPY_PRESENT(from, to, capacity);
  LOOM_COPY_PRESENT(from, to, tokens_per_step);
  LOOM_COPY_PRESENT(from, to, median_tokens);
  LOOM_COPY_PRESENT(from, to, sigma);
  LOOM_COPY_PRESENT(from, to, min_tokens);
  LOOM_COPY_PRESENT(from, to, max_tokens);
  if (from.has_mode()) {
    switch (from.mode()) {
      case ContextConfig::NONE:
        to.mode = ContextMode::kNone;
        break;
      case ContextConfig::STATIC:
        to.mode = ContextMode::kStatic;
        break;
      case ContextConfig::HDP:
        to.mode = ContextMode::kHdp;
        break;
      default:
        enumViolation(*ContextConfig::descriptor()->FindFieldByName("mode"), from.mode(), violations);
    }
  }
}

void copyLogging(const LoggingConfig& from, LoggingOptions& to, std::vector<Violation>& violations) {
  LOOM_COPY_PRESENT(from, to, log_every);
  LOOM_COPY_PRESENT(from, to, peak_tflops);
  if (from.has_level()) {
    switch (from.level()) {
      case LoggingConfig::DEBUG:
        to.level = LogLevel::kDebug;
        break;
      case LoggingConfig::INFO:
        to.level = LogLevel::kInfo;
        break;
      case LoggingConfig::WARNING:
        to.level = LogLevel::kWarning;
        break;
      case LoggingConfig::ERROR:
        to.level = LogLevel::kError;
        break;
      default:
        enumViolation(*LoggingConfig::descriptor()->FindFieldByName("level"), from.level(), violations);
    }
  }
}

ParallelConfig::Backend toProtoBackend(CommBackend backend) {
  switch (backend) {
    case CommBackend::kGloo:
      return ParallelConfig::GLOO;
    case CommBackend::kMpi:
      return ParallelConfig::MPI;
    case CommBackend::kNccl:
      return ParallelConfig::NCCL;
  }
  LOOM_CHECK(false, "unknown CommBackend ", static_cast<int>(backend));
}

OuterConfig::Algorithm toProtoAlgorithm(OuterAlgorithm algorithm) {
  switch (algorithm) {
    case OuterAlgorithm::kNone:
      return OuterConfig::NONE;
    case OuterAlgorithm::kDiLoCo:
      return OuterConfig::DILOCO;
    case OuterAlgorithm::kNoLoCo:
      return OuterConfig::NOLOCO;
    case OuterAlgorithm::kCo2:
      return OuterConfig::CO2;
  }
  LOOM_CHECK(false, "unknown OuterAlgorithm ", static_cast<int>(algorithm));
}

OuterConfig::Codec toProtoCodec(PseudoGradientCodec codec) {
  switch (codec) {
    case PseudoGradientCodec::kFp32:
      return OuterConfig::FP32;
    case PseudoGradientCodec::kFp16:
      return OuterConfig::FP16;
    case PseudoGradientCodec::kBf16:
      return OuterConfig::BF16;
    case PseudoGradientCodec::kUint8MinMax:
      return OuterConfig::UINT8_MINMAX;
    case PseudoGradientCodec::kUint8Lut:
      return OuterConfig::UINT8_LUT;
  }
  LOOM_CHECK(false, "unknown PseudoGradientCodec ", static_cast<int>(codec));
}

DataConfig::Order toProtoOrder(SampleOrder order) {
  return order == SampleOrder::kShuffled ? DataConfig::SHUFFLED : DataConfig::SEQUENTIAL;
}

ElasticConfig::Policy toProtoPolicy(ElasticPolicy policy) {
  switch (policy) {
    case ElasticPolicy::kNone:
      return ElasticConfig::NONE;
    case ElasticPolicy::kReplace:
      return ElasticConfig::REPLACE;
    case ElasticPolicy::kShrink:
      return ElasticConfig::SHRINK;
  }
  LOOM_CHECK(false, "unknown ElasticPolicy ", static_cast<int>(policy));
}

ContextConfig::Mode toProtoContextMode(ContextMode mode) {
  switch (mode) {
    case ContextMode::kNone:
      return ContextConfig::NONE;
    case ContextMode::kStatic:
      return ContextConfig::STATIC;
    case ContextMode::kHdp:
      return ContextConfig::HDP;
  }
  LOOM_CHECK(false, "unknown ContextMode ", static_cast<int>(mode));
}

LoggingConfig::Level toProtoLevel(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return LoggingConfig::DEBUG;
    case LogLevel::kInfo:
      return LoggingConfig::INFO;
    case LogLevel::kWarning:
      return LoggingConfig::WARNING;
    case LogLevel::kError:
      return LoggingConfig::ERROR;
  }
  LOOM_CHECK(false, "unknown LogLevel ", static_cast<int>(level));
}

}  // namespace

JobOptions fromProto(const LoomConfig& config, std::vector<Violation>& violations) {
  JobOptions options;
  copyModel(config.model(), options.model);
  copyData(config.data(), options.data, violations);
  copyTrain(config.train(), options.train);
  copyParallel(config.parallel(), options.parallel, violations);
  copyOptimizer(config.optimizer(), options.optimizer);
  copyOuter(config.outer(), options.outer, violations);
  copyElastic(config.elastic(), options.elastic, violations);
  copyContext(config.context(), options.context, violations);
  copyLogging(config.logging(), options.logging, violations);
  return options;
}

LoomConfig toProto(const JobOptions& options) {
  LoomConfig config;
  const ModelOptions& m = options.model;
  ModelConfig& model = *config.mutable_model();
  LOOM_COPY_TO_PROTO(m, model, vocab_size);
  LOOM_COPY_TO_PROTO(m, model, dim);
  LOOM_COPY_TO_PROTO(m, model, layers);
  LOOM_COPY_TO_PROTO(m, model, heads);
  LOOM_COPY_TO_PROTO(m, model, kv_heads);
  LOOM_COPY_TO_PROTO(m, model, ffn_dim);
  LOOM_COPY_TO_PROTO(m, model, norm_eps);
  LOOM_COPY_TO_PROTO(m, model, rope_theta);
  LOOM_COPY_TO_PROTO(m, model, init_std);
  LOOM_COPY_TO_PROTO(m, model, max_seq_len);

  const DataOptions& d = options.data;
  DataConfig& data = *config.mutable_data();
  LOOM_COPY_TO_PROTO(d, data, train_path);
  LOOM_COPY_TO_PROTO(d, data, val_path);
  LOOM_COPY_TO_PROTO(d, data, seq_len);
  data.set_order(toProtoOrder(d.order));

  const TrainOptions& t = options.train;
  TrainConfig& train = *config.mutable_train();
  LOOM_COPY_TO_PROTO(t, train, steps);
  LOOM_COPY_TO_PROTO(t, train, global_batch);
  LOOM_COPY_TO_PROTO(t, train, micro_batch);
  LOOM_COPY_TO_PROTO(t, train, seed);
  LOOM_COPY_TO_PROTO(t, train, threads);
  LOOM_COPY_TO_PROTO(t, train, out_dir);
  LOOM_COPY_TO_PROTO(t, train, checkpoint_every);
  LOOM_COPY_TO_PROTO(t, train, keep_checkpoints);
  LOOM_COPY_TO_PROTO(t, train, resume);
  LOOM_COPY_TO_PROTO(t, train, val_every);
  LOOM_COPY_TO_PROTO(t, train, val_batches);
  LOOM_COPY_TO_PROTO(t, train, grad_clip);

  ParallelConfig& parallel = *config.mutable_parallel();
  LOOM_COPY_TO_PROTO(options.parallel, parallel, dp);
  parallel.set_backend(toProtoBackend(options.parallel.backend));
  LOOM_COPY_TO_PROTO(options.parallel, parallel, bucket_mb);
  LOOM_COPY_TO_PROTO(options.parallel, parallel, zero1);
  LOOM_COPY_TO_PROTO(options.parallel, parallel, timeout_s);
  LOOM_COPY_TO_PROTO(options.parallel, parallel, tp);
  LOOM_COPY_TO_PROTO(options.parallel, parallel, sequence_parallel);
  LOOM_COPY_TO_PROTO(options.parallel, parallel, token_split_min_tokens);

  const OptimizerOptions& o = options.optimizer;
  OptimizerConfig& optimizer = *config.mutable_optimizer();
  LOOM_COPY_TO_PROTO(o, optimizer, lr);
  LOOM_COPY_TO_PROTO(o, optimizer, min_lr);
  LOOM_COPY_TO_PROTO(o, optimizer, warmup_steps);
  LOOM_COPY_TO_PROTO(o, optimizer, beta1);
  LOOM_COPY_TO_PROTO(o, optimizer, beta2);
  LOOM_COPY_TO_PROTO(o, optimizer, eps);
  LOOM_COPY_TO_PROTO(o, optimizer, weight_decay);

  OuterConfig& outer = *config.mutable_outer();
  outer.set_algorithm(toProtoAlgorithm(options.outer.algorithm));
  LOOM_COPY_TO_PROTO(options.outer, outer, sync_every);
  LOOM_COPY_TO_PROTO(options.outer, outer, lr);
  LOOM_COPY_TO_PROTO(options.outer, outer, momentum);
  LOOM_COPY_TO_PROTO(options.outer, outer, nesterov);
  outer.set_codec(toProtoCodec(options.outer.codec));
  LOOM_COPY_TO_PROTO(options.outer, outer, replicas);
  LOOM_COPY_TO_PROTO(options.outer, outer, fragments);
  LOOM_COPY_TO_PROTO(options.outer, outer, fragment_delay);
  LOOM_COPY_TO_PROTO(options.outer, outer, fragment_alpha);
  LOOM_COPY_TO_PROTO(options.outer, outer, delayed);
  LOOM_COPY_TO_PROTO(options.outer, outer, group_size);
  LOOM_COPY_TO_PROTO(options.outer, outer, consensus);
  LOOM_COPY_TO_PROTO(options.outer, outer, staleness_penalty);
  LOOM_COPY_TO_PROTO(options.outer, outer, clip);

  const ElasticOptions& e = options.elastic;
  ElasticConfig& elastic = *config.mutable_elastic();
  elastic.set_policy(toProtoPolicy(e.policy));
  LOOM_COPY_TO_PROTO(e, elastic, min_ranks);
  LOOM_COPY_TO_PROTO(e, elastic, max_ranks);
  LOOM_COPY_TO_PROTO(e, elastic, heartbeat_interval_s);
  LOOM_COPY_TO_PROTO(e, elastic, heartbeat_timeout_s);
  LOOM_COPY_TO_PROTO(e, elastic, rebuild_timeout_s);
  LOOM_COPY_TO_PROTO(e, elastic, poll_interval_s);
  LOOM_COPY_TO_PROTO(e, elastic, join_timeout_s);

  const ContextOptions& c = options.context;
  ContextConfig& context = *config.mutable_context();
  context.set_mode(toProtoContextMode(c.mode));
  LOOM_COPY_TO_PROTO(c, context, cp);
  LOOM_COPY_TO_PROTO(c, context, capacity);
  LOOM_COPY_TO_PROTO(c, context, tokens_per_step);
  LOOM_COPY_TO_PROTO(c, context, median_tokens);
  LOOM_COPY_TO_PROTO(c, context, sigma);
  LOOM_COPY_TO_PROTO(c, context, min_tokens);
  LOOM_COPY_TO_PROTO(c, context, max_tokens);

  const LoggingOptions& l = options.logging;
  LoggingConfig& logging = *config.mutable_logging();
  LOOM_COPY_TO_PROTO(l, logging, log_every);
  logging.set_level(toProtoLevel(l.level));
  LOOM_COPY_TO_PROTO(l, logging, peak_tflops);
  return config;
}

#undef LOOM_COPY_PRESENT
#undef LOOM_COPY_TO_PROTO

}  // namespace loom::config

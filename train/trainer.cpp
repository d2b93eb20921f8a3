#include "train/trainer.h"

#include "model/init.h"
#include "optim/lr_schedule.h"
#include "runtime/core/error.h"
#include "runtime/core/file_util.h"
#include "runtime/core/system_info.h"
#include "train/checkpoint/safetensors.h"
#include "train/metrics.h"
#include "train/metrics_log.h"

#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <c10/core/GradMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <map>

namespace loom::train {
namespace {

using Clock = std::chrono::steady_clock;

double msSince(Clock::time_point start) {
  return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

std::string joinPath(const std::string& dir, const std::string& name) {
  return (std::filesystem::path(dir) / name).string();
}

// Opens a shard and names the config field in any error about it.
std::shared_ptr<const data::TokenShard> openShard(const std::string& path, const std::string& field,
                                                  int64_t vocab_size) {
  try {
    return data::TokenShard::open(path, vocab_size);
  } catch (const InputError& e) {
    LOOM_THROW(InputError, field, ": ", e.what_without_backtrace());
  }
}

// "2" when every replica has 2 ranks, "2+1" when an elastic job's differ.
std::string describeSizes(const std::vector<int>& sizes) {
  if (std::all_of(sizes.begin(), sizes.end(), [&](int n) { return n == sizes.front(); })) {
    return std::to_string(sizes.front());
  }
  std::string out;
  for (int n : sizes) out += (out.empty() ? "" : "+") + std::to_string(n);
  return out;
}

}  // namespace

Trainer::Trainer(TrainerOptions opts, dist::Communicator& comm, const Logger& log)
    : Trainer(std::move(opts), &comm, nullptr, log) {}

Trainer::Trainer(TrainerOptions opts, elastic::ElasticWorld& world, const Logger& log)
    : Trainer(std::move(opts), &world.main(), &world, log) {}

Trainer::~Trainer() {
  // The session's replication thread uses the optimizer's snapshot, not the
  // optimizer: it only has to end before the world's communicators go.
  session_.reset();
}

Trainer::Trainer(TrainerOptions opts, dist::Communicator* comm, elastic::ElasticWorld* world, const Logger& log)
    : opts_(std::move(opts)),
      comm_(comm),
      world_comm_(comm),
      elastic_(world),
      faults_(FaultInjector::fromEnvironment(world != nullptr ? world->id() : comm->rank())),
      log_(log),
      generator_(at::make_generator<at::CPUGeneratorImpl>(opts_.job.train.seed)),
      checkpoints_(joinPath(opts_.job.train.out_dir, "checkpoints"), opts_.job.train.keep_checkpoints) {
  const JobOptions& job = opts_.job;
  // Inputs first: nothing is written until every input has been checked.
  train_shard_ = openShard(job.data.train_path, "data.train_path", job.model.vocab_size);
  if (!job.data.val_path.empty()) {
    val_shard_ = openShard(job.data.val_path, "data.val_path", job.model.vocab_size);
  }
  if (job.context.documents()) {
    data::DocumentOptions docs;
    docs.lognormal_mu = std::log(job.context.median_tokens);
    docs.lognormal_sigma = job.context.sigma;
    docs.min_tokens = job.context.min_tokens;
    docs.max_tokens = job.context.max_tokens;
    docs.tokens_per_step = job.context.tokens_per_step;
    docs.seed = job.train.seed;
    try {
      documents_ = std::make_unique<data::DocumentSampler>(train_shard_, docs);
    } catch (const InputError& e) {
      LOOM_THROW(InputError, "context (document mode) over data.train_path: ", e.what_without_backtrace());
    }
  }
  if (job.parallel.tp > 1) formTensorParallel();
  replica_comm_ = comm_;
  // A replacement learns its replica from the members (applyGenerationChange).
  if (job.outer.algorithm != OuterAlgorithm::kNone && !joinedLate()) formReplicas();

  model_ = model::Llama(job.model);
  model::initializeParameters(*model_, generator_);
  if (!opts_.init_from.empty()) {
    checkpoint::loadSafetensorsInto(opts_.init_from, model_->namedParameters(), "--init-from");
  }

  ensureWritableDir(job.train.out_dir, "train.out_dir");
  std::string optimizer_state;
  std::optional<std::string> resumed;
  if (job.train.resume) resumed = checkpoints_.latest();
  // A replacement joining a running elastic job receives everything from the members.
  if (joinedLate()) {
    session_ = std::make_unique<ElasticSession>(*elastic_, job.parallel.zero1, log_);
    applyGenerationChange(elastic_->entry());
    return;
  }
  loader_ = std::make_unique<data::DataLoader>(train_shard_, loaderOptions());
  if (resumed) optimizer_state = resumeFrom(*resumed);
  // Every rank starts from rank 0's weights, whatever each read or drew.
  for (at::Tensor& p : model_->parameters()) {
    c10::NoGradGuard no_grad;
    comm_->broadcast(p, 0)->wait();
  }
  if (tensor_parallel_) shardModel();
  // Replicas of an outer optimizer continue from their own weights and state.
  checkpoint::NamedTensors replica_state;
  if (resumed && job.outer.algorithm != OuterAlgorithm::kNone) replica_state = loadReplicaState(*resumed);

  bindCommunicator();
  if (job.outer.algorithm != OuterAlgorithm::kNone) makeOuterOptimizer();
  if (!replica_state.empty()) {
    checkpoint::NamedTensors inner_state;
    checkpoint::NamedTensors outer_state;
    for (auto& [name, t] : replica_state) {
      if (name.rfind("optimizer.", 0) == 0) inner_state.emplace_back(name.substr(10), t);
      if (name.rfind("outer.", 0) == 0) outer_state.emplace_back(name, t);
    }
    optimizer_->loadState(inner_state, step_);
    outer_->loadState(localOuterState(outer_state));
  } else if (!optimizer_state.empty()) {
    optimizer_->loadState(localShards(checkpoint::readSafetensors(optimizer_state)), step_);
  }
  if (elastic_ != nullptr) {
    // The state every member starts from, so a loss in the first step is recoverable.
    session_ = std::make_unique<ElasticSession>(*elastic_, job.parallel.zero1, log_);
    session_->captureCommitted(step_, liveState());
    session_->awaitReplication();
  }
}

bool Trainer::joinedLate() const { return elastic_ != nullptr && elastic_->entry().current.generation > 0; }

void Trainer::bindCommunicator() {
  const JobOptions& job = opts_.job;
  const ParallelOptions& par = job.parallel;
  const data::LoaderOptions data = loaderOptions();
  if (loader_ == nullptr || loader_->options().rank != data.rank || loader_->options().world_size != data.world_size ||
      loader_->options().group != data.group || loader_->options().groups != data.groups) {
    const int64_t cursor = loader_ != nullptr ? loader_->cursor() : 0;
    loader_ = std::make_unique<data::DataLoader>(train_shard_, data);
    loader_->seek(cursor);
  }
  if (job.outer.algorithm == OuterAlgorithm::kNone) replica_comm_ = comm_;
  if (documents_) {
    // Context-parallel groups of the current world; an elastic world owns and retires them.
    plans_agreed_ = false;
    groups_.reset();
    groups_ = elastic_ != nullptr
                  ? std::make_unique<parallel::GroupCache>(
                        *comm_, [this](const std::vector<int>& ranks) -> dist::Communicator& {
                          return elastic_->split(ranks);
                        })
                  : std::make_unique<parallel::GroupCache>(*comm_);
  }
  // The optimizer refers to the reducer, which refers to the communicator.
  optimizer_.reset();
  reducer_.reset();
  reducer_ = std::make_unique<parallel::GradientReducer>(
      model_->parameters(), *replica_comm_,
      parallel::ReducerOptions{static_cast<int64_t>(par.bucket_mb * (1 << 20)), par.zero1});
  optimizer_ = par.zero1 ? optim::makeShardedAdamW(model_->namedParameters(), *reducer_, job.optimizer)
                         : optim::makeReplicatedAdamW(model_->namedParameters(), job.optimizer);
}

data::LoaderOptions Trainer::loaderOptions() const {
  const JobOptions& job = opts_.job;
  data::LoaderOptions data{job.data.seq_len, job.data.order, job.train.seed, replica_comm_->rank(),
                           replica_comm_->size(), job.train.global_batch, job.train.microBatchPerRank(comm_->size())};
  data.group = replica_;
  data.groups = replicas_;
  return data;
}

void Trainer::makeOuterOptimizer() {
  // An elastic job's replicas may differ in size: leaders exchange and fan the averages out.
  const optim::outer::OuterComms comms{outer_comm_, elastic_ != nullptr ? replica_comm_ : nullptr};
  outer_ = optim::outer::makeOuterOptimizer(model_->namedParameters(), comms, opts_.job.outer, opts_.job.train.seed,
                                            wholeParameterSizes());
}

void Trainer::formReplicas() {
  const JobOptions& job = opts_.job;
  const int world = comm_->size();
  replicas_ = job.outer.replicas > 0 ? static_cast<int>(job.outer.replicas) : world;
  // The config was validated for this world size (config::validate): replicas divides it.
  LOOM_CHECK(world % replicas_ == 0, "outer.replicas ", replicas_, " does not divide the world size ", world);
  if (elastic_ != nullptr) {
    formElasticReplicas(initialReplicas(world, replicas_));
    return;
  }
  const int per_replica = world / replicas_;
  replica_ = comm_->rank() / per_replica;
  replica_sizes_.assign(static_cast<size_t>(replicas_), per_replica);
  const int position = comm_->rank() % per_replica;
  const dist::CommunicatorOptions single{comm_->options().timeout};
  // Every rank splits its replica first, then its outer group: the same order everywhere.
  std::vector<int> replica_ranks;
  for (int i = 0; i < per_replica; ++i) replica_ranks.push_back(replica_ * per_replica + i);
  owned_replica_comm_ = per_replica > 1 ? comm_->split(replica_ranks) : dist::makeSelfCommunicator(single);
  replica_comm_ = owned_replica_comm_.get();
  std::vector<int> outer_ranks;
  for (int r = 0; r < replicas_; ++r) outer_ranks.push_back(r * per_replica + position);
  owned_outer_comm_ = replicas_ > 1 ? comm_->split(outer_ranks) : dist::makeSelfCommunicator(single);
  outer_comm_ = owned_outer_comm_.get();
}

int64_t Trainer::bytesSent() const {
  int64_t bytes = comm_->bytesSent() + (owned_tp_comm_ ? owned_tp_comm_->bytesSent() : 0);
  if (replica_comm_ != comm_) bytes += replica_comm_->bytesSent();
  if (outer_comm_) bytes += outer_comm_->bytesSent();
  return bytes;
}

int64_t Trainer::bytesReceived() const {
  int64_t bytes = comm_->bytesReceived() + (owned_tp_comm_ ? owned_tp_comm_->bytesReceived() : 0);
  if (replica_comm_ != comm_) bytes += replica_comm_->bytesReceived();
  if (outer_comm_) bytes += outer_comm_->bytesReceived();
  return bytes;
}

double Trainer::reduceScalar(double value, dist::ReduceOp op) {
  return reduceScalarOver(*comm_, value, op);
}

double Trainer::reduceScalarOver(dist::Communicator& comm, double value, dist::ReduceOp op) {
  at::Tensor t = at::full({1}, value, at::kDouble);
  comm.allReduce(t, op)->wait();
  return t.item<double>();
}

Trainer::StepResult Trainer::trainStep(double lr) {
  const JobOptions& job = opts_.job;
  const int64_t seq_len = job.data.seq_len;
  // A replica's batch is its ranks' share of the global batch (all of it without an outer optimizer).
  const auto replica_tokens =
      static_cast<double>(documents_ ? job.context.tokens_per_step : loader_->groupCount() * seq_len);
  reducer_->zeroGrad();

  // Each micro-batch adds d(sum of its token losses)/d(params) / global_tokens;
  // the last backward reduces gradients over ranks bucket by bucket as they
  // become final, so every rank ends with the gradient of the global mean loss.
  int64_t first_sample = loader_->cursor() + loader_->rankOffset();
  int64_t samples = loader_->rankCount();
  double sample_sum = static_cast<double>(samples) * (2.0 * static_cast<double>(first_sample) +
                                                      static_cast<double>(samples) - 1) / 2;
  double local_loss_sum = 0;
  // The tensor-parallel stream's time this step (validation's forwards ran in between).
  if (tensor_parallel_) tensor_parallel_->stream().resetStats();
  double tp_exposed_forward_ms = 0;
  if (documents_) {
    // Documents: samples are the step's documents, counted once each by the rank leading them.
    faults_.at(FaultPhase::kForward, step_ + 1);
    const HdpRankResult result = documentStep();
    local_loss_sum = result.loss_sum;
    samples = result.sequences;
    sample_sum = result.sequence_sum;
    tp_exposed_forward_ms = result.tp_exposed_forward_ms;
    reducer_->armForLastBackward();  // one reduction after every backward of the step
  } else {
    const std::vector<at::Tensor> micro_batches = loader_->nextStep();
    faults_.at(FaultPhase::kForward, step_ + 1);
    for (size_t i = 0; i < micro_batches.size(); ++i) {
      const at::Tensor& batch = micro_batches[i];
      if (i + 1 == micro_batches.size()) reducer_->armForLastBackward();
      const double exposed_before = tpExposedMs();
      const at::Tensor logits = forward(batch.narrow(1, 0, seq_len));
      const at::Tensor loss_sum = model::crossEntropySum(logits, batch.narrow(1, 1, seq_len));
      local_loss_sum += loss_sum.item<double>();
      tp_exposed_forward_ms += tpExposedMs() - exposed_before;
      loss_sum.div(replica_tokens).backward();
    }
  }
  faults_.at(FaultPhase::kAllReduce, step_ + 1);
  const parallel::ReduceStats stats = reducer_->finish();

  StepResult result;
  if (elastic_ != nullptr) {
    // The commit vote: a rank reaches it only with its gradients reduced and
    // the previous step's shard copies in place; it carries the loss, which
    // samples were computed (every sample of the step exactly once) and
    // whether replacements wait to join. A failure before or during it
    // throws, and recovery rolls every rank back to the last committed step.
    session_->awaitReplication();
    at::Tensor vote = at::zeros({4}, at::kDouble);
    auto* v = vote.data_ptr<double>();
    // With replicas: each replica's mean loss, summed over replicas.
    v[0] = outer_ ? local_loss_sum / replica_tokens : local_loss_sum;
    v[1] = static_cast<double>(samples);
    v[2] = sample_sum;
    v[3] = elastic_->joinersWaiting() ? 1.0 : 0.0;
    comm_->allReduce(vote, dist::ReduceOp::kSum)->wait();
    result.loss = outer_ ? v[0] / replicas_ : v[0] / replica_tokens;
    step_samples_ = static_cast<int64_t>(v[1]);
    step_sample_sum_ = v[2];
    joiners_voted_ = v[3] > 0;
    faults_.at(FaultPhase::kCommit, step_ + 1);
  } else {
    result.loss = reduceScalarOver(*replica_comm_, local_loss_sum) / replica_tokens;
  }
  result.comm_ms = stats.comm_ms;
  result.exposed_comm_ms = stats.exposed_ms;
  result.grad_norm = clipGradNorm(job.train.grad_clip);
  if (tensor_parallel_) {
    const parallel::CommStreamStats tp_stats = tensor_parallel_->stream().stats();
    result.comm_ms += tp_stats.busy_ms;
    result.exposed_comm_ms += tp_stats.exposed_ms;
    result.tp = StepMetrics::TensorParallel{tp_stats.busy_ms, tp_stats.exposed_ms, tp_exposed_forward_ms};
  }
  optimizer_->step(lr);
  faults_.at(FaultPhase::kOuter, step_ + 1);
  if (outer_) {
    const optim::outer::OuterStats before = outer_->stats();
    outer_->afterInnerStep(step_ + 1);
    // The final weights hold the last average of a delayed outer optimizer too.
    if (step_ + 1 == opts_.job.train.steps) outer_->finish();
    result.comm_ms += outer_->stats().comm_ms - before.comm_ms;
    result.exposed_comm_ms += outer_->stats().exposed_ms - before.exposed_ms;
  }
  return result;
}

double Trainer::validationLoss() {
  LOOM_CHECK(val_shard_ != nullptr, "validationLoss() needs data.val_path");
  const JobOptions& job = opts_.job;
  const int64_t seq_len = job.data.seq_len;
  const int64_t micro = job.train.microBatchPerRank(comm_->size());
  // Sequential windows from the start of the shard, split over ranks.
  const data::DataLoader val_loader(
      val_shard_, data::LoaderOptions{seq_len, SampleOrder::kSequential, job.train.seed, comm_->rank(), comm_->size(),
                                      micro * comm_->size(), micro});
  c10::NoGradGuard no_grad;
  double loss_sum = 0;
  for (int64_t b = 0; b < job.train.val_batches; ++b) {
    const int64_t first = (b * comm_->size() + comm_->rank()) * micro;
    const at::Tensor batch = val_loader.samples(first, micro);
    loss_sum +=
        model::crossEntropySum(forward(batch.narrow(1, 0, seq_len)), batch.narrow(1, 1, seq_len)).item<double>();
  }
  const double tokens = static_cast<double>(job.train.val_batches * micro * comm_->size() * seq_len);
  return reduceScalar(loss_sum) / tokens;
}

std::string Trainer::layoutName() const {
  if (outer_) return c10::str("replicas=", replicas_, " dp=", describeSizes(replica_sizes_));
  const std::string dp = "dp=" + std::to_string(comm_->size());
  return tensor_parallel_ ? c10::str(dp, " tp=", tensor_parallel_->size()) : dp;
}

bool Trainer::isLoggingStep(int64_t step) const {
  return step == 1 || step % opts_.job.logging.log_every == 0 || step == opts_.job.train.steps;
}

RunSummary Trainer::run(const std::function<bool()>& stop_requested) {
  const JobOptions& job = opts_.job;
  const bool lead = leads();
  const int64_t total = job.train.steps;
  // A replacement joins a run in progress: the set-up collectives below are behind the members.
  const bool joined_late = joinedLate();
  RunSummary summary;
  summary.first_step = step_;

  if (lead) {
    log_.raw("effective config:\n" + opts_.config_text);
    writeFileAtomically(joinPath(job.train.out_dir, "config.pbtxt"), opts_.config_text);
    metrics_ = std::make_unique<MetricsLog>(joinPath(job.train.out_dir, "metrics.jsonl"), step_);
  }
  flops_per_token_ = model::trainingFlopsPerToken(job.model, job.data.seq_len);
  const std::string blas = loadedBlasLibraries();
  peak_flops_ = job.logging.peak_tflops > 0 ? job.logging.peak_tflops * 1e12 : measurePeakFlops();
  if (lead) {
    log_.info("model ", model::parameterCount(job.model), " parameters, ", flops_per_token_ / 1e6,
              " MFLOP/token; MFU peak ", peak_flops_ / 1e9, " GFLOP/s per rank (",
              job.logging.peak_tflops > 0 ? "logging.peak_tflops" : "measured float32 GEMM", "); BLAS ", blas);
  }
  if (!joined_late) {
    const double state_bytes = static_cast<double>(optimizer_->stateBytes() + (outer_ ? outer_->stateBytes() : 0));
    const double total_state = reduceScalar(state_bytes);
    const double max_state = reduceScalar(state_bytes, dist::ReduceOp::kMax);
    if (lead) {
      log_.info("optimizer state: ", max_state / (1 << 20), " MiB on the largest rank, ", total_state / (1 << 20),
                " MiB over ", comm_->size(), " rank(s)", job.parallel.zero1 ? " (ZeRO-1)" : "",
                outer_ ? " including the outer optimizer's" : "");
    }
  }
  if (tensor_parallel_ && lead) {
    const parallel::TensorParallelOptions& tp = tensor_parallel_->options();
    log_.info("tensor parallel: ", layoutName(), ", ", tp.sequence_parallel ? "sequence parallel" : "all-reduce",
              " sublayer ends, token splitting ",
              tp.split_min_tokens > 0 ? c10::str("from ", tp.split_min_tokens, " tokens per micro-batch") : "off");
  }
  if (outer_ && lead) {
    log_.info("outer optimizer: ", replicas_, " replica(s) of ", comm_->size() / replicas_, " rank(s), sync every ",
              job.outer.sync_every, " steps; losses are the mean over replicas");
    if (total % job.outer.sync_every != 0) {
      log_.warning("train.steps (", total, ") is not a multiple of outer.sync_every (", job.outer.sync_every,
                   "): the last ", total % job.outer.sync_every, " steps stay local to each replica");
    }
  }
  if (blas.find("openblas") == std::string::npos) {
    log_.warning("libtorch is not using OpenBLAS (", blas, "): on Debian the reference BLAS is ~20x slower; ",
                 "install libopenblas0-pthread (scripts/install_deps.sh does)");
  }

  if (step_ >= total && lead) {
    log_.info("the run in ", job.train.out_dir, " is already complete (", step_, " of train.steps ", total,
              " steps): raise train.steps to train further, or set train.out_dir to start a new run");
  }
  if (step_ == 0 && val_shard_ && !joined_late) {
    const double val = validationLoss();
    summary.val_losses.emplace_back(0, val);
    if (lead) {
      log_.info("validation loss before training: ", val);
      metrics_->append(nlohmann::json{{"step", 0}, {"val_loss", val}}.dump());
    }
  }

  bool stop = false;
  while (step_ < total && !stop) {
    if (elastic_ == nullptr) {
      iterate(summary, stop_requested, &stop);
      continue;
    }
    try {
      iterate(summary, stop_requested, &stop);
    } catch (const PeerLostError& e) {
      recoverFromFailure(e);
      forgetStepsAfter(step_, summary);
    } catch (const std::exception& e) {
      // Inside backward a lost peer may surface as another error type.
      if (!elastic_->aborted()) throw;
      recoverFromFailure(e);
      forgetStepsAfter(step_, summary);
    }
  }
  summary.last_step = step_;
  summary.stopped_early = step_ < total;
  if (!summary.stopped_early) {
    const checkpoint::NamedTensors weights = wholeTensors(model_->namedParameters());
    if (leads()) {
      summary.final_weights = joinPath(job.train.out_dir, "model.safetensors");
      checkpoint::writeSafetensors(summary.final_weights, weights, {{"format", "pt"}});
      log_.info("final weights ", summary.final_weights);
    }
  }
  if (elastic_ != nullptr) elastic_->markFinished();
  log_.info("peak RSS ", peakRssBytes() / (1 << 20), " MiB");
  return summary;
}

void Trainer::iterate(RunSummary& summary, const std::function<bool()>& stop_requested, bool* stop) {
  const JobOptions& job = opts_.job;
  const int64_t total = job.train.steps;
  const int64_t global_tokens = tokensPerStep();
  const double lr = optim::learningRate(job.optimizer, step_, total);
  const auto start = Clock::now();
  comm_->setStep(step_ + 1);
  const StepResult result = trainStep(lr);
  ++step_;
  tokens_ += global_tokens;
  if (session_) {
    session_->captureCommitted(step_, liveState());
    faults_.at(FaultPhase::kSnapshot, step_);
  }
  const double step_ms = msSince(start);
  summary.losses.push_back(result.loss);

  StepMetrics m;
  m.step = step_;
  m.total_steps = total;
  const bool val_due =
      val_shard_ && ((job.train.val_every > 0 && step_ % job.train.val_every == 0) || step_ == total);
  // With an outer optimizer replicas differ; they average their losses only
  // on reported steps, so replicas exchange nothing between syncs but these.
  const bool logged = isLoggingStep(step_) || val_due;
  // An elastic job's vote already averaged the replicas' losses.
  m.loss = outer_ && logged && elastic_ == nullptr ? reduceScalar(result.loss) / comm_->size() : result.loss;
  m.lr = lr;
  m.grad_norm = result.grad_norm;
  m.tokens = tokens_;
  m.tokens_per_s = static_cast<double>(global_tokens) / (step_ms / 1e3);
  m.step_ms = step_ms;
  m.comm_ms = result.comm_ms;
  m.exposed_comm_ms = result.exposed_comm_ms;
  m.tp = result.tp;
  m.mfu = flops_per_token_ * m.tokens_per_s / (peak_flops_ * world_comm_->size());
  m.world = world_comm_->size();
  m.layout = layoutName();
  m.bytes_tx = bytesSent();
  m.bytes_rx = bytesReceived();
  m.time = unixSeconds();
  if (session_) {
    m.elastic = StepMetrics::Elastic{elastic_->membership().generation, step_samples_, step_sample_sum_,
                                     session_->lastCaptureMs()};
  }
  if (val_due) {
    m.val_loss = validationLoss();
    summary.val_losses.emplace_back(step_, *m.val_loss);
  }
  if (logged && metrics_) {
    log_.info(progressLine(m));
    metrics_->append(toJsonLine(m));
  }

  // Every rank must stop at the same step: agree on the request (replicas of
  // an outer optimizer on logged steps only).
  if (!outer_ || logged) *stop = reduceScalarOver(*world_comm_, stop_requested() ? 1.0 : 0.0) > 0;
  const bool checkpoint_due = job.train.checkpoint_every > 0 && step_ % job.train.checkpoint_every == 0;
  if (checkpoint_due || *stop || step_ == total) {
    saveCheckpoint();
  }
  // Every member saw the same vote, so all admit the waiting replacements here.
  if (elastic_ != nullptr && joiners_voted_ && step_ < total && !*stop) {
    joiners_voted_ = false;
    applyGenerationChange(elastic_->admitJoiners());
    forgetStepsAfter(step_, summary);
  }
}

}  // namespace loom::train

// The training loop of one rank (ARCHITECTURE.md §3):
//   data -> forward/backward per micro-batch -> gradient reduction -> clip ->
//   AdamW -> metrics -> validation -> checkpoint.
// Ranks talk only through the Communicator, so the same loop runs on one rank
// (the self communicator) and, with later layers, on many.
#pragma once

#include "model/llama.h"
#include "optim/outer/outer_optimizer.h"
#include "optim/parameter_optimizer.h"
#include "parallel/gradient_reducer.h"
#include "runtime/config/options.h"
#include "runtime/core/logging.h"
#include "runtime/dist/communicator.h"
#include "train/checkpoint/checkpoint.h"
#include "train/data/data_loader.h"
#include "train/data/document_sampler.h"
#include "parallel/group_cache.h"
#include "train/elastic_session.h"
#include "train/fault_injection.h"
#include "train/hdp_step.h"
#include "train/metrics.h"
#include "train/metrics_log.h"
#include "train/replica_layout.h"

#include <ATen/core/Generator.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace loom::train {

struct TrainerOptions {
  JobOptions job;
  std::string config_text;  ///< the effective config, saved with outputs and checkpoints
  std::string init_from;    ///< optional safetensors file with initial weights
};

struct RunSummary {
  int64_t first_step = 0;                              ///< step the run started from (0, or a checkpoint's step)
  int64_t last_step = 0;                               ///< steps completed when run() returned
  bool stopped_early = false;                          ///< a stop request ended the run before train.steps
  std::vector<double> losses;                          ///< training loss of every step this run executed
  std::vector<std::pair<int64_t, double>> val_losses;  ///< (step, loss) of each validation pass
  std::string final_weights;                           ///< path of the exported weights (empty when stopped early)
};

class Trainer {
 public:
  /// Opens and checks everything that can be checked before any output is
  /// written: data shards, initial weights, the output directory, a checkpoint
  /// to resume from. Throws InputError for bad input.
  Trainer(TrainerOptions opts, dist::Communicator& comm, const Logger& log);
  /// An elastic trainer (docs/elastic.md): trains over `world`'s current
  /// generation and survives the loss of members. A joiner (a replacement)
  /// receives the training state from the members during construction.
  Trainer(TrainerOptions opts, elastic::ElasticWorld& world, const Logger& log);
  ~Trainer();

  /// Trains until train.steps, or until `stop_requested()` turns true (then the
  /// current step completes and a checkpoint is written).
  RunSummary run(const std::function<bool()>& stop_requested);

  /// Mean token loss over the validation shard's first val_batches micro-batches.
  double validationLoss();

  model::LlamaImpl& model() { return *model_; }
  int64_t step() const { return step_; }

 private:
  struct StepResult {
    double loss = 0;
    double grad_norm = 0;
    double comm_ms = 0;
    double exposed_comm_ms = 0;
    std::optional<StepMetrics::TensorParallel> tp;
  };

  Trainer(TrainerOptions opts, dist::Communicator* comm, elastic::ElasticWorld* world, const Logger& log);
  StepResult trainStep(double lr);
  /// context.mode STATIC or HDP: forward and backward of this step's
  /// documents, planned over the current world (docs/hdp.md); returns this
  /// rank's loss sum, documents led and their index sum.
  HdpRankResult documentStep();
  /// Tokens trained per step (the global batch's, or context.tokens_per_step).
  int64_t tokensPerStep() const;
  /// One iteration of run()'s loop: a step and what follows it (metrics,
  /// validation, checkpoint, the stop vote, admitting joiners).
  void iterate(RunSummary& summary, const std::function<bool()>& stop_requested, bool* stop);
  /// After a rollback or a generation change: drops what the summary and the
  /// metrics file hold about steps after `step`; the new lead reopens the file.
  void forgetStepsAfter(int64_t step, RunSummary& summary);
  /// This worker is a replacement that joined a running elastic job (its first
  /// generation is not the job's first).
  bool joinedLate() const;
  /// Builds the loader, reducer and optimizer over the current communicator.
  void bindCommunicator();
  LiveState liveState();
  /// After the generation changed: restores the state the members agree on
  /// and rebuilds the data-parallel parts for the new world.
  void applyGenerationChange(const elastic::GenerationChange& change);
  /// After a step failed in an elastic job: recover and roll back to the last
  /// step committed everywhere. Throws PeerLostError when the job must stop
  /// (split brain, a shard lost with its buddy, or below elastic.min_ranks
  /// after writing a checkpoint).
  void recoverFromFailure(const std::exception& cause);
  double reduceScalar(double value, dist::ReduceOp op = dist::ReduceOp::kSum);
  double reduceScalarOver(dist::Communicator& comm, double value, dist::ReduceOp op = dist::ReduceOp::kSum);
  /// With an outer optimizer: splits the world into replicas (consecutive
  /// ranks) and the outer group (one rank per replica, same position).
  void formReplicas();
  /// An elastic job's replicas (train/replica_layout.h) given every rank's
  /// logical replica: replica communicators and the leaders' outer group, all
  /// split from the current generation.
  void formElasticReplicas(const std::vector<int>& replica_of);
  /// This rank's share of the data over the current replicas and world.
  data::LoaderOptions loaderOptions() const;
  /// parallel.tp > 1 (train/trainer_tensor_parallel.cpp): splits the world
  /// into tensor-parallel groups of consecutive ranks and the data-parallel
  /// world of this rank's position in them, which becomes comm_.
  void formTensorParallel();
  /// Replaces the whole model by this rank's tensor-parallel shard of it.
  void shardModel();
  /// Whole tensors from every tensor-parallel rank's shards (collective over
  /// the group); `local` itself without tensor parallelism.
  checkpoint::NamedTensors wholeTensors(const checkpoint::NamedTensors& local);
  /// This rank's shards of whole tensors (a checkpoint's optimizer state).
  checkpoint::NamedTensors localShards(const checkpoint::NamedTensors& whole) const;
  /// With tensor parallelism, the element count of every parameter's whole
  /// tensor (streaming DiLoCo cuts its fragments on them); else empty.
  std::vector<int64_t> wholeParameterSizes() const;
  /// (name, shape) of every parameter: this rank's tensor-parallel shards, or
  /// (whole) the tensors they are cut from.
  std::vector<std::pair<std::string, std::vector<int64_t>>> parameterShapes(bool whole) const;
  /// The outer optimizer's state with its flat buffers (every parameter, in
  /// order) made whole from the group's shards (collective), and back.
  checkpoint::NamedTensors wholeOuterState(const checkpoint::NamedTensors& local);
  checkpoint::NamedTensors localOuterState(const checkpoint::NamedTensors& whole) const;
  /// Global gradient-norm clipping; with tensor parallelism the shards' squares
  /// are summed over the group.
  double clipGradNorm(double max_norm);
  /// The forward of one micro-batch, through the tensor-parallel group if any.
  at::Tensor forward(const at::Tensor& tokens);
  /// Time compute has waited for the tensor-parallel stream since its stats were reset (0 without).
  double tpExposedMs() const;
  /// The rank that writes files: data-parallel rank 0 at tensor-parallel position 0.
  bool leads() const;
  /// "dp=4", "dp=2 tp=2", or the replicas of an outer optimizer.
  std::string layoutName() const;
  void makeOuterOptimizer();
  /// The replica file of this rank's replica in `checkpoint_dir`, loaded into
  /// the weights; returns its optimizer and outer state.
  checkpoint::NamedTensors loadReplicaState(const std::string& checkpoint_dir);
  int64_t bytesSent() const;
  int64_t bytesReceived() const;
  /// Loads a checkpoint's weights, data cursor, RNG and counters; returns its
  /// optimizer state file, loaded once the optimizer exists.
  std::string resumeFrom(const std::string& checkpoint_dir);
  void saveCheckpoint();
  bool isLoggingStep(int64_t step) const;

  TrainerOptions opts_;
  dist::Communicator* comm_;  ///< the data-parallel world (an elastic job's current generation)
  dist::Communicator* world_comm_;  ///< every rank; comm_ too unless parallel.tp > 1
  std::unique_ptr<dist::Communicator> owned_tp_comm_;
  std::unique_ptr<dist::Communicator> owned_data_comm_;
  std::unique_ptr<parallel::TensorParallel> tensor_parallel_;
  elastic::ElasticWorld* elastic_ = nullptr;
  std::unique_ptr<ElasticSession> session_;
  FaultInjector faults_;
  bool joiners_voted_ = false;  ///< the last commit vote saw replacements waiting
  int64_t step_samples_ = 0;    ///< the last step's global samples computed, from its vote
  double step_sample_sum_ = 0;  ///< and the sum of their ids
  std::string last_change_;
  std::unique_ptr<MetricsLog> metrics_;  ///< open on the current lead only
  double flops_per_token_ = 0;
  double peak_flops_ = 0;     ///< JSON event line of the last generation change, for the metrics
  const Logger& log_;
  at::Generator generator_;
  std::shared_ptr<const data::TokenShard> train_shard_;
  std::shared_ptr<const data::TokenShard> val_shard_;
  std::unique_ptr<data::DataLoader> loader_;
  std::unique_ptr<data::DocumentSampler> documents_;  ///< context.mode STATIC or HDP
  std::unique_ptr<parallel::GroupCache> groups_;      ///< their groups, split per generation
  bool plans_agreed_ = false;  ///< HDP: this world's ranks compared their first plan's hash
  model::Llama model_{nullptr};
  // Without an outer optimizer the replica is the world. With one, ranks of a
  // replica reduce gradients over replica_comm_ and replicas meet only through
  // outer_comm_ (one rank per replica), used by the outer optimizer alone.
  int replicas_ = 1;
  int replica_ = 0;
  // An elastic job's replica and outer communicators belong to its world
  // (split per generation); only replica leaders have an outer communicator.
  int logical_replica_ = -1;  ///< elastic: this worker's replica for the job's life
  std::vector<int> replica_sizes_;  ///< ranks of every replica
  std::unique_ptr<dist::Communicator> owned_replica_comm_;
  dist::Communicator* replica_comm_ = nullptr;
  std::unique_ptr<dist::Communicator> owned_outer_comm_;
  dist::Communicator* outer_comm_ = nullptr;
  std::unique_ptr<parallel::GradientReducer> reducer_;
  std::unique_ptr<optim::ParameterOptimizer> optimizer_;
  std::unique_ptr<optim::outer::OuterOptimizer> outer_;
  checkpoint::CheckpointStore checkpoints_;
  int64_t step_ = 0;
  int64_t tokens_ = 0;
};

}  // namespace loom::train

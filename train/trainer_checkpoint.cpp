// The Trainer's checkpoints (docs/checkpoints.md): what a checkpoint holds is
// whole tensors whatever the layout (ZeRO-1 shards and tensor-parallel shards
// are gathered), written by the lead rank; resuming loads them and each rank
// takes its shards. Replicas of an outer optimizer add one file each.
#include "train/trainer.h"

#include "runtime/core/error.h"
#include "train/checkpoint/safetensors.h"

#include <c10/core/GradMode.h>

#include <filesystem>
#include <map>

namespace loom::train {

checkpoint::NamedTensors Trainer::loadReplicaState(const std::string& checkpoint_dir) {
  const std::string file = "replica_" + std::to_string(replica_) + ".safetensors";
  const std::string path = checkpoint::checkpointFile(checkpoint_dir, file);
  LOOM_CHECK_INPUT(std::filesystem::exists(path), checkpoint_dir, " has no ", file, ": it was written without ",
                   "an outer optimizer or with fewer than ", replicas_,
                   " replicas; resume with the run's original outer settings, or set train.out_dir to a new directory");
  // Whole tensors on disk; with tensor parallelism this rank's shards of them.
  checkpoint::NamedTensors state = localShards(checkpoint::readSafetensors(path));
  std::map<std::string, at::Tensor> weights;
  for (const auto& [name, t] : state) {
    if (name.rfind("model.", 0) == 0) weights.emplace(name.substr(6), t);
  }
  c10::NoGradGuard no_grad;
  for (auto& [name, p] : model_->namedParameters()) {
    const auto it = weights.find(name);
    LOOM_CHECK_INPUT(it != weights.end() && it->second.sizes() == p.sizes(), path, " lacks model.", name,
                     " with shape ", p.sizes(), ": the checkpoint belongs to another model");
    p.copy_(it->second);
  }
  return state;
}

std::string Trainer::resumeFrom(const std::string& checkpoint_dir) {
  const checkpoint::TrainerState state = checkpoint::readTrainerState(checkpoint_dir);
  const TrainOptions& train = opts_.job.train;
  LOOM_CHECK_INPUT(state.seed == train.seed, checkpoint_dir, " was written with train.seed ", state.seed,
                   " but the config says ", train.seed,
                   ": resume with the original seed, or set train.out_dir to a new directory");
  checkpoint::loadSafetensorsInto(checkpoint::checkpointFile(checkpoint_dir, "model.safetensors"),
                                  model_->namedParameters(), "checkpoint");
  loader_->seek(state.data_cursor);
  generator_.set_state(state.rng_state);
  step_ = state.step;
  tokens_ = state.tokens;
  log_.info("resumed from ", checkpoint_dir, " at step ", step_,
            opts_.init_from.empty() ? "" : " (--init-from is ignored when resuming)");
  return checkpoint::checkpointFile(checkpoint_dir, "optimizer.safetensors");
}

void Trainer::saveCheckpoint() {
  // Collective when sharded (ZeRO-1 or tensor parallel): whole tensors, whatever the layout.
  const checkpoint::NamedTensors optimizer_state = wholeTensors(optimizer_->stateTensors());
  const checkpoint::NamedTensors weights = wholeTensors(model_->namedParameters());
  if (outer_) {
    // Replicas differ: each replica's first rank (at tensor-parallel position 0)
    // stages its weights, inner and outer state.
    const checkpoint::NamedTensors outer_state = wholeOuterState(outer_->stateTensors());
    if (replica_comm_->rank() == 0 && (!tensor_parallel_ || tensor_parallel_->rank() == 0)) {
      checkpoint::NamedTensors replica;
      for (const auto& [name, p] : weights) replica.emplace_back("model." + name, p);
      for (const auto& [name, t] : optimizer_state) replica.emplace_back("optimizer." + name, t);
      for (const auto& [name, t] : outer_state) replica.emplace_back(name, t);
      checkpoint::writeSafetensors(
          checkpoints_.stagedFile(step_, "replica_" + std::to_string(replica_) + ".safetensors"), replica,
          {{"format", "pt"}});
    }
    comm_->barrier();
  }
  if (leads()) {
    checkpoint::TrainerState state;
    state.step = step_;
    state.data_cursor = loader_->cursor();
    state.tokens = tokens_;
    state.seed = opts_.job.train.seed;
    state.world_size = world_comm_->size();
    state.rng_state = generator_.get_state();
    const std::string dir = checkpoints_.save(weights, optimizer_state, state, opts_.config_text);
    log_.info("checkpoint ", dir);
  }
  comm_->barrier();
}

}  // namespace loom::train

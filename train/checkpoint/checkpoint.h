// Training checkpoints (docs/checkpoints.md).
//
// A checkpoint is a directory <out_dir>/checkpoints/step_<8 digits>/ holding
//   model.safetensors      the weights, under the model's parameter names
//   optimizer.safetensors  the optimizer state ("exp_avg.<param>", "exp_avg_sq.<param>")
//   trainer.json           step, data cursor, tokens, seed, world size, RNG state
//   config.pbtxt           the effective config of the run that wrote it
//   replica_<i>.safetensors  with an outer optimizer: replica i's own weights,
//                          inner optimizer state and outer state (staged by its ranks)
// It is written into "step_<N>.tmp-<pid>" and renamed into place, so a crash at
// any moment leaves either no step_<N> or a complete one: readers never see a
// half checkpoint. The newest complete step_<N> is the one to resume from.
#pragma once

#include "train/checkpoint/safetensors.h"

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace loom::checkpoint {

/// Everything besides tensors that a resumed run needs to continue exactly.
struct TrainerState {
  int64_t step = 0;         ///< optimizer steps completed
  int64_t data_cursor = 0;  ///< global samples consumed (DataLoader::cursor)
  int64_t tokens = 0;       ///< tokens trained on so far, over all ranks
  uint64_t seed = 0;
  int world_size = 1;
  at::Tensor rng_state;  ///< the trainer generator's state (uint8)
};

class CheckpointStore {
 public:
  /// `dir` is <out_dir>/checkpoints; `keep` is how many newest checkpoints survive a save.
  CheckpointStore(std::string dir, int64_t keep);

  /// Writes the checkpoint of state.step atomically, then deletes all but the
  /// newest `keep` checkpoints and any temporary left by an earlier crash.
  /// Returns the checkpoint's directory.
  std::string save(const NamedTensors& model, const NamedTensors& optimizer, const TrainerState& state,
                   const std::string& config_text) const;

  /// Where a rank other than the saving one puts a file for the checkpoint of
  /// `step` before save() runs: save() moves every file staged for its step
  /// into the checkpoint, so they appear atomically with it (and are dropped
  /// with it). The caller writes the file atomically (safetensors writers do)
  /// and makes sure it is complete before save() starts (a barrier).
  std::string stagedFile(int64_t step, const std::string& name) const;

  /// The newest complete checkpoint directory, if any.
  std::optional<std::string> latest() const;

  const std::string& dir() const { return dir_; }

 private:
  std::vector<std::pair<int64_t, std::string>> completeCheckpoints() const;

  std::string dir_;
  int64_t keep_;
};

/// Reads trainer.json of checkpoint `checkpoint_dir`. Throws InputError naming the file when it is malformed.
TrainerState readTrainerState(const std::string& checkpoint_dir);

/// Path of a file inside a checkpoint directory ("model.safetensors", ...).
std::string checkpointFile(const std::string& checkpoint_dir, const std::string& name);

}  // namespace loom::checkpoint

// loom-train: runs one rank of a training job described by a text config.
//
//   loom-train --config configs/tiny.pbtxt [--set section.field=value ...] [--init-from w.safetensors]
//
// Exit codes (runtime/core/error.h): 0 done or stopped by SIGINT/SIGTERM after
// checkpointing; 2 bad config or input (do not restart); 3 a peer was lost;
// 1 internal error.
#include "runtime/config/loader.h"
#include "runtime/core/cli_main.h"
#include "runtime/core/logging.h"
#include "runtime/core/thread_env.h"
#include "runtime/dist/identity.h"
#include "runtime/dist/world.h"
#include "train/stop_signal.h"
#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <iostream>
#include <thread>

namespace {

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  std::string init_from;
};

// Intra-op threads per rank: train.threads, or this machine's cores shared by
// the ranks running on it.
int threadsFor(const loom::TrainOptions& train, const loom::dist::RankIdentity& identity) {
  if (train.threads > 0) return static_cast<int>(train.threads);
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  return std::max(1, cores / std::max(1, identity.local_world_size));
}

int runJob(const Args& args) {
  // Who this process is comes from the environment; the config is checked
  // against that world size before any rank talks to another.
  const loom::dist::RankIdentity identity = loom::dist::identityFromEnvironment();
  const loom::JobOptions job = loom::config::loadJobConfig(args.config, args.overrides, identity.world_size);
  const loom::Logger log(std::cerr, loom::LoggerOptions{identity.rank, identity.world_size, job.logging.level});
  loom::train::StopSignal stop_signal;

  const int threads = threadsFor(job.train, identity);
  at::set_num_threads(threads);
  loom::setBlasThreads(threads);
  const loom::dist::World world = loom::dist::joinWorld(identity, job.parallel);
  const std::string summary_line = c10::str("loom-train ", args.config, ": ", world.identity.describe(), "; backend ",
                                            world.comm->backendName(), ", ", at::get_num_threads(),
                                            " intra-op threads, ", loom::openMpWaitPolicyDescription());
  if (identity.rank == 0) {
    log.info(summary_line);
  } else {
    log.debug(summary_line);
  }

  loom::train::Trainer trainer(loom::train::TrainerOptions{job, loom::config::effectiveConfigText(job), args.init_from},
                               *world.comm, log);
  const loom::train::RunSummary summary = trainer.run([&] { return stop_signal.requested(); });
  int signal = 0;
  if (stop_signal.requested(&signal)) {
    log.info("stopped by signal ", signal, " after step ", summary.last_step, "; checkpoint saved, exiting 0");
  } else if (identity.rank == 0) {
    log.info("done: ", summary.last_step, " steps");
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  loom::reexecWithPassiveOpenMpWait(argv);
  CLI::App app{"loom-train: train a Llama-style model from a protobuf text config", "loom-train"};
  Args args;
  app.add_option("--config", args.config, "job config (.pbtxt), see docs/config.md")->required();
  app.add_option("--set", args.overrides, "override a config field: section.field=value (repeatable)")
      ->take_all()
      ->allow_extra_args(false);
  app.add_option("--init-from", args.init_from, "initial weights (.safetensors) under the model's names");
  return loom::runCliMain(app, argc, argv, [&] { return runJob(args); });
}

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
#include "elastic/elastic_world.h"
#include "runtime/core/error.h"
#include "runtime/dist/elastic_keys.h"
#include "runtime/dist/identity.h"
#include "runtime/dist/rendezvous.h"
#include "runtime/dist/world.h"
#include "train/stop_signal.h"
#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
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

int elasticIdFromEnvironment(const loom::dist::RankIdentity& identity) {
  const char* id = std::getenv(loom::dist::elastic_keys::kIdEnv);
  if (id == nullptr) return identity.rank;
  try {
    return std::stoi(id);
  } catch (const std::exception&) {
    LOOM_THROW(loom::InputError, loom::dist::elastic_keys::kIdEnv, "=", id, " is not an integer");
  }
}

// An elastic job (docs/elastic.md): the world is a sequence of membership
// generations, and this worker may be a replacement joining a running job.
int runElasticJob(const Args& args, const loom::JobOptions& job, const loom::dist::RankIdentity& identity,
                  const loom::Logger& log, loom::train::StopSignal& stop_signal) {
  LOOM_CHECK_INPUT(identity.agent_store, "elastic.policy is ", job.elastic.policy == loom::ElasticPolicy::kReplace
                                                                   ? "REPLACE"
                                                                   : "SHRINK",
                   " but this worker was not started by loom-launch (", identity.describe(),
                   "): elastic jobs need the launcher to report and replace lost workers; start with loom-launch, or "
                   "set elastic.policy: NONE");
  const int threads = threadsFor(job.train, identity);
  at::set_num_threads(threads);
  loom::setBlasThreads(threads);
  loom::dist::RendezvousOptions rendezvous;
  rendezvous.timeout = std::chrono::milliseconds(static_cast<int64_t>(job.parallel.timeout_s * 1000.0));
  const auto store = loom::dist::connectStore(identity, rendezvous);
  loom::elastic::ElasticWorldOptions opts;
  opts.id = elasticIdFromEnvironment(identity);
  opts.initial_world = identity.world_size;
  const char* join = std::getenv(loom::dist::elastic_keys::kJoinEnv);
  opts.joiner = join != nullptr && std::string(join) == "1";
  opts.elastic = job.elastic;
  opts.op_timeout = rendezvous.timeout;
  try {
    loom::elastic::ElasticWorld world(store, opts, log);
    if (identity.rank == 0 || opts.joiner) {
      log.info("loom-train ", args.config, ": elastic worker ", opts.id, opts.joiner ? " (replacement)" : "", " in ",
               world.membership().describe(), "; ", at::get_num_threads(), " intra-op threads");
    }
    loom::train::Trainer trainer(
        loom::train::TrainerOptions{job, loom::config::effectiveConfigText(job), args.init_from}, world, log);
    const loom::train::RunSummary summary = trainer.run([&] { return stop_signal.requested(); });
    log.info("done: ", summary.last_step, " steps (elastic worker ", opts.id, ")");
  } catch (const loom::elastic::JobFinishedError& e) {
    log.info(e.what(), ": nothing to do, exiting 0");
  }
  return 0;
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
  if (job.elastic.enabled()) return runElasticJob(args, job, identity, log, stop_signal);
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

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
#include "runtime/dist/communicator.h"
#include "train/stop_signal.h"
#include "train/trainer.h"

#include <ATen/Parallel.h>
#include <CLI/CLI.hpp>

#include <iostream>
#include <thread>

namespace {

struct Args {
  std::string config;
  std::vector<std::string> overrides;
  std::string init_from;
};

int runJob(const Args& args) {
  auto comm = loom::dist::makeSelfCommunicator();
  loom::JobOptions job = loom::config::loadJobConfig(args.config, args.overrides, comm->size());
  const loom::Logger log(std::cerr, loom::LoggerOptions{comm->rank(), comm->size(), job.logging.level});

  const int64_t threads =
      job.train.threads > 0 ? job.train.threads : static_cast<int64_t>(std::thread::hardware_concurrency());
  at::set_num_threads(static_cast<int>(std::max<int64_t>(1, threads)));
  log.info("loom-train ", args.config, ": ", comm->size(), " rank(s) on backend ", comm->backendName(), ", ",
           at::get_num_threads(), " intra-op threads, ", loom::openMpWaitPolicyDescription());

  loom::train::StopSignal stop_signal;
  loom::train::Trainer trainer(loom::train::TrainerOptions{job, loom::config::effectiveConfigText(job), args.init_from},
                               *comm, log);
  const loom::train::RunSummary summary = trainer.run([&] { return stop_signal.requested(); });
  int signal = 0;
  if (stop_signal.requested(&signal)) {
    log.info("stopped by signal ", signal, " after step ", summary.last_step, "; checkpoint saved, exiting 0");
  } else {
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

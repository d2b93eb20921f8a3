// loom-launch: starts and watches the workers of a job on this node, torchrun-style.
//
//   loom-launch [--nproc-per-node N] [--nnodes MIN:MAX --node-rank K --rdzv-endpoint HOST:PORT]
//               [--max-restarts K] [--log-dir DIR [--tee]] [--] program [args...]
//
// docs/launcher.md has the flags, the worker environment, the failure policy and
// the exit codes.
#include "launcher/agent.h"
#include "launcher/launch_cli.h"
#include "runtime/core/cli_main.h"

#include <fcntl.h>
#include <unistd.h>

#include <CLI/CLI.hpp>

namespace {

// Descriptors 0-2 must be open before anything else is: otherwise a pipe could
// land on one of them and a worker's stdout would become someone else's.
void ensureStandardDescriptors() {
  for (int fd = 0; fd <= 2; ++fd) {
    if (::fcntl(fd, F_GETFD) < 0) ::open("/dev/null", fd == 0 ? O_RDONLY : O_WRONLY);
  }
}

}  // namespace

int main(int argc, char** argv) {
  ensureStandardDescriptors();
  CLI::App app{"loom-launch: start and watch the ranks of a loom (or any torchrun-style) job", "loom-launch"};
  app.footer(
      "Everything after the first non-option argument (or after --) is the worker command. "
      "Every flag may also come from PET_<FLAG> (e.g. PET_NPROC_PER_NODE). See docs/launcher.md.");
  loom::launcher::LaunchFlags flags;
  loom::launcher::addLaunchFlags(app, &flags);
  return loom::runCliMain(app, argc, argv, [&] {
    loom::launcher::Agent agent(loom::launcher::resolveLaunchOptions(flags, app.remaining()));
    return agent.run();
  });
}

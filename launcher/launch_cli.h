// loom-launch's command line: torchrun's flags in both spellings (--nproc-per-node
// and --nproc_per_node), each also read from PET_<FLAG> when not given (an explicit
// flag wins), then everything from the program on passed to the workers untouched.
#pragma once

#include "launcher/launch_options.h"

#include <CLI/App.hpp>

#include <string>
#include <vector>

namespace loom::launcher {

/// The flags in their text forms, as CLI11 fills them.
struct LaunchFlags {
  std::string nproc_per_node = "1";
  std::string nnodes = "1:1";
  int node_rank = 0;
  std::string rdzv_endpoint;
  std::string rdzv_id = "none";
  std::string rdzv_conf;
  bool standalone = false;
  int max_restarts = 0;
  std::string monitor_interval = "0.1";
  std::string log_dir;
  bool tee = false;
  std::string grace_period = "30";
  std::string rdzv_timeout;  ///< empty: --rdzv-conf join_timeout or the 600 s default
};

/// Registers every flag on `app` (which must outlive nothing but `flags`) and makes
/// the first non-option argument end option parsing.
void addLaunchFlags(CLI::App& app, LaunchFlags* flags);

/// Resolves the parsed flags and `app.remaining()` (the program and its arguments,
/// optionally after "--") into validated options. Throws InputError.
LaunchOptions resolveLaunchOptions(const LaunchFlags& flags, const std::vector<std::string>& remaining);

}  // namespace loom::launcher

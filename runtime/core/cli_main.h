// The shared main() of loom's command-line tools: parse the arguments, run the
// tool, and turn what it throws into loom's exit codes (runtime/core/error.h),
// printing "<tool>: error: <message>". Bad command-line arguments are bad input.
#pragma once

#include <CLI/App.hpp>

#include <functional>

namespace loom {

/// Returns the process exit code. `body` returns the tool's own exit code on success.
int runCliMain(CLI::App& app, int argc, char** argv, const std::function<int()>& body);

}  // namespace loom

#include "runtime/core/cli_main.h"

#include "runtime/core/error.h"

#include <CLI/CLI.hpp>

#include <iostream>

namespace loom {

int runCliMain(CLI::App& app, int argc, char** argv, const std::function<int()>& body) {
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // prints the usage error or --help
    return code == 0 ? 0 : static_cast<int>(ExitCode::kBadInput);
  }
  const std::string& tool = app.get_name();
  try {
    return body();
  } catch (const std::exception& e) {
    const ExitCode code = exitCodeFor(e);
    // Internal errors keep c10's backtrace: they are bugs to report.
    std::cerr << tool << ": error: " << (code == ExitCode::kInternal ? std::string(e.what()) : errorMessage(e))
              << std::endl;
    if (code == ExitCode::kBadInput) {
      std::cerr << tool << ": bad input: fix it and run again (restarting will not help)" << std::endl;
    }
    return static_cast<int>(code);
  }
}

}  // namespace loom

// What the launcher tells the user when workers fail: torchrun's failure summary
// (errors/__init__.py _FAILURE_FORMAT_TEMPLATE, ecosystem.md §1.5) with loom's
// additions (a hint for the exit code or signal, the last stderr lines), and the
// TORCHELASTIC_ERROR_FILE protocol a worker may use to report its own error.
#pragma once

#include "launcher/exit_status.h"

#include <string>
#include <vector>

namespace loom::launcher {

struct WorkerFailure {
  std::string time;      ///< local wall-clock time it was observed, "2024-05-19_16:39:58"
  double unix_time = 0;  ///< the same, for ordering (seconds since the epoch)
  std::string host;
  int node_rank = 0;  ///< the --node-rank of the launcher that saw it
  int rank = 0;
  int local_rank = 0;
  int pid = 0;
  ExitStatus status;
  std::string error_file;     ///< path, when the worker wrote one; empty otherwise
  std::string error_message;  ///< "message" from the error file
  std::string traceback;      ///< "extraInfo.py_callstack" from the error file
  std::vector<std::string> stderr_tail;
};

/// A failure observed now on this host.
WorkerFailure observeFailure(int node_rank, int rank, int local_rank, int pid, const ExitStatus& status);

/// Fills error_file/error_message/traceback from a TORCHELASTIC_ERROR_FILE when
/// the worker wrote one: {"message": {"message": "...", "extraInfo":
/// {"py_callstack": "...", "timestamp": "..."}}}, or {"message": "..."}. A file
/// that is not such JSON is reported as unreadable in error_message.
void readErrorFile(const std::string& path, WorkerFailure* failure);

/// Earliest first; equal times by lowest rank (mpirun's rule).
bool observedBefore(const WorkerFailure& a, const WorkerFailure& b);

std::string failureToJson(const WorkerFailure& failure);
/// Throws c10::Error when `json` is not what failureToJson wrote.
WorkerFailure failureFromJson(const std::string& json);

/// The multi-line summary: "<program> FAILED", the other failures, then the root cause.
std::string formatFailureSummary(const std::string& program, const WorkerFailure& root,
                                 const std::vector<WorkerFailure>& others);

/// This machine's host name.
std::string hostName();

}  // namespace loom::launcher

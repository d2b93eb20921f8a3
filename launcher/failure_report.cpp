#include "launcher/failure_report.h"

#include "runtime/core/error.h"

#include <unistd.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>

namespace loom::launcher {
namespace {

using nlohmann::json;

const std::string kBorder(60, '=');
const std::string kSection(60, '-');

void appendIndented(std::ostringstream& out, const std::string& text, const std::string& indent) {
  std::istringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) out << indent << line << "\n";
}

void formatOne(std::ostringstream& out, int index, const WorkerFailure& f) {
  out << "[" << index << "]:\n"
      << "  time      : " << f.time << "\n"
      << "  host      : " << f.host << " (node_rank: " << f.node_rank << ")\n"
      << "  rank      : " << f.rank << " (local_rank: " << f.local_rank << ")\n"
      << "  exitcode  : " << f.status.torchrunCode() << " (pid: " << f.pid << ")\n"
      << "  error_file: " << (f.error_file.empty() ? "<N/A>" : f.error_file) << "\n";
  if (!f.error_message.empty()) out << "  message   : " << f.error_message << "\n";
  if (!f.traceback.empty()) {
    out << "  traceback :\n";
    appendIndented(out, f.traceback, "    ");
  } else if (f.status.signaled) {
    out << "  traceback : Signal " << f.status.signal << " (" << signalName(f.status.signal) << ") received by PID "
        << f.pid << "\n";
  } else {
    out << "  traceback : <N/A> (no error file written; see stderr below)\n";
  }
  const std::string hint = exitHint(f.status);
  if (!hint.empty()) out << "  hint      : " << hint << "\n";
  if (!f.stderr_tail.empty()) {
    out << "  stderr    : last " << f.stderr_tail.size() << " line(s) of rank " << f.rank << ":\n";
    for (const auto& line : f.stderr_tail) out << "    | " << line << "\n";
  } else {
    out << "  stderr    : <empty>\n";
  }
}

std::string stringOrDump(const json& value) {
  return value.is_string() ? value.get<std::string>() : value.dump();
}

}  // namespace

std::string hostName() {
  char name[256] = {};
  if (::gethostname(name, sizeof(name) - 1) != 0) return "unknown-host";
  return name;
}

WorkerFailure observeFailure(int node_rank, int rank, int local_rank, int pid, const ExitStatus& status) {
  WorkerFailure f;
  const auto now = std::chrono::system_clock::now();
  f.unix_time = std::chrono::duration<double>(now.time_since_epoch()).count();
  const std::time_t seconds = std::chrono::system_clock::to_time_t(now);
  std::tm local{};
  ::localtime_r(&seconds, &local);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d_%H:%M:%S", &local);
  f.time = text;
  f.host = hostName();
  f.node_rank = node_rank;
  f.rank = rank;
  f.local_rank = local_rank;
  f.pid = pid;
  f.status = status;
  return f;
}

void readErrorFile(const std::string& path, WorkerFailure* failure) {
  std::ifstream in(path);
  if (!in.good()) return;  // the worker wrote none: the usual case
  failure->error_file = path;
  std::stringstream text;
  text << in.rdbuf();
  const json doc = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("message")) {
    failure->error_message = "<unreadable: not the TORCHELASTIC_ERROR_FILE JSON {\"message\": ...}>";
    return;
  }
  const json& message = doc["message"];
  if (message.is_object()) {
    if (message.contains("message")) failure->error_message = stringOrDump(message["message"]);
    if (message.contains("extraInfo") && message["extraInfo"].is_object() &&
        message["extraInfo"].contains("py_callstack")) {
      failure->traceback = stringOrDump(message["extraInfo"]["py_callstack"]);
    }
  } else {
    failure->error_message = stringOrDump(message);
  }
}

bool observedBefore(const WorkerFailure& a, const WorkerFailure& b) {
  if (a.unix_time != b.unix_time) return a.unix_time < b.unix_time;
  return a.rank < b.rank;
}

std::string failureToJson(const WorkerFailure& f) {
  const json doc = {{"time", f.time},
                    {"unix_time", f.unix_time},
                    {"host", f.host},
                    {"node_rank", f.node_rank},
                    {"rank", f.rank},
                    {"local_rank", f.local_rank},
                    {"pid", f.pid},
                    {"exit_code", f.status.code},
                    {"signal", f.status.signal},
                    {"signaled", f.status.signaled},
                    {"error_file", f.error_file},
                    {"error_message", f.error_message},
                    {"traceback", f.traceback},
                    {"stderr_tail", f.stderr_tail}};
  return doc.dump();
}

WorkerFailure failureFromJson(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) LOOM_THROW(c10::Error, "loom-launch: malformed failure record in the store: ", text);
  try {
    WorkerFailure f;
    f.time = doc.at("time").get<std::string>();
    f.unix_time = doc.at("unix_time").get<double>();
    f.host = doc.at("host").get<std::string>();
    f.node_rank = doc.at("node_rank").get<int>();
    f.rank = doc.at("rank").get<int>();
    f.local_rank = doc.at("local_rank").get<int>();
    f.pid = doc.at("pid").get<int>();
    f.status.code = doc.at("exit_code").get<int>();
    f.status.signal = doc.at("signal").get<int>();
    f.status.signaled = doc.at("signaled").get<bool>();
    f.error_file = doc.at("error_file").get<std::string>();
    f.error_message = doc.at("error_message").get<std::string>();
    f.traceback = doc.at("traceback").get<std::string>();
    f.stderr_tail = doc.at("stderr_tail").get<std::vector<std::string>>();
    return f;
  } catch (const json::exception& e) {
    LOOM_THROW(c10::Error, "loom-launch: malformed failure record in the store (", e.what(), "): ", text);
  }
}

std::string formatFailureSummary(const std::string& program, const WorkerFailure& root,
                                 const std::vector<WorkerFailure>& others) {
  std::ostringstream out;
  out << kBorder << "\n" << program << " FAILED\n" << kSection << "\nFailures:\n";
  if (others.empty()) {
    out << "  <NO_OTHER_FAILURES>\n";
  }
  for (size_t i = 0; i < others.size(); ++i) formatOne(out, static_cast<int>(i) + 1, others[i]);
  out << kSection << "\nRoot Cause (first observed failure):\n";
  formatOne(out, 0, root);
  out << kBorder << "\n";
  return out.str();
}

}  // namespace loom::launcher

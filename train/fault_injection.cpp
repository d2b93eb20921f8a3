#include "train/fault_injection.h"

#include "runtime/core/error.h"

#include <csignal>
#include <cstdlib>
#include <sstream>

namespace loom::train {
namespace {

FaultPhase parsePhase(const std::string& text, const std::string& entry) {
  if (text == "forward") return FaultPhase::kForward;
  if (text == "allreduce") return FaultPhase::kAllReduce;
  if (text == "commit") return FaultPhase::kCommit;
  if (text == "snapshot") return FaultPhase::kSnapshot;
  if (text == "outer") return FaultPhase::kOuter;
  LOOM_THROW(InputError, "LOOM_FAULT_INJECT entry \"", entry, "\": phase \"", text,
             "\" is not one of forward, allreduce, commit, snapshot, outer");
}

int parseSignal(const std::string& text, const std::string& entry) {
  if (text == "KILL") return SIGKILL;
  if (text == "STOP") return SIGSTOP;
  LOOM_THROW(InputError, "LOOM_FAULT_INJECT entry \"", entry, "\": signal \"", text, "\" is not KILL or STOP");
}

}  // namespace

FaultInjector::FaultInjector(const std::string& spec, int id) : id_(id) {
  std::stringstream entries(spec);
  std::string entry;
  while (std::getline(entries, entry, ';')) {
    if (entry.empty()) continue;
    std::stringstream fields(entry);
    std::vector<std::string> parts;
    std::string part;
    while (std::getline(fields, part, ':')) parts.push_back(part);
    LOOM_CHECK_INPUT(parts.size() == 4, "LOOM_FAULT_INJECT entry \"", entry,
                     "\" is not <id>:<step>:<phase>:<signal>, e.g. 2:7:allreduce:KILL");
    Fault f{};
    try {
      f.id = std::stoi(parts[0]);
      f.step = std::stoll(parts[1]);
    } catch (const std::exception&) {
      LOOM_THROW(InputError, "LOOM_FAULT_INJECT entry \"", entry, "\": id and step must be integers");
    }
    f.phase = parsePhase(parts[2], entry);
    f.signal = parseSignal(parts[3], entry);
    faults_.push_back(f);
  }
}

FaultInjector FaultInjector::fromEnvironment(int id) {
  const char* spec = std::getenv("LOOM_FAULT_INJECT");
  return FaultInjector(spec != nullptr ? spec : "", id);
}

void FaultInjector::at(FaultPhase phase, int64_t step) {
  for (Fault& f : faults_) {
    if (!f.fired && f.id == id_ && f.step == step && f.phase == phase) {
      f.fired = true;
      ::raise(f.signal);
    }
  }
}

}  // namespace loom::train

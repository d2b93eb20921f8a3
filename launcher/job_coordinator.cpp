#include "launcher/job_coordinator.h"

#include "launcher/signal_watch.h"
#include "launcher/store_ops.h"
#include "runtime/core/error.h"

#include <nlohmann/json.hpp>

#include <sstream>

namespace loom::launcher {
namespace {

using nlohmann::json;

std::string joinRanks(const std::vector<int>& ranks) {
  std::string text;
  for (int r : ranks) text += (text.empty() ? "" : ", ") + std::to_string(r);
  return text;
}

}  // namespace

std::string AttemptOutcome::toJson() const {
  json doc = {{"kind", kind == Kind::kFailed ? "failed" : "stopped"},
              {"signal", signal},
              {"node_rank", node_rank},
              {"host", host}};
  if (kind == Kind::kFailed) doc["failure"] = json::parse(failureToJson(failure));
  return doc.dump();
}

AttemptOutcome AttemptOutcome::fromJson(const std::string& text) {
  const json doc = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("kind")) {
    LOOM_THROW(c10::Error, "loom-launch: malformed outcome record in the store: ", text);
  }
  AttemptOutcome outcome;
  outcome.kind = doc["kind"] == "failed" ? Kind::kFailed : Kind::kStopped;
  outcome.signal = doc.value("signal", 0);
  outcome.node_rank = doc.value("node_rank", 0);
  outcome.host = doc.value("host", std::string());
  if (outcome.kind == Kind::kFailed) outcome.failure = failureFromJson(doc.at("failure").dump());
  return outcome;
}

JobCoordinator::JobCoordinator(c10d::Store& store, Membership membership, int node_rank,
                               std::chrono::milliseconds timeout)
    : store_(store), membership_(std::move(membership)), node_rank_(node_rank), timeout_(timeout) {}

std::string JobCoordinator::key(const std::string& name) const {
  return "attempt/" + std::to_string(attempt_) + "/" + name;
}

void JobCoordinator::enterAttempt(int attempt, const std::function<void()>& check_interrupt) {
  attempt_ = attempt;
  setText(store_, key("ready/" + std::to_string(node_rank_)), "1");
  store_.add(key("ready"), 1);
  const auto everyone = static_cast<int64_t>(membership_.group_world_size);
  const bool all = pollUntil(
      Clock::now() + timeout_,
      [&] {
        if (const auto outcome = reported(); outcome && outcome->kind == AttemptOutcome::Kind::kStopped) {
          throw StopRequested(outcome->signal);
        }
        return readCounter(store_, key("ready")) >= everyone;
      },
      check_interrupt);
  if (all) return;
  std::vector<int> missing;
  for (int node : membership_.node_ranks) {
    if (!store_.check({key("ready/" + std::to_string(node))})) missing.push_back(node);
  }
  std::ostringstream seconds;
  seconds << static_cast<double>(timeout_.count()) / 1000.0;
  LOOM_THROW(PeerLostError, "attempt ", attempt, ": node rank(s) ", joinRanks(missing), " did not start it within ",
             seconds.str(), " s (--rdzv-timeout): their launcher died or hangs; check its log");
}

AttemptOutcome JobCoordinator::report(const AttemptOutcome& outcome) {
  return AttemptOutcome::fromJson(setTextIfAbsent(store_, key("outcome"), outcome.toJson()));
}

void JobCoordinator::reportStopAhead(const AttemptOutcome& stop) {
  setTextIfAbsent(store_, "attempt/" + std::to_string(attempt_ + 1) + "/outcome", stop.toJson());
}

std::optional<AttemptOutcome> JobCoordinator::reported() {
  if (!store_.check({key("outcome")})) return std::nullopt;
  return AttemptOutcome::fromJson(getText(store_, key("outcome")));
}

void JobCoordinator::reportSuccess() {
  store_.add(key("succeeded"), 1);
}

bool JobCoordinator::everyNodeSucceeded() {
  return readCounter(store_, key("succeeded")) >= membership_.group_world_size;
}

std::vector<int> JobCoordinator::leave(std::chrono::milliseconds timeout) {
  if (node_rank_ != 0) {
    setText(store_, key("left/" + std::to_string(node_rank_)), "1");
    store_.add(key("left"), 1);
    return {};
  }
  const int64_t others = membership_.group_world_size - 1;
  if (pollUntil(
          Clock::now() + timeout, [&] { return readCounter(store_, key("left")) >= others; }, [] {})) {
    return {};
  }
  std::vector<int> missing;
  for (int node : membership_.node_ranks) {
    if (node != 0 && !store_.check({key("left/" + std::to_string(node))})) missing.push_back(node);
  }
  return missing;
}

}  // namespace loom::launcher

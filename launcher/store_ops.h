// Small helpers over c10d::Store for the launcher's keys: strings instead of
// byte vectors, and polling waits that stay responsive to signals (a blocking
// Store::wait could not be interrupted by Ctrl-C).
#pragma once

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <string>

namespace loom::launcher {

using Clock = std::chrono::steady_clock;

void setText(c10d::Store& store, const std::string& key, const std::string& value);
std::string getText(c10d::Store& store, const std::string& key);
/// Sets `key` to `value` unless it exists; returns the value in effect (ours if we won).
std::string setTextIfAbsent(c10d::Store& store, const std::string& key, const std::string& value);
/// The counter's current value (0 when it does not exist yet).
int64_t readCounter(c10d::Store& store, const std::string& key);

/// Polls `done` every few tens of milliseconds until it returns true (then
/// returns true) or `deadline` passes (returns false). `check_interrupt` runs
/// between polls and may throw to abandon the wait.
bool pollUntil(Clock::time_point deadline, const std::function<bool()>& done,
               const std::function<void()>& check_interrupt);

}  // namespace loom::launcher

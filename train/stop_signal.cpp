#include "train/stop_signal.h"

#include <atomic>
#include <csignal>

namespace loom::train {
namespace {

// The only process-wide mutable state in loom: what a signal handler may touch.
std::atomic<int> g_stop_signal{0};
static_assert(std::atomic<int>::is_always_lock_free, "signal handlers need a lock-free flag");

struct sigaction g_previous_int;
struct sigaction g_previous_term;

extern "C" void onStopSignal(int signal) {
  g_stop_signal.store(signal, std::memory_order_relaxed);
}

}  // namespace

StopSignal::StopSignal() {
  g_stop_signal.store(0);
  struct sigaction action = {};
  action.sa_handler = onStopSignal;
  sigemptyset(&action.sa_mask);
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignal::~StopSignal() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
}

bool StopSignal::requested(int* signal) const {
  const int value = g_stop_signal.load(std::memory_order_relaxed);
  if (signal != nullptr) {
    *signal = value;
  }
  return value != 0;
}

}  // namespace loom::train

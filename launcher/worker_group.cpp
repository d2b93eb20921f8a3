#include "launcher/worker_group.h"

#include <poll.h>

#include <algorithm>
#include <csignal>

namespace loom::launcher {
namespace {

using Clock = std::chrono::steady_clock;

void drainStream(UniqueFd& fd, WorkerOutput& output) {
  if (fd.valid() && !drainInto(fd.get(), output)) fd.reset();
}

std::chrono::milliseconds until(Clock::time_point deadline) {
  return std::max(std::chrono::milliseconds(0),
                  std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()));
}

}  // namespace

WorkerGroup::WorkerGroup(std::string program, std::vector<std::string> args, std::vector<WorkerLaunch> launches,
                         const LaunchLog& log)
    : program_(std::move(program)), args_(std::move(args)), log_(log) {
  workers_.reserve(launches.size());
  for (auto& launch : launches) workers_.push_back(start(std::move(launch)));
}

WorkerGroup::Worker WorkerGroup::start(WorkerLaunch launch) const {
  Worker w;
  w.out = std::make_unique<WorkerOutput>(launch.out);
  w.err = std::make_unique<WorkerOutput>(launch.err);
  w.process = std::make_unique<ChildProcess>(ChildSpec{program_, args_, launch.env});
  w.launch = std::move(launch);
  return w;
}

size_t WorkerGroup::add(WorkerLaunch launch) {
  workers_.push_back(start(std::move(launch)));
  return workers_.size() - 1;
}

bool WorkerGroup::pollStreams(std::chrono::milliseconds timeout, int extra_fd) {
  std::vector<pollfd> fds;
  std::vector<std::pair<UniqueFd*, WorkerOutput*>> streams;
  for (auto& w : workers_) {
    const std::pair<UniqueFd*, WorkerOutput*> pipes[] = {{&w.process->stdoutFd(), w.out.get()},
                                                         {&w.process->stderrFd(), w.err.get()}};
    for (auto [fd, output] : pipes) {
      if (!fd->valid()) continue;
      fds.push_back({fd->get(), POLLIN, 0});
      streams.emplace_back(fd, output);
    }
  }
  if (extra_fd >= 0) fds.push_back({extra_fd, POLLIN, 0});
  if (fds.empty()) return false;
  const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(timeout.count()));
  for (size_t i = 0; ready > 0 && i < streams.size(); ++i) {
    if (fds[i].revents != 0) drainStream(*streams[i].first, *streams[i].second);
  }
  return ready > 0;
}

int WorkerGroup::waitForEvents(std::chrono::milliseconds timeout, SignalWatch& signals) {
  pollStreams(timeout, signals.fd());
  return signals.takeStopSignal();
}

void WorkerGroup::drainWorker(Worker& w) {
  drainStream(w.process->stdoutFd(), *w.out);
  drainStream(w.process->stderrFd(), *w.err);
}

std::vector<size_t> WorkerGroup::reapExited() {
  std::vector<size_t> exited;
  for (size_t i = 0; i < workers_.size(); ++i) {
    Worker& w = workers_[i];
    if (w.process->running() && w.process->tryReap()) {
      drainWorker(w);
      exited.push_back(i);
    }
  }
  return exited;
}

bool WorkerGroup::anyRunning() const {
  return std::any_of(workers_.begin(), workers_.end(), [](const Worker& w) { return w.process->running(); });
}

bool WorkerGroup::allExited() const {
  return !anyRunning();
}

bool WorkerGroup::allSucceeded() const {
  return std::all_of(workers_.begin(), workers_.end(),
                     [](const Worker& w) { return !w.process->running() && w.process->status()->success(); });
}

int WorkerGroup::stop(std::chrono::milliseconds grace, SignalWatch& signals) {
  for (auto& w : workers_) {
    if (!w.process->running()) continue;
    log_.info("Sending process ", w.process->pid(), " (rank ", w.launch.rank, ") closing signal SIGTERM");
    w.process->signalGroup(SIGTERM);
  }
  int signal = 0;
  const auto deadline = Clock::now() + grace;
  while (anyRunning() && Clock::now() < deadline) {
    const int received = waitForEvents(std::min(until(deadline), std::chrono::milliseconds(100)), signals);
    reapExited();
    if (received != 0) {
      signal = received;
      log_.info("received ", signalName(received), " while stopping workers: not waiting for the grace period");
      break;
    }
  }
  for (auto& w : workers_) {
    if (!w.process->running()) continue;
    log_.info("Unable to shutdown process ", w.process->pid(), " (rank ", w.launch.rank,
              ") via SIGTERM, forcefully exiting via SIGKILL");
    w.process->signalGroup(SIGKILL);
  }
  while (anyRunning()) {
    const int received = waitForEvents(std::chrono::milliseconds(50), signals);
    if (signal == 0) signal = received;
    reapExited();
  }
  return signal;
}

void WorkerGroup::drainOutput(std::chrono::milliseconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline && pollStreams(until(deadline), -1)) {
  }
  // Whatever a killed writer left without a newline is still worth showing.
  for (auto& w : workers_) {
    w.out->finish();
    w.err->finish();
  }
}

}  // namespace loom::launcher

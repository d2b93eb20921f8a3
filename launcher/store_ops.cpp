#include "launcher/store_ops.h"

#include <algorithm>
#include <thread>

namespace loom::launcher {

void setText(c10d::Store& store, const std::string& key, const std::string& value) {
  store.set(key, std::vector<uint8_t>(value.begin(), value.end()));
}

std::string getText(c10d::Store& store, const std::string& key) {
  const std::vector<uint8_t> value = store.get(key);
  return std::string(value.begin(), value.end());
}

std::string setTextIfAbsent(c10d::Store& store, const std::string& key, const std::string& value) {
  // The value is never empty, so "expected empty" means "absent".
  const std::vector<uint8_t> result = store.compareSet(key, {}, std::vector<uint8_t>(value.begin(), value.end()));
  return std::string(result.begin(), result.end());
}

int64_t readCounter(c10d::Store& store, const std::string& key) {
  return store.add(key, 0);
}

bool pollUntil(Clock::time_point deadline, const std::function<bool()>& done,
               const std::function<void()>& check_interrupt) {
  auto pause = std::chrono::milliseconds(5);
  while (true) {
    if (done()) return true;
    if (Clock::now() >= deadline) return false;
    check_interrupt();
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds(50));
  }
}

}  // namespace loom::launcher

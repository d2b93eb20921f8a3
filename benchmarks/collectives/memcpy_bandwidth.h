// This machine's memory-copy bandwidth: the ceiling a loopback collective's
// bandwidth is compared against (every byte a collective moves between ranks on
// one host is copied at least once through memory).
#pragma once

#include <cstdint>

namespace loom::bench {

struct CopyBandwidth {
  double time_us = 0;   ///< median time of one copy of `bytes`
  double gb_per_s = 0;  ///< bytes copied per second / 1e9 (each byte is read once and written once)
};

/// Copies `bytes` between two buffers with `threads` threads (each copies a
/// contiguous slice with std::memcpy), `reps` times after one untimed copy that
/// also faults the pages in; returns the median. REQUIRES: bytes, threads, reps >= 1.
CopyBandwidth measureMemcpy(int64_t bytes, int threads, int reps);

}  // namespace loom::bench

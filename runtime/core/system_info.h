// Facts about the running process that explain its performance.
#pragma once

#include <string>

namespace loom {

/// Paths of the BLAS/LAPACK libraries mapped into this process (from
/// /proc/self/maps, symlinks resolved), comma-separated; "none" if none is
/// mapped yet. Debian's libtorch calls the system libblas.so.3, which is
/// OpenBLAS only when libopenblas0-pthread provides it (otherwise the
/// reference BLAS, ~20x slower).
std::string loadedBlasLibraries();

/// Peak resident set size of this process in bytes (VmHWM).
long long peakRssBytes();

}  // namespace loom

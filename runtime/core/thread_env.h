// The threading environment loom's CPU processes run in.
//
// Debian's libtorch runs element-wise ops on libgomp's OpenMP pool and GEMMs on
// OpenBLAS's own pthread pool. With libgomp's default wait policy, idle OpenMP
// workers keep spinning while OpenBLAS threads run a GEMM on the same cores: on a
// 2-core machine that made a training step about 2.5x slower. OMP_WAIT_POLICY=PASSIVE
// makes idle workers sleep instead. libgomp reads the variable once, when it is
// loaded (before main), so a program can only choose it by executing itself again
// with the variable set, which is what loom-train does (the launcher sets it for
// its workers the same way torchrun sets OMP_NUM_THREADS).
#pragma once

#include <string>

namespace loom {

/// When OMP_WAIT_POLICY is unset: sets it to PASSIVE and re-executes the running
/// program with the same arguments (does not return). Otherwise returns at once.
/// If the re-execution fails the process simply continues with the default policy.
void reexecWithPassiveOpenMpWait(char** argv);

/// A one-line description of the OpenMP wait policy in effect and who chose it.
std::string openMpWaitPolicyDescription();

/// Sizes OpenBLAS's own thread pool (OpenBLAS reads OPENBLAS_NUM_THREADS or
/// OMP_NUM_THREADS only when it loads, and otherwise starts one thread per
/// core in every process: several ranks on one machine would oversubscribe it).
/// Calls openblas_set_num_threads when the loaded BLAS has it; returns false
/// when it does not (another BLAS, which then keeps its own setting).
bool setBlasThreads(int threads);

}  // namespace loom

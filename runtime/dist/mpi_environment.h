// The MPI library's process-wide lifetime, and how to tell that mpirun started us.
#pragma once

#include "runtime/core/build_config.h"

#if LOOM_WITH_MPI

#include <atomic>
#include <chrono>
#include <functional>
#include <string>

namespace loom::dist {

/// True when an MPI launcher (mpirun/mpiexec of Open MPI, MPICH, Intel MPI, or
/// srun with PMI) started this process, judged from the variables it sets:
/// OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE. Calls no MPI function, so it is
/// safe before deciding whether to initialise MPI. `getenv` is std::getenv in
/// production and a fake in tests.
bool launchedByMpirun(const std::function<const char*(const char*)>& getenv);

/// MPI initialised once for the whole process.
///
/// This is loom's one process-wide object, because MPI allows exactly one
/// MPI_Init and one MPI_Finalize per process: a second initialisation after
/// finalising is an error, so the environment cannot be owned by a job object
/// that might be rebuilt. It is created on first use and finalises MPI when the
/// process exits (static destruction), unless someone else initialised MPI
/// first, in which case that owner finalises.
///
/// loom requests MPI_THREAD_MULTIPLE: every MPI communicator runs its blocking
/// calls on its own thread (see mpi_communicator.h), so several threads are
/// inside MPI at once.
///
/// At exit, finalisation waits up to kFinalizeGrace for loom's communication
/// threads to leave MPI. A thread can stay blocked inside MPI forever (a peer
/// was lost and the communicator was aborted): MPI offers no way to interrupt
/// it, so MPI is then left unfinalised and mpirun ends the job, which is the
/// intended outcome after a lost peer (MPI jobs are not elastic).
class MpiEnvironment {
 public:
  static constexpr std::chrono::milliseconds kFinalizeGrace{2000};

  /// Initialises MPI on the first call. Throws c10::Error when MPI cannot be
  /// initialised or does not provide MPI_THREAD_MULTIPLE. Thread-safe.
  static MpiEnvironment& instance();

  MpiEnvironment(const MpiEnvironment&) = delete;
  MpiEnvironment& operator=(const MpiEnvironment&) = delete;

  int worldRank() const { return world_rank_; }
  int worldSize() const { return world_size_; }
  /// The first line of MPI_Get_library_version, e.g. "Open MPI v4.1.4, ...".
  const std::string& libraryVersion() const { return library_version_; }

  /// Bookkeeping of loom's communication threads (called by them only): a
  /// thread counts from before it first enters MPI until it has left MPI for good.
  void communicationThreadStarted() { live_threads_.fetch_add(1); }
  void communicationThreadFinished() { live_threads_.fetch_sub(1); }

 private:
  MpiEnvironment();
  ~MpiEnvironment();

  bool owns_mpi_ = false;
  int world_rank_ = 0;
  int world_size_ = 1;
  std::string library_version_;
  std::atomic<int> live_threads_{0};
};

}  // namespace loom::dist

#endif  // LOOM_WITH_MPI

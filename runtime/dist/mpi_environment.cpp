#include "runtime/dist/mpi_environment.h"

#include "runtime/dist/mpi_check.h"

#include <c10/util/Exception.h>

#include <chrono>
#include <iostream>
#include <thread>

namespace loom::dist {
namespace {

const char* threadLevelName(int level) {
  switch (level) {
    case MPI_THREAD_SINGLE:
      return "MPI_THREAD_SINGLE";
    case MPI_THREAD_FUNNELED:
      return "MPI_THREAD_FUNNELED";
    case MPI_THREAD_SERIALIZED:
      return "MPI_THREAD_SERIALIZED";
    case MPI_THREAD_MULTIPLE:
      return "MPI_THREAD_MULTIPLE";
  }
  return "an unknown thread level";
}

}  // namespace

bool launchedByMpirun(const std::function<const char*(const char*)>& getenv) {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"}) {
    const char* value = getenv(name);
    if (value != nullptr && *value != '\0') return true;
  }
  return false;
}

MpiEnvironment& MpiEnvironment::instance() {
  static MpiEnvironment environment;  // the one process-wide object: see the class comment
  return environment;
}

MpiEnvironment::MpiEnvironment() {
  int initialized = 0;
  LOOM_MPI_CHECK(MPI_Initialized(&initialized), "checking whether MPI is initialised");
  int provided = MPI_THREAD_SINGLE;
  if (initialized) {
    LOOM_MPI_CHECK(MPI_Query_thread(&provided), "querying the thread level of the MPI initialised by the host program");
  } else {
    LOOM_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided),
                   "initialising MPI; is this process started by mpirun?");
    owns_mpi_ = true;
  }
  TORCH_CHECK(provided >= MPI_THREAD_MULTIPLE, "MPI provides ", threadLevelName(provided),
              " but loom's MPI communicator needs MPI_THREAD_MULTIPLE (each communicator runs its blocking calls on "
              "its own thread). Use an MPI built with thread support (Open MPI >= 3 and MPICH are), or the gloo "
              "backend.");
  LOOM_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_), "rank in MPI_COMM_WORLD");
  LOOM_MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &world_size_), "size of MPI_COMM_WORLD");
  char version[MPI_MAX_LIBRARY_VERSION_STRING] = {};
  int length = 0;
  LOOM_MPI_CHECK(MPI_Get_library_version(version, &length), "MPI library version");
  library_version_.assign(version, length);
  library_version_ = library_version_.substr(0, library_version_.find_first_of("\r\n"));
}

MpiEnvironment::~MpiEnvironment() {
  if (!owns_mpi_) return;
  const auto deadline = std::chrono::steady_clock::now() + kFinalizeGrace;
  while (live_threads_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (const int stuck = live_threads_.load(); stuck > 0) {
    // No logger exists during static destruction; this line is the only trace of why MPI was not finalised.
    std::cerr << "loom: not finalising MPI: " << stuck
              << " communication thread(s) are still blocked inside MPI (an aborted communicator waits for a lost "
                 "peer); mpirun will end the job\n";
    return;
  }
  int finalized = 0;
  if (MPI_Finalized(&finalized) == MPI_SUCCESS && !finalized) MPI_Finalize();
}

}  // namespace loom::dist

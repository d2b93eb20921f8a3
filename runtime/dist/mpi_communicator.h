// The MPI backend of the Communicator (ARCHITECTURE.md §2): CPU tensors over
// Open MPI (or any MPI with MPI_THREAD_MULTIPLE) for jobs started by mpirun.
// Not elastic: MPI cannot replace a lost rank.
#pragma once

#include "runtime/core/build_config.h"

#if LOOM_WITH_MPI

#include "runtime/dist/communicator.h"

#include <torch/csrc/distributed/c10d/Store.hpp>

#include <memory>
#include <string>

namespace loom::dist {

/// A communicator over a duplicate of MPI_COMM_WORLD (so loom's traffic never
/// matches the host program's). Initialises MPI through MpiEnvironment.
/// Collective over MPI_COMM_WORLD: every rank calls it, from one thread.
///
/// Execution: collectives, barrier and split run as blocking MPI calls on the
/// communicator's own thread, in issue order, so they progress while the caller
/// computes (mpi_executor.h); send/recv are posted at once (MPI_Isend/Irecv) and
/// a second thread waits for them in issue order, so a ring of sends and
/// receives cannot deadlock. Tags must lie in [0, MPI_TAG_UB]. Messages are
/// limited to 2^31 - 1 elements (MPI's int counts). Non-contiguous tensors go
/// through a contiguous copy. float16/bfloat16 reduce in float32 per element
/// and round back (mpi_types.h); kAvg on integer tensors truncates toward zero
/// (like NCCL's ncclAvg).
///
/// `progress_store` (optional, private to this communicator and the ones split
/// from it, shared by all ranks, e.g. a TCPStore at mpiBootstrapEndpoint())
/// lets a timed-out operation name the ranks that did not arrive.
///
/// abort() makes pending and later waits fail at once, but cannot interrupt a
/// thread blocked inside MPI: MPI has no cancellation for collectives. Such a
/// thread stays blocked until the peer shows up; the process should then exit
/// (or call MPI_Abort), and mpirun ends the job (see MpiEnvironment).
/// Destroy a communicator only after its operations completed or after abort().
std::unique_ptr<Communicator> makeMpiCommunicator(const CommunicatorOptions& opts = {},
                                                  c10::intrusive_ptr<c10d::Store> progress_store = {});

}  // namespace loom::dist

#endif  // LOOM_WITH_MPI

// Communicator over Open MPI for host (CPU) buffers. All-reduces are non-blocking (MPI_Iallreduce)
// so the trainer can keep computing while buckets of gradients travel; Wait() polls MPI_Test until
// completion or the timeout. Errors come back as Status (MPI_ERRORS_RETURN), never an abort.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "comm/communicator.h"

namespace lorasweep {

// MPI_COMM_WORLD (MPI_Init_thread on first call, MPI_Finalize registered at exit).
absl::StatusOr<std::unique_ptr<Communicator>> MakeMpiWorldCommunicator();

}  // namespace lorasweep

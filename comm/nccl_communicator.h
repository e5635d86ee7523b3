// Communicator over NCCL for device (GPU) buffers, built with the CUDA backend. One GPU per local
// rank (the MPI node-local rank, among the devices CUDA_VISIBLE_DEVICES leaves visible). The
// ncclUniqueId is created by rank 0 and broadcast over MPI. Collectives run on the
// communicator's own stream, ordered after the compute stream by an event, so the trainer keeps
// computing while gradient buckets travel. Host-side operations (scalar sums, broadcast, barrier,
// control messages, splitting) go through the MPI communicator it was built from.
//
// Every CUDA and NCCL call is checked and turned into a Status naming the call; Wait() polls the
// completion event and NCCL's asynchronous error with the communicator's timeout and aborts the
// NCCL communicator on timeout, so a dead peer is an error, not a hang.
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "comm/communicator.h"

namespace lorasweep {

class NcclCommunicator : public Communicator {
 public:
  // Builds the NCCL communicator over the ranks of `host` (which it keeps for host operations).
  static absl::StatusOr<std::unique_ptr<NcclCommunicator>> Create(
      std::unique_ptr<Communicator> host);

  // The CUDA stream the trainer computes on (a cudaStream_t; nullptr = the legacy default stream).
  // Each collective waits for the work queued on it so far.
  virtual void set_compute_stream(void* stream) = 0;
  // The device this rank uses.
  virtual int device() const = 0;
  // In-place all-reduce of bf16 values (2 bytes each) in device memory.
  virtual absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceBf16(
      void* data, int64_t count, ReduceOp op) = 0;
};

// Number of CUDA devices visible to this process (0 when there is no GPU or no driver).
int VisibleCudaDevices();

}  // namespace lorasweep

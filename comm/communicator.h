// The collectives data-parallel training needs, behind one small interface (as PyTorch's
// ProcessGroup): rank, size, all-reduce (sum / average), broadcast, barrier, and splitting into
// sub-communicators so a trial can run on any subset of the world's ranks.
//
// Implementations: SelfCommunicator (one process, no MPI), MpiCommunicator (host buffers, Open MPI,
// non-blocking so communication overlaps compute), NcclCommunicator (device buffers; built with
// CUDA). Every collective is bounded by a timeout: a peer that died or hangs yields an error Status
// naming the operation, never a wait without end.
//
// Accounting: every all-reduce adds the payload bytes it reduced and the seconds the caller spent
// blocked in Wait() to stats(), which the trainer reports as comm_bytes / comm_wait_s.
//
// Thread-safety: one thread of control per communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lorasweep {

enum class ReduceOp { kSum, kAverage };

struct CommStats {
  int64_t all_reduce_calls = 0;
  int64_t all_reduce_bytes = 0;  // payload bytes passed to all-reduces (per rank)
  double wait_seconds = 0;       // time blocked waiting for collectives to complete
};

// A collective in flight; Wait() blocks until it completes or the timeout passes.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual absl::Status Wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  // Rank among the processes of this node (GPU selection).
  virtual int local_rank() const = 0;
  virtual std::string Describe() const = 0;

  // Starts an in-place all-reduce of `count` floats. The buffer must not be touched until Wait().
  virtual absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduce(float* data,
                                                                            int64_t count,
                                                                            ReduceOp op) = 0;
  // Blocking all-reduce of doubles / int64 (small scalars: losses and token counts; not counted
  // in the gradient accounting).
  virtual absl::Status AllReduceDouble(double* data, int64_t count) = 0;
  virtual absl::Status AllReduceInt64(int64_t* data, int64_t count) = 0;
  virtual absl::Status Broadcast(void* data, int64_t bytes, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // Ranks with the same color form a new communicator, ordered by key (MPI_Comm_split).
  virtual absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) = 0;

  // Start + Wait.
  absl::Status AllReduce(float* data, int64_t count, ReduceOp op);

  // Point-to-point control messages (the sweep protocol): send `bytes` to rank `dest`; receive
  // the next message from any rank if one has arrived (nullopt otherwise).
  struct Message {
    int source = 0;
    std::string bytes;
  };
  virtual absl::Status SendMessage(int dest, const std::string& bytes) = 0;
  virtual absl::StatusOr<std::optional<Message>> TryReceiveMessage() = 0;
  // Blocks until a message arrives (polling; fails after timeout_seconds()).
  absl::StatusOr<Message> ReceiveMessage();

  // Ends the whole job with `exit_code` (MPI_Abort under MPI): what a rank does after an error, so
  // its peers fail now instead of waiting for a collective's timeout.
  [[noreturn]] virtual void Abort(int exit_code) = 0;

  const CommStats& stats() const { return stats_; }
  void set_timeout_seconds(double seconds) { timeout_seconds_ = seconds; }
  double timeout_seconds() const { return timeout_seconds_; }

 protected:
  CommStats stats_;
  double timeout_seconds_ = 300;
};

// The world of one process: collectives are identities (an average of one value is itself).
std::unique_ptr<Communicator> MakeSelfCommunicator();

// The world this process was launched in: MPI's world when started by mpirun/srun (MPI is
// initialised on first use and finalised at exit), else a SelfCommunicator.
absl::StatusOr<std::unique_ptr<Communicator>> MakeWorldCommunicator();

// Whether the environment says an MPI launcher started this process (Open MPI, PMIx or Slurm).
bool LaunchedByMpi();

}  // namespace lorasweep

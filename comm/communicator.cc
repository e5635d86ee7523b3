#include "comm/communicator.h"

#include <cstdlib>

#include "comm/mpi_communicator.h"

namespace lorasweep {
namespace {

class DonePending : public PendingCollective {
 public:
  absl::Status Wait() override { return absl::OkStatus(); }
};

class SelfCommunicator : public Communicator {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  int local_rank() const override { return 0; }
  std::string Describe() const override { return "single process"; }
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduce(float*, int64_t count,
                                                                    ReduceOp) override {
    ++stats_.all_reduce_calls;
    stats_.all_reduce_bytes += count * static_cast<int64_t>(sizeof(float));
    return std::make_unique<DonePending>();
  }
  absl::Status AllReduceDouble(double*, int64_t) override { return absl::OkStatus(); }
  absl::Status AllReduceInt64(int64_t*, int64_t) override { return absl::OkStatus(); }
  absl::Status Broadcast(void*, int64_t, int) override { return absl::OkStatus(); }
  absl::Status Barrier() override { return absl::OkStatus(); }
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int, int) override {
    return MakeSelfCommunicator();
  }
  [[noreturn]] void Abort(int exit_code) override { std::exit(exit_code); }
};

}  // namespace

absl::Status Communicator::AllReduce(float* data, int64_t count, ReduceOp op) {
  absl::StatusOr<std::unique_ptr<PendingCollective>> pending = StartAllReduce(data, count, op);
  if (!pending.ok()) return pending.status();
  return (*pending)->Wait();
}

std::unique_ptr<Communicator> MakeSelfCommunicator() {
  return std::make_unique<SelfCommunicator>();
}

bool LaunchedByMpi() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK"}) {
    if (std::getenv(name) != nullptr) return true;
  }
  return false;
}

absl::StatusOr<std::unique_ptr<Communicator>> MakeWorldCommunicator() {
  if (!LaunchedByMpi()) return MakeSelfCommunicator();
  return MakeMpiWorldCommunicator();
}

}  // namespace lorasweep

#include "comm/communicator.h"

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_format.h"

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
  absl::Status SendMessage(int, const std::string&) override {
    return absl::FailedPreconditionError("a single process has no peer to send messages to");
  }
  absl::StatusOr<std::optional<Message>> TryReceiveMessage() override {
    return std::optional<Message>();
  }
};

}  // namespace

absl::Status Communicator::AllReduce(float* data, int64_t count, ReduceOp op) {
  absl::StatusOr<std::unique_ptr<PendingCollective>> pending = StartAllReduce(data, count, op);
  if (!pending.ok()) return pending.status();
  return (*pending)->Wait();
}

absl::StatusOr<Communicator::Message> Communicator::ReceiveMessage() {
  const auto start = std::chrono::steady_clock::now();
  while (true) {
    absl::StatusOr<std::optional<Message>> message = TryReceiveMessage();
    if (!message.ok()) return message.status();
    if (message->has_value()) return **message;
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() >
        timeout_seconds_) {
      return absl::DeadlineExceededError(absl::StrFormat(
          "no message arrived within %.0f s (a peer rank died or hangs)", timeout_seconds_));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
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

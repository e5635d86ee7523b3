#include "comm/mpi_communicator.h"

#include <mpi.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lorasweep {
namespace {

using Clock = std::chrono::steady_clock;

// Control messages use their own tag, apart from any collective traffic.
constexpr int kMessageTag = 7001;

absl::Status MpiError(int code, const std::string& what) {
  if (code == MPI_SUCCESS) return absl::OkStatus();
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  MPI_Error_string(code, text, &length);
  return absl::UnavailableError(absl::StrCat(what, " failed: ", std::string(text, length)));
}

#define LORASWEEP_MPI(call, what)                          \
  do {                                                     \
    absl::Status mpi_status_ = MpiError((call), (what));   \
    if (!mpi_status_.ok()) return mpi_status_;             \
  } while (0)

// Polls `request` until done or `timeout` seconds pass; adds the blocked time to `waited`.
absl::Status WaitRequest(MPI_Request* request, double timeout, const std::string& what,
                         double* waited) {
  const Clock::time_point start = Clock::now();
  int done = 0;
  absl::Status status;
  for (int spins = 0;; ++spins) {
    status = MpiError(MPI_Test(request, &done, MPI_STATUS_IGNORE), what);
    if (!status.ok() || done) break;
    const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
    if (elapsed > timeout) {
      status = absl::DeadlineExceededError(absl::StrFormat(
          "%s did not complete within %.0f s: a peer rank died or hangs", what, timeout));
      break;
    }
    // Spin briefly (latency), then yield the core to compute threads and other ranks.
    if (spins > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  if (waited) *waited += std::chrono::duration<double>(Clock::now() - start).count();
  return status;
}

class MpiPending : public PendingCollective {
 public:
  MpiPending(MPI_Request request, float* data, int64_t count, bool average, int size,
             double timeout, CommStats* stats)
      : request_(request), data_(data), count_(count), average_(average), size_(size),
        timeout_(timeout), stats_(stats) {}
  ~MpiPending() override {
    if (request_ != MPI_REQUEST_NULL) (void)Wait();
  }
  absl::Status Wait() override {
    if (request_ == MPI_REQUEST_NULL) return absl::OkStatus();
    absl::Status status = WaitRequest(&request_, timeout_, "MPI all-reduce", &stats_->wait_seconds);
    if (!status.ok()) {
      request_ = MPI_REQUEST_NULL;  // abandoned: the job is failing anyway
      return status;
    }
    if (average_) {
      const float inv = 1.0f / static_cast<float>(size_);
      for (int64_t i = 0; i < count_; ++i) data_[i] *= inv;
    }
    return absl::OkStatus();
  }

 private:
  MPI_Request request_;
  float* data_;
  int64_t count_;
  bool average_;
  int size_;
  double timeout_;
  CommStats* stats_;
};

class MpiCommunicator : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm, bool owned) : comm_(comm), owned_(owned) {
    MPI_Comm_rank(comm_, &rank_);
    MPI_Comm_size(comm_, &size_);
    MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
    MPI_Comm local;
    MPI_Comm_split_type(comm_, MPI_COMM_TYPE_SHARED, rank_, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &local_rank_);
    MPI_Comm_free(&local);
  }
  ~MpiCommunicator() override {
    if (owned_) MPI_Comm_free(&comm_);
  }

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string Describe() const override {
    return absl::StrCat("MPI rank ", rank_, " of ", size_, " (local rank ", local_rank_, ")");
  }

  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduce(float* data, int64_t count,
                                                                    ReduceOp op) override {
    if (count > INT32_MAX) {
      return absl::InvalidArgumentError("all-reduce of more than 2^31 floats in one call");
    }
    MPI_Request request;
    LORASWEEP_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_FLOAT, MPI_SUM,
                                 comm_, &request),
                  "MPI_Iallreduce");
    ++stats_.all_reduce_calls;
    stats_.all_reduce_bytes += count * static_cast<int64_t>(sizeof(float));
    return std::make_unique<MpiPending>(request, data, count, op == ReduceOp::kAverage, size_,
                                        timeout_seconds_, &stats_);
  }

  absl::Status AllReduceDouble(double* data, int64_t count) override {
    MPI_Request request;
    LORASWEEP_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_DOUBLE, MPI_SUM,
                                 comm_, &request),
                  "MPI_Iallreduce(double)");
    return WaitRequest(&request, timeout_seconds_, "MPI all-reduce (double)", nullptr);
  }

  absl::Status AllReduceInt64(int64_t* data, int64_t count) override {
    MPI_Request request;
    LORASWEEP_MPI(MPI_Iallreduce(MPI_IN_PLACE, data, static_cast<int>(count), MPI_INT64_T,
                                 MPI_SUM, comm_, &request),
                  "MPI_Iallreduce(int64)");
    return WaitRequest(&request, timeout_seconds_, "MPI all-reduce (int64)", nullptr);
  }

  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    MPI_Request request;
    LORASWEEP_MPI(MPI_Ibcast(data, static_cast<int>(bytes), MPI_BYTE, root, comm_, &request),
                  "MPI_Ibcast");
    return WaitRequest(&request, timeout_seconds_, "MPI broadcast", nullptr);
  }

  absl::Status Barrier() override {
    MPI_Request request;
    LORASWEEP_MPI(MPI_Ibarrier(comm_, &request), "MPI_Ibarrier");
    return WaitRequest(&request, timeout_seconds_, "MPI barrier", nullptr);
  }

  absl::Status SendMessage(int dest, const std::string& bytes) override {
    LORASWEEP_MPI(MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, dest,
                           kMessageTag, comm_),
                  absl::StrCat("MPI_Send to rank ", dest));
    return absl::OkStatus();
  }

  absl::StatusOr<std::optional<Message>> TryReceiveMessage() override {
    int arrived = 0;
    MPI_Status status;
    LORASWEEP_MPI(MPI_Iprobe(MPI_ANY_SOURCE, kMessageTag, comm_, &arrived, &status),
                  "MPI_Iprobe");
    if (!arrived) return std::optional<Message>();
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Message message;
    message.source = status.MPI_SOURCE;
    message.bytes.resize(count);
    LORASWEEP_MPI(MPI_Recv(message.bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, kMessageTag,
                           comm_, MPI_STATUS_IGNORE),
                  "MPI_Recv");
    return std::optional<Message>(std::move(message));
  }

  [[noreturn]] void Abort(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::exit(exit_code);  // not reached
  }

  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    MPI_Comm sub;
    LORASWEEP_MPI(MPI_Comm_split(comm_, color, key, &sub), "MPI_Comm_split");
    auto result = std::make_unique<MpiCommunicator>(sub, true);
    result->set_timeout_seconds(timeout_seconds_);
    return std::unique_ptr<Communicator>(std::move(result));
  }

 private:
  MPI_Comm comm_;
  bool owned_;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

void FinalizeMpi() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Communicator>> MakeMpiWorldCommunicator() {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    LORASWEEP_MPI(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided),
                  "MPI_Init_thread");
    std::atexit(FinalizeMpi);
  }
  MPI_Comm world;
  LORASWEEP_MPI(MPI_Comm_dup(MPI_COMM_WORLD, &world), "MPI_Comm_dup");
  return std::unique_ptr<Communicator>(std::make_unique<MpiCommunicator>(world, true));
}

}  // namespace lorasweep

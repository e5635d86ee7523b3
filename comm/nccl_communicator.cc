#include "comm/nccl_communicator.h"

#include <cuda_runtime_api.h>
#include <nccl.h>

#include <chrono>
#include <cstdlib>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace lorasweep {
namespace {

absl::Status CudaStatus(cudaError_t e, const char* call) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(call, ": ", cudaGetErrorString(e)));
}

absl::Status NcclStatus(ncclResult_t r, const char* call) {
  if (r == ncclSuccess) return absl::OkStatus();
  return absl::UnavailableError(absl::StrCat(call, ": ", ncclGetErrorString(r)));
}

#define LORASWEEP_CUDA_CHECK(call)                                 \
  do {                                                             \
    absl::Status cuda_status_ = CudaStatus((call), #call);         \
    if (!cuda_status_.ok()) return cuda_status_;                   \
  } while (0)
#define LORASWEEP_NCCL_CHECK(call)                                 \
  do {                                                             \
    absl::Status nccl_status_ = NcclStatus((call), #call);         \
    if (!nccl_status_.ok()) return nccl_status_;                   \
  } while (0)

class NcclPending : public PendingCollective {
 public:
  NcclPending(cudaEvent_t done, ncclComm_t comm, double timeout, CommStats* stats)
      : done_(done), comm_(comm), timeout_(timeout), stats_(stats) {}
  ~NcclPending() override {
    if (done_ != nullptr) {
      (void)Wait();
    }
  }
  absl::Status Wait() override {
    if (done_ == nullptr) return absl::OkStatus();
    const auto start = std::chrono::steady_clock::now();
    absl::Status status;
    while (true) {
      const cudaError_t q = cudaEventQuery(done_);
      if (q == cudaSuccess) break;
      if (q != cudaErrorNotReady) {
        status = CudaStatus(q, "cudaEventQuery");
        break;
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(comm_, &async);
      if (async != ncclSuccess) {
        status = NcclStatus(async, "NCCL all-reduce (asynchronous error)");
        break;
      }
      const double elapsed =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed > timeout_) {
        ncclCommAbort(comm_);
        status = absl::DeadlineExceededError(absl::StrFormat(
            "NCCL all-reduce did not complete within %.0f s: a peer rank died or hangs", timeout_));
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(20));
    }
    stats_->wait_seconds +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    cudaEventDestroy(done_);
    done_ = nullptr;
    return status;
  }

 private:
  cudaEvent_t done_;
  ncclComm_t comm_;
  double timeout_;
  CommStats* stats_;
};

class NcclCommunicatorImpl : public NcclCommunicator {
 public:
  NcclCommunicatorImpl(std::unique_ptr<Communicator> host, int device)
      : host_(std::move(host)), device_(device) {}
  ~NcclCommunicatorImpl() override {
    if (comm_ != nullptr) ncclCommDestroy(comm_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
    if (ready_ != nullptr) cudaEventDestroy(ready_);
  }

  absl::Status Init() {
    LORASWEEP_CUDA_CHECK(cudaSetDevice(device_));
    LORASWEEP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    LORASWEEP_CUDA_CHECK(cudaEventCreateWithFlags(&ready_, cudaEventDisableTiming));
    ncclUniqueId id;
    if (host_->rank() == 0) LORASWEEP_NCCL_CHECK(ncclGetUniqueId(&id));
    absl::Status sent = host_->Broadcast(&id, sizeof(id), 0);
    if (!sent.ok()) return sent;
    LORASWEEP_NCCL_CHECK(ncclCommInitRank(&comm_, host_->size(), id, host_->rank()));
    return absl::OkStatus();
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }
  int local_rank() const override { return host_->local_rank(); }
  int device() const override { return device_; }
  std::string Describe() const override {
    return absl::StrCat("NCCL rank ", rank(), " of ", size(), " on GPU ", device_);
  }
  void set_compute_stream(void* stream) override {
    compute_stream_ = static_cast<cudaStream_t>(stream);
  }

  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduce(float* data, int64_t count,
                                                                    ReduceOp op) override {
    return Start(data, count, ncclFloat32, sizeof(float), op);
  }
  absl::StatusOr<std::unique_ptr<PendingCollective>> StartAllReduceBf16(void* data, int64_t count,
                                                                        ReduceOp op) override {
    return Start(data, count, ncclBfloat16, 2, op);
  }

  absl::Status AllReduceDouble(double* data, int64_t count) override {
    return host_->AllReduceDouble(data, count);
  }
  absl::Status AllReduceInt64(int64_t* data, int64_t count) override {
    return host_->AllReduceInt64(data, count);
  }
  absl::Status Broadcast(void* data, int64_t bytes, int root) override {
    return host_->Broadcast(data, bytes, root);
  }
  absl::Status Barrier() override { return host_->Barrier(); }
  absl::Status SendMessage(int dest, const std::string& bytes) override {
    return host_->SendMessage(dest, bytes);
  }
  absl::StatusOr<std::optional<Message>> TryReceiveMessage() override {
    return host_->TryReceiveMessage();
  }
  absl::StatusOr<std::unique_ptr<Communicator>> Split(int color, int key) override {
    absl::StatusOr<std::unique_ptr<Communicator>> host = host_->Split(color, key);
    if (!host.ok()) return host.status();
    absl::StatusOr<std::unique_ptr<NcclCommunicator>> nccl = Create(*std::move(host));
    if (!nccl.ok()) return nccl.status();
    return std::unique_ptr<Communicator>(*std::move(nccl));
  }
  [[noreturn]] void Abort(int exit_code) override {
    if (comm_ != nullptr) ncclCommAbort(comm_);
    host_->Abort(exit_code);
    std::exit(exit_code);  // not reached
  }

 private:
  absl::StatusOr<std::unique_ptr<PendingCollective>> Start(void* data, int64_t count,
                                                           ncclDataType_t type, int64_t width,
                                                           ReduceOp op) {
    LORASWEEP_CUDA_CHECK(cudaSetDevice(device_));
    // Ordered after the gradients the compute stream has queued so far.
    LORASWEEP_CUDA_CHECK(cudaEventRecord(ready_, compute_stream_));
    LORASWEEP_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_, 0));
    LORASWEEP_NCCL_CHECK(ncclAllReduce(data, data, static_cast<size_t>(count), type,
                                       op == ReduceOp::kAverage ? ncclAvg : ncclSum, comm_,
                                       stream_));
    cudaEvent_t done = nullptr;
    LORASWEEP_CUDA_CHECK(cudaEventCreateWithFlags(&done, cudaEventDisableTiming));
    LORASWEEP_CUDA_CHECK(cudaEventRecord(done, stream_));
    ++stats_.all_reduce_calls;
    stats_.all_reduce_bytes += count * width;
    return std::unique_ptr<PendingCollective>(
        std::make_unique<NcclPending>(done, comm_, timeout_seconds_, &stats_));
  }

  std::unique_ptr<Communicator> host_;
  int device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  cudaStream_t compute_stream_ = nullptr;
  cudaEvent_t ready_ = nullptr;
};

}  // namespace

int VisibleCudaDevices() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) return 0;
  return count;
}

absl::StatusOr<std::unique_ptr<NcclCommunicator>> NcclCommunicator::Create(
    std::unique_ptr<Communicator> host) {
  const int devices = VisibleCudaDevices();
  if (devices == 0) {
    return absl::FailedPreconditionError("NCCL communicator: no CUDA device is visible");
  }
  const int local = host->local_rank();
  if (local >= devices) {
    return absl::FailedPreconditionError(absl::StrCat(
        "NCCL communicator: local rank ", local, " has no GPU (", devices,
        " visible; one GPU per local rank, see CUDA_VISIBLE_DEVICES)"));
  }
  auto comm = std::make_unique<NcclCommunicatorImpl>(std::move(host), local);
  absl::Status status = comm->Init();
  if (!status.ok()) return status;
  return std::unique_ptr<NcclCommunicator>(std::move(comm));
}

}  // namespace lorasweep

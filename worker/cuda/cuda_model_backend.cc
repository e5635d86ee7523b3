#include "worker/cuda/cuda_model_backend.h"

#include <cmath>

#include "absl/strings/str_cat.h"
#include "comm/nccl_communicator.h"
#include "common/status_macros.h"
#include "kernels/adamw_cuda.h"
#include "worker/cuda/cuda_llama_model.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"

namespace lorasweep {
namespace {

class CudaModelBackend : public ModelBackend {
 public:
  CudaModelBackend(const LlamaWeights& weights, Communicator* comm)
      : weights_(weights), comm_(comm) {}

  absl::Status Init(const LoraLayout& layout) {
    const int devices = CudaDeviceCount();
    if (devices == 0) return absl::FailedPreconditionError("device: cuda: no CUDA device visible");
    const int device = comm_->local_rank() % devices;
    ASSIGN_OR_RETURN(model_, CudaLlamaModel::Create(weights_, layout, device));
    n_ = layout.num_parameters();
    ASSIGN_OR_RETURN(params_, DeviceBuffer<float>::Allocate(n_, "adapter parameters"));
    ASSIGN_OR_RETURN(exp_avg_, DeviceBuffer<float>::Allocate(n_, "AdamW exp_avg"));
    ASSIGN_OR_RETURN(exp_avg_sq_, DeviceBuffer<float>::Allocate(n_, "AdamW exp_avg_sq"));
    ASSIGN_OR_RETURN(grads_, DeviceBuffer<float>::Allocate(n_, "adapter gradients"));
    ASSIGN_OR_RETURN(sum_sq_, DeviceBuffer<double>::Allocate(1, "gradient norm"));
    if (comm_->size() > 1) {
      ASSIGN_OR_RETURN(std::unique_ptr<Communicator> copy, comm_->Split(0, comm_->rank()));
      ASSIGN_OR_RETURN(nccl_, NcclCommunicator::Create(std::move(copy)));
      nccl_->set_compute_stream(model_->stream());
    }
    return absl::OkStatus();
  }

  std::string Describe() const override { return absl::StrCat("cuda:", model_->device()); }

  absl::Status SetState(const std::vector<float>& params, const std::vector<float>& exp_avg,
                        const std::vector<float>& exp_avg_sq) override {
    if (static_cast<int64_t>(params.size()) != n_) {
      return absl::InvalidArgumentError("adapter state of the wrong size");
    }
    RETURN_IF_ERROR(Sync());
    RETURN_IF_ERROR(params_.CopyFromHost(params.data(), n_));
    for (auto [host, device] : {std::pair{&exp_avg, &exp_avg_}, {&exp_avg_sq, &exp_avg_sq_}}) {
      if (host->empty()) {
        CUDA_RETURN_IF_ERROR(cudaMemset(device->data(), 0, n_ * sizeof(float)));
      } else {
        RETURN_IF_ERROR(device->CopyFromHost(host->data(), n_));
      }
    }
    CUDA_RETURN_IF_ERROR(cudaDeviceSynchronize());
    return model_->SyncAdapter(params_.data());
  }

  absl::Status GetState(std::vector<float>* params, std::vector<float>* exp_avg,
                        std::vector<float>* exp_avg_sq) override {
    RETURN_IF_ERROR(Sync());
    params->resize(n_);
    RETURN_IF_ERROR(params_.CopyToHost(params->data(), n_));
    if (exp_avg) {
      exp_avg->resize(n_);
      RETURN_IF_ERROR(exp_avg_.CopyToHost(exp_avg->data(), n_));
    }
    if (exp_avg_sq) {
      exp_avg_sq->resize(n_);
      RETURN_IF_ERROR(exp_avg_sq_.CopyToHost(exp_avg_sq->data(), n_));
    }
    return absl::OkStatus();
  }

  absl::Status ZeroGrads() override {
    CUDA_RETURN_IF_ERROR(cudaMemsetAsync(grads_.data(), 0, n_ * sizeof(float), stream()));
    return absl::OkStatus();
  }

  absl::StatusOr<RunResult> Run(const MicroBatch& batch, bool with_adapter,
                                const RunOptions& options) override {
    return model_->Run(batch, with_adapter, options.training ? grads_.data() : nullptr, options);
  }

  float* grads() override { return grads_.data(); }
  Communicator* grad_comm() override { return nccl_ ? nccl_.get() : comm_; }

  absl::StatusOr<double> GradNorm() override {
    CUDA_RETURN_IF_ERROR(GradSquaredSumCuda(grads_.data(), n_, sum_sq_.data(), stream()));
    double sum_sq = 0;
    CUDA_RETURN_IF_ERROR(
        cudaMemcpyAsync(&sum_sq, sum_sq_.data(), sizeof(double), cudaMemcpyDeviceToHost, stream()));
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
    return std::sqrt(sum_sq);
  }

  absl::Status AdamW(const AdamWParams& p, float grad_scale) override {
    CUDA_RETURN_IF_ERROR(AdamWStepCuda(params_.data(), grads_.data(), exp_avg_.data(),
                                       exp_avg_sq_.data(), n_, p, grad_scale, stream()));
    return model_->SyncAdapter(params_.data());
  }

  std::vector<std::pair<std::string, int64_t>> MemoryMetrics() const override {
    return {{"peak_gpu_bytes", model_->PeakDeviceBytes()},
            {"base_gpu_bytes", model_->BaseDeviceBytes()}};
  }

 private:
  cudaStream_t stream() const { return static_cast<cudaStream_t>(model_->stream()); }
  absl::Status Sync() {
    CUDA_RETURN_IF_ERROR(cudaStreamSynchronize(stream()));
    return absl::OkStatus();
  }

  const LlamaWeights& weights_;
  Communicator* comm_;
  std::unique_ptr<CudaLlamaModel> model_;
  std::unique_ptr<NcclCommunicator> nccl_;
  int64_t n_ = 0;
  DeviceBuffer<float> params_, exp_avg_, exp_avg_sq_, grads_;
  DeviceBuffer<double> sum_sq_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ModelBackend>> MakeCudaModelBackend(const LlamaWeights& weights,
                                                                   const LoraLayout& layout,
                                                                   Communicator* comm) {
  auto backend = std::make_unique<CudaModelBackend>(weights, comm);
  RETURN_IF_ERROR(backend->Init(layout));
  return backend;
}

}  // namespace lorasweep

// The CPU backend of ModelBackend: LlamaModel over host vectors (the reference).
#include <algorithm>

#include "absl/status/status.h"
#include "kernels/blas_core.h"
#include "worker/model/model_backend.h"

namespace lorasweep {
namespace {

class CpuModelBackend : public ModelBackend {
 public:
  CpuModelBackend(const LlamaWeights& weights, const LoraLayout& layout, Communicator* comm)
      : model_(weights, layout), comm_(comm) {
    const size_t n = static_cast<size_t>(layout.num_parameters());
    params_.assign(n, 0.0f);
    exp_avg_.assign(n, 0.0f);
    exp_avg_sq_.assign(n, 0.0f);
    grads_.assign(n, 0.0f);
  }

  std::string Describe() const override { return "cpu (OpenBLAS " + BlasCoreDescription() + ")"; }

  absl::Status SetState(const std::vector<float>& params, const std::vector<float>& exp_avg,
                        const std::vector<float>& exp_avg_sq) override {
    if (params.size() != params_.size()) {
      return absl::InvalidArgumentError("adapter state of the wrong size");
    }
    params_ = params;
    exp_avg_ = exp_avg.empty() ? std::vector<float>(params.size(), 0.0f) : exp_avg;
    exp_avg_sq_ = exp_avg_sq.empty() ? std::vector<float>(params.size(), 0.0f) : exp_avg_sq;
    return absl::OkStatus();
  }

  absl::Status GetState(std::vector<float>* params, std::vector<float>* exp_avg,
                        std::vector<float>* exp_avg_sq) override {
    *params = params_;
    if (exp_avg) *exp_avg = exp_avg_;
    if (exp_avg_sq) *exp_avg_sq = exp_avg_sq_;
    return absl::OkStatus();
  }

  absl::Status ZeroGrads() override {
    std::fill(grads_.begin(), grads_.end(), 0.0f);
    return absl::OkStatus();
  }

  absl::StatusOr<RunResult> Run(const MicroBatch& batch, bool with_adapter,
                                const RunOptions& options) override {
    return model_.Run(batch, with_adapter ? params_.data() : nullptr,
                      options.training ? grads_.data() : nullptr, options);
  }

  float* grads() override { return grads_.data(); }
  Communicator* grad_comm() override { return comm_; }

  absl::StatusOr<double> GradNorm() override {
    return GradL2Norm(grads_.data(), static_cast<int64_t>(grads_.size()));
  }

  absl::Status AdamW(const AdamWParams& p, float grad_scale) override {
    if (grad_scale != 1.0f) {
      for (float& g : grads_) g *= grad_scale;
    }
    AdamWStep(params_.data(), grads_.data(), exp_avg_.data(), exp_avg_sq_.data(),
              static_cast<int64_t>(params_.size()), p);
    return absl::OkStatus();
  }

  std::vector<std::pair<std::string, int64_t>> MemoryMetrics() const override { return {}; }

 private:
  LlamaModel model_;
  Communicator* comm_;
  std::vector<float> params_, exp_avg_, exp_avg_sq_, grads_;
};

}  // namespace

std::unique_ptr<ModelBackend> MakeCpuModelBackend(const LlamaWeights& weights,
                                                  const LoraLayout& layout, Communicator* comm) {
  return std::make_unique<CpuModelBackend>(weights, layout, comm);
}

}  // namespace lorasweep

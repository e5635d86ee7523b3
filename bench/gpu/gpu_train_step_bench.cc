// One QLoRA training step on the GPU at a 1B-class Llama shape (Llama-3.2-1B: hidden 2048, 16
// layers, 32 query / 8 key-value heads of 64, MLP 8192, vocab 128256, tied embeddings) with random
// weights in NF4 + double quantization, LoRA rank 16 on all linears, activation checkpointing on:
// tokens/s, model-FLOPs utilisation against the bf16 cuBLAS matrix rate measured in the same run,
// and peak GPU memory against the size of the 4-bit base.
//
//   gpu_train_step_bench [--seq=2048] [--micro-batch=4] [--rank=16] [--steps=5] [--layers=16]
//                        [--json=FILE]
//
// FLOPs: bench/step_flops.h with attention's causal half (what the tiled kernels compute). A step
// is what the trainer does: zero gradients, forward + backward, gradient norm, fused AdamW.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "bench/step_flops.h"
#include "comm/communicator.h"
#include "common/status_macros.h"
#include "kernels/matmul_cuda.h"
#include "worker/cuda/cuda_model_backend.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"
#include "worker/data/token_shard.h"
#include "worker/model/random_llama.h"

namespace lorasweep {
namespace {

using Clock = std::chrono::steady_clock;

void Die(const absl::Status& status) {
  std::fprintf(stderr, "gpu_train_step_bench: %s\n", std::string(status.message()).c_str());
  std::exit(1);
}

template <typename T>
T OrDie(absl::StatusOr<T> v) {
  if (!v.ok()) Die(v.status());
  return *std::move(v);
}

// The value of --name=VALUE, or "" when absent.
std::string StringFlag(int argc, char** argv, const char* name) {
  const std::string prefix = std::string("--") + name + "=";
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], prefix.c_str(), prefix.size()) == 0) return argv[i] + prefix.size();
  }
  return "";
}

int64_t Flag(int argc, char** argv, const char* name, int64_t fallback) {
  const std::string value = StringFlag(argc, argv, name);
  return value.empty() ? fallback : std::atoll(value.c_str());
}

// bf16 x bf16 -> fp32-accumulated matrix rate of cuBLAS at M = N = K = n, in FLOP/s (best of 10).
absl::StatusOr<double> Bf16GemmRate(int64_t n) {
  cudaStream_t stream;
  CUDA_RETURN_IF_ERROR(cudaStreamCreate(&stream));
  CublasContext ctx;
  CUBLAS_RETURN_IF_ERROR(CreateCublasContext(stream, &ctx));
  ASSIGN_OR_RETURN(DeviceBuffer<bf16> a, DeviceBuffer<bf16>::Allocate(n * n, "gemm A"));
  ASSIGN_OR_RETURN(DeviceBuffer<bf16> b, DeviceBuffer<bf16>::Allocate(n * n, "gemm B"));
  ASSIGN_OR_RETURN(DeviceBuffer<bf16> c, DeviceBuffer<bf16>::Allocate(n * n, "gemm C"));
  std::vector<bf16> host(n * n);
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (bf16& v : host) v = __float2bfloat16(u(rng));  // random data: zeros run faster
  RETURN_IF_ERROR(a.CopyFromHost(host.data(), n * n));
  RETURN_IF_ERROR(b.CopyFromHost(host.data(), n * n));
  cudaEvent_t start, stop;
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&start));
  CUDA_RETURN_IF_ERROR(cudaEventCreate(&stop));
  double best = 1e30;
  for (int i = 0; i < 13; ++i) {
    CUDA_RETURN_IF_ERROR(cudaEventRecord(start, stream));
    CUBLAS_RETURN_IF_ERROR(
        GemmBf16Bf16(ctx, false, true, n, n, n, 1.0f, a.data(), n, b.data(), n, 0.0f, c.data(), n));
    CUDA_RETURN_IF_ERROR(cudaEventRecord(stop, stream));
    CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop));
    float ms = 0;
    CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start, stop));
    if (i >= 3) best = std::min(best, static_cast<double>(ms) / 1e3);  // 3 warm-ups
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  DestroyCublasContext(&ctx);
  cudaStreamDestroy(stream);
  return 2.0 * n * n * n / best;
}

}  // namespace
}  // namespace lorasweep

int main(int argc, char** argv) {
  using namespace lorasweep;
  if (CudaDeviceCount() == 0) {
    std::printf("no CUDA device: nothing to measure\n");
    return 0;
  }
  const int64_t T = Flag(argc, argv, "seq", 2048);
  const int64_t B = Flag(argc, argv, "micro-batch", 4);
  const int rank = static_cast<int>(Flag(argc, argv, "rank", 16));
  const int steps = static_cast<int>(Flag(argc, argv, "steps", 5));
  const std::string json_path = StringFlag(argc, argv, "json");

  LlamaConfig c;
  c.hidden_size = 2048;
  c.intermediate_size = 8192;
  c.num_hidden_layers = Flag(argc, argv, "layers", 16);
  c.num_attention_heads = 32;
  c.num_key_value_heads = 8;
  c.head_dim = 64;
  c.vocab_size = 128256;
  c.max_position_embeddings = std::max<int64_t>(T, 2048);
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = true;

  const Clock::time_point t0 = Clock::now();
  BaseQuantization nf4;  // NF4, blocksize 64, double quantization
  const LlamaWeights weights = OrDie(RandomLlamaWeights(c, nf4, 1));
  LoraOptions lora;
  lora.rank = rank;
  lora.alpha = 2.0 * rank;
  lora.dropout = 0.0;
  lora.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
  const LoraLayout layout = OrDie(LoraLayout::Create(weights, lora));
  std::printf("random 1B-class Llama (%lld layers) quantized NF4+DQ on the host in %.1f s\n",
              static_cast<long long>(c.num_hidden_layers),
              std::chrono::duration<double>(Clock::now() - t0).count());

  const double gemm_rate = OrDie(Bf16GemmRate(8192));
  std::unique_ptr<Communicator> self = MakeSelfCommunicator();
  std::unique_ptr<ModelBackend> backend = OrDie(MakeCudaModelBackend(weights, layout, self.get()));
  const absl::Status set = backend->SetState(layout.InitialParameters(0), {}, {});
  if (!set.ok()) Die(set);

  std::mt19937 rng(1);
  std::vector<int32_t> ids(B * T);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % c.vocab_size);
  std::vector<uint8_t> flags(B * T, kTokenLoss);
  const MicroBatch mb{B, T, ids.data(), flags.data()};
  RunOptions run;
  run.training = true;
  run.activation_checkpointing = true;
  run.grad_scale = 1.0f / static_cast<float>(B * T);
  run.loss_chunk_rows = 1024;
  AdamWParams adam;
  adam.lr = 1e-4f;
  auto step = [&]() {
    absl::Status s = backend->ZeroGrads();
    if (s.ok()) s = backend->Run(mb, true, run).status();
    if (s.ok()) s = backend->GradNorm().status();
    if (s.ok()) s = backend->AdamW(adam, 1.0f);
    if (!s.ok()) Die(s);
  };
  step();
  step();  // warm-up: workspaces allocated, cuBLAS heuristics cached
  const Clock::time_point s0 = Clock::now();
  for (int i = 0; i < steps; ++i) step();
  const double step_s = std::chrono::duration<double>(Clock::now() - s0).count() / steps;

  const double flops = StepFlops(c, B, T, rank, /*attention_fraction=*/0.5);
  const double achieved = flops / step_s;
  int64_t peak = 0, base = 0;
  for (const auto& [key, value] : backend->MemoryMetrics()) {
    if (key == "peak_gpu_bytes") peak = value;
    if (key == "base_gpu_bytes") base = value;
  }
  const double tokens_per_s = static_cast<double>(B * T) / step_s;
  std::printf("bf16 GEMM ceiling (cuBLAS 8192^3): %.1f TFLOP/s\n", gemm_rate / 1e12);
  std::printf(
      "step: %lld x %lld tokens, rank %d all-linear: %.3f s, %.0f tokens/s, %.1f TFLOP/s "
      "counted = MFU %.3f\n",
      static_cast<long long>(B), static_cast<long long>(T), rank, step_s, tokens_per_s,
      achieved / 1e12, achieved / gemm_rate);
  std::printf("peak GPU memory %.2f GiB = %.2f x the 4-bit base (%.2f GiB on the device)\n",
              peak / 1073741824.0, static_cast<double>(peak) / std::max<int64_t>(base, 1),
              base / 1073741824.0);
  if (!json_path.empty()) {
    FILE* f = std::fopen(json_path.c_str(), "w");
    if (f == nullptr) Die(absl::InternalError("cannot write " + json_path));
    std::fprintf(f,
                 "{\"seq\": %lld, \"micro_batch\": %lld, \"rank\": %d, \"layers\": %lld, "
                 "\"step_s\": %.6f, \"tokens_per_s\": %.1f, \"counted_tflops\": %.3f, "
                 "\"gemm_tflops\": %.3f, \"mfu\": %.4f, \"peak_gpu_bytes\": %lld, "
                 "\"base_gpu_bytes\": %lld}\n",
                 static_cast<long long>(T), static_cast<long long>(B), rank,
                 static_cast<long long>(c.num_hidden_layers), step_s, tokens_per_s, achieved / 1e12,
                 gemm_rate / 1e12, achieved / gemm_rate, static_cast<long long>(peak),
                 static_cast<long long>(base));
    std::fclose(f);
  }
  return 0;
}

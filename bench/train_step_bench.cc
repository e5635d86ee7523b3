// One QLoRA training step on the CPU: tokens/s, achieved matmul FLOP rate as a ratio to OpenBLAS
// sgemm's rate measured in the same run on the same cores, and peak resident memory with and
// without activation checkpointing (each mode runs in its own child process so that VmHWM is its
// own).
//
//   train_step_bench MODEL [SEQ=256] [MICRO_BATCH=4] [RANK=16] [STEPS=3]
//     MODEL: e.g. models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf (lorasweep fetch-model)
//
// FLOPs counted: bench/step_flops.h, with attention's full T x T products (the CPU reference
// computes them all).
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "bench/step_flops.h"
#include "kernels/blas_core.h"
#include "common/file_util.h"
#include "kernels/matmul.h"
#include "worker/data/token_shard.h"
#include "worker/formats/model_files.h"
#include "worker/model/llama_model.h"

namespace lorasweep {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

int64_t PeakRssBytes() {
  absl::StatusOr<std::string> status = ReadFileToString("/proc/self/status");
  if (!status.ok()) return 0;
  const size_t pos = status->find("VmHWM:");
  return pos == std::string::npos ? 0 : std::strtoll(status->c_str() + pos + 6, nullptr, 10) * 1024;
}

// sgemm GFLOP/s on the shape that dominates the step (N x in @ in x out, the MLP up projection).
double SgemmRate(int64_t M, int64_t N, int64_t K) {
  std::vector<float> a(M * K, 0.5f), b(N * K, 0.25f), c(M * N);
  Sgemm(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);  // warm-up
  double best = 1e30;
  for (int i = 0; i < 5; ++i) {
    const Clock::time_point t0 = Clock::now();
    Sgemm(false, true, M, N, K, 1.0f, a.data(), K, b.data(), K, 0.0f, c.data(), N);
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return 2.0 * M * N * K / best / 1e9;
}

struct ModeResult {
  double seconds_per_step = 0;
  int64_t peak_rss = 0;
  int64_t workspace = 0;
  int64_t base_bytes = 0;
};

ModeResult RunMode(const std::string& model_path, int64_t T, int64_t B, int rank, int steps,
                   bool checkpointing) {
  absl::StatusOr<LlamaWeights> weights = LoadLlamaWeights(model_path, BaseQuantization{});
  if (!weights.ok()) {
    std::fprintf(stderr, "%s\n", std::string(weights.status().message()).c_str());
    std::exit(1);
  }
  LoraOptions options;
  options.rank = rank;
  options.alpha = rank;
  options.dropout = 0.05;
  options.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj",
                            "gate_proj", "up_proj", "down_proj"};
  absl::StatusOr<LoraLayout> layout = LoraLayout::Create(*weights, options);
  std::vector<float> params = layout->InitialParameters(0), grads(params.size());
  std::mt19937 rng(1);
  std::vector<int32_t> ids(B * T);
  for (int32_t& id : ids) id = static_cast<int32_t>(rng() % weights->config.vocab_size);
  std::vector<uint8_t> flags(B * T, kTokenLoss);
  LlamaModel model(*weights, *layout);
  RunOptions run;
  run.training = true;
  run.activation_checkpointing = checkpointing;
  run.grad_scale = 1.0f / static_cast<float>(B * T);
  MicroBatch mb{B, T, ids.data(), flags.data()};
  model.Run(mb, params.data(), grads.data(), run);  // warm-up
  const Clock::time_point t0 = Clock::now();
  for (int s = 0; s < steps; ++s) model.Run(mb, params.data(), grads.data(), run);
  ModeResult result;
  result.seconds_per_step = Seconds(t0, Clock::now()) / steps;
  result.peak_rss = PeakRssBytes();
  result.workspace = model.WorkspaceBytes();
  result.base_bytes = weights->StorageBytes();
  return result;
}

// Runs a mode in a child process (its own peak RSS) and reads the result back through a pipe.
ModeResult RunModeInChild(const std::string& model_path, int64_t T, int64_t B, int rank, int steps,
                          bool checkpointing) {
  int fds[2];
  if (pipe(fds) != 0) std::exit(1);
  std::fflush(stdout);  // the child must not print the parent's buffered lines again
  const pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    const ModeResult r = RunMode(model_path, T, B, rank, steps, checkpointing);
    if (write(fds[1], &r, sizeof(r)) != sizeof(r)) _exit(1);
    _exit(0);
  }
  close(fds[1]);
  ModeResult r;
  const ssize_t got = read(fds[0], &r, sizeof(r));
  close(fds[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  if (got != sizeof(r) || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::fprintf(stderr, "benchmark child failed\n");
    std::exit(1);
  }
  return r;
}

}  // namespace
}  // namespace lorasweep

int main(int argc, char** argv) {
  using namespace lorasweep;
  ReexecWithMatchingBlasCore(argv);  // as the lorasweep binary does (kernels/blas_core.h)
  if (argc < 2) {
    std::fprintf(stderr, "usage: train_step_bench MODEL [SEQ=256] [MICRO_BATCH=4] [RANK=16] [STEPS=3]\n");
    return 2;
  }
  const std::string model = argv[1];
  const int64_t T = argc > 2 ? std::atoll(argv[2]) : 256;
  const int64_t B = argc > 3 ? std::atoll(argv[3]) : 4;
  const int rank = argc > 4 ? std::atoi(argv[4]) : 16;
  const int steps = argc > 5 ? std::atoi(argv[5]) : 3;
  absl::StatusOr<ModelFiles> files = OpenModelFiles(model);
  if (!files.ok() || !files->config) {
    std::fprintf(stderr, "cannot open %s\n", model.c_str());
    return 1;
  }
  const LlamaConfig config = *files->config;
  const double sgemm = SgemmRate(B * T, config.intermediate_size, config.hidden_size);
  const double flops = StepFlops(config, B, T, rank, /*attention_fraction=*/1.0);
  std::printf("model %s: %lld layers, hidden %lld; step = %lld sequences x %lld tokens, LoRA rank "
              "%d all-linear, NF4+DQ base\n",
              model.c_str(), static_cast<long long>(config.num_hidden_layers),
              static_cast<long long>(config.hidden_size), static_cast<long long>(B),
              static_cast<long long>(T), rank);
  std::printf("sgemm ceiling (%lld x %lld x %lld, same cores): %.1f GFLOP/s\n",
              static_cast<long long>(B * T), static_cast<long long>(config.intermediate_size),
              static_cast<long long>(config.hidden_size), sgemm);
  std::printf("counted matmul FLOPs per step: %.1f GFLOP (OpenBLAS core %s)\n", flops / 1e9,
              BlasCoreDescription().c_str());
  for (bool checkpointing : {true, false}) {
    const ModeResult r = RunModeInChild(model, T, B, rank, steps, checkpointing);
    const double rate = flops / r.seconds_per_step / 1e9;
    std::printf("activation checkpointing %-3s: %.2f s/step, %.0f tokens/s, %.1f GFLOP/s = %.2f x "
                "sgemm, peak RSS %.0f MiB (base %.0f MB, activations+scratch %.0f MB)\n",
                checkpointing ? "on" : "off", r.seconds_per_step, B * T / r.seconds_per_step, rate,
                rate / sgemm, r.peak_rss / 1048576.0, r.base_bytes / 1e6, r.workspace / 1e6);
  }
  return 0;
}

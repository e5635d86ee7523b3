// All-reduce bus bandwidth over MPI (the nccl-tests convention: busbw = bytes / time x 2(n-1)/n),
// for f32 buffers from 1 KB to 64 MB, through lorasweep's Communicator; and the communication
// volume per training step of SmolLM2-135M's adapter (all-linear) at ranks 8, 16, 64 against the
// bytes a full fine-tune would all-reduce.
//
//   mpirun -np 2 --oversubscribe build/bench/allreduce_bench [MODEL.gguf]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "comm/communicator.h"
#include "worker/model/lora_layout.h"

int main(int argc, char** argv) {
  using namespace lorasweep;
  absl::StatusOr<std::unique_ptr<Communicator>> comm = MakeWorldCommunicator();
  if (!comm.ok()) return 1;
  Communicator& c = **comm;
  const int n = c.size();
  if (c.rank() == 0) {
    std::printf("all-reduce (sum, f32) over %d rank(s); busbw = algbw x 2(n-1)/n\n", n);
    std::printf("%12s %12s %14s %14s\n", "bytes", "time_us", "algbw_GB/s", "busbw_GB/s");
  }
  for (int64_t bytes = 1024; bytes <= (64 << 20); bytes *= 4) {
    std::vector<float> buffer(bytes / 4, 1.0f);
    const int iters = bytes < (1 << 20) ? 50 : 5;
    (void)c.AllReduce(buffer.data(), bytes / 4, ReduceOp::kSum);  // warm-up
    (void)c.Barrier();
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < iters; ++i) (void)c.AllReduce(buffer.data(), bytes / 4, ReduceOp::kSum);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / iters;
    if (c.rank() == 0) {
      const double algbw = bytes / s / 1e9;
      std::printf("%12lld %12.1f %14.3f %14.3f\n", static_cast<long long>(bytes), s * 1e6, algbw,
                  algbw * 2.0 * (n - 1) / n);
    }
  }
  if (c.rank() == 0 && argc > 1) {
    absl::StatusOr<LlamaWeights> weights = LoadLlamaWeights(argv[1], BaseQuantization{});
    if (!weights.ok()) return 1;
    const double full = static_cast<double>(weights->config.NumParameters()) * 4;
    std::printf("\nper-step gradient all-reduce volume, all-linear LoRA vs full fine-tune (%.1f MB):\n",
                full / 1e6);
    for (int rank : {8, 16, 64}) {
      LoraOptions options;
      options.rank = rank;
      options.alpha = rank;
      options.target_modules = {"q_proj", "k_proj", "v_proj", "o_proj",
                                "gate_proj", "up_proj", "down_proj"};
      absl::StatusOr<LoraLayout> layout = LoraLayout::Create(*weights, options);
      const double bytes = static_cast<double>(layout->num_parameters()) * 4;
      std::printf("  rank %3d: %10lld params, %7.1f MB/step, ratio %.4f of full\n", rank,
                  static_cast<long long>(layout->num_parameters()), bytes / 1e6, bytes / full);
    }
  }
  return 0;
}

// NF4 dequantization throughput (GB/s of float32 output) as a ratio to memcpy of the same number of
// output bytes measured in the same run, single thread and all threads; plus quantization
// throughput (M params/s) on the same data.
//
//   dequantize_bench [MILLION_PARAMS=16] [THREADS=0 (all)]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "common/parallel_for.h"
#include "kernels/quantize_4bit.h"

namespace {

using Clock = std::chrono::steady_clock;

template <typename Fn>
double BestSeconds(int repeats, Fn&& fn) {
  fn();
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const Clock::time_point t0 = Clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace lorasweep;
  const int64_t n = (argc > 1 ? std::atoll(argv[1]) : 16) * 1000000;
  const int all_threads = argc > 2 && std::atoi(argv[2]) > 0 ? std::atoi(argv[2]) : DefaultNumThreads();
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  std::vector<float> weights(n);
  for (float& w : weights) w = normal(rng);
  const int64_t rows = n / 1000;
  std::printf("NF4+DQ blocksize 64, %lld M params ([%lld, 1000]), output %0.1f MB float32\n",
              static_cast<long long>(n / 1000000), static_cast<long long>(rows), n * 4 / 1e6);
  for (int threads : {1, all_threads}) {
    Quantized4bit q;
    const double quant_s = BestSeconds(2, [&] {
      q = *Quantize4bit(weights, {rows, 1000}, QuantType::kNF4, 64, true, threads);
    });
    const std::vector<float> absmax = DequantizeAbsmax(q);
    std::vector<float> out(n), src(n, 1.0f);
    const double dequant_s = BestSeconds(5, [&] {
      Dequantize4bitRaw(CodeTable(q.type), q.packed.data(), absmax.data(), 64, n, out.data(),
                        threads);
    });
    // memcpy of the same output bytes, split over the same threads.
    const double copy_s = BestSeconds(5, [&] {
      ParallelFor(
          n, 1 << 16,
          [&](int64_t b, int64_t e) { std::memcpy(&out[b], &src[b], (e - b) * sizeof(float)); },
          threads);
    });
    const double dequant_gbs = n * 4 / dequant_s / 1e9, copy_gbs = n * 4 / copy_s / 1e9;
    std::printf("threads %d: dequantize %.2f GB/s out, memcpy %.2f GB/s -> ratio %.2f; quantize "
                "%.1f M params/s\n",
                threads, dequant_gbs, copy_gbs, dequant_gbs / copy_gbs, n / quant_s / 1e6);
  }
  return 0;
}

// GPU kernel benchmarks, each figure a ratio to a ceiling measured in the same run:
//   - NF4 + double-quant dequantization into bf16 (Dequantize4bitCudaBf16) on 8192 x 8192 and
//     2048 x 8192 weights, in GB/s of bytes moved (read: packed codes + absmax codes + nested
//     absmax; written: bf16 output), against a device-to-device cudaMemcpyAsync of the same total
//     (a copy of X bytes moves 2X, counted the same way). Goal: ratio >= 0.85.
//   - bf16 GEMM rate (GemmBf16F32, GemmBf16Bf16) at 4096^3 and 8192^3 in TFLOP/s: the MFU ceiling
//     the training benchmark divides by.
//   - Chunked LM head + cross-entropy (CrossEntropyForwardBackwardCuda) at N = 8192, H = 2048,
//     V = 128256, chunk 1024: total ms, and the time of its pieces (the logits GEMM, the row
//     kernel, the dhidden GEMM) timed with events around each launch.
// Every timing is the best of several repeats after warm-up, with cudaEvents on one stream; the
// memory-bound ones (dequantization, copy) start from a cold L2 (a memset of a buffer larger than
// the L2 runs before each repeat, outside the timed region).
//
//   kernels_bench [OUT.json]
//
// Without a CUDA device it prints "no CUDA device" and exits 0; any CUDA / cuBLAS error is printed
// and exits 1.
#include <algorithm>
#include <array>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/dtype.h"
#include "common/status_macros.h"
#include "kernels/cross_entropy_cuda.h"
#include "kernels/dequantize_4bit_cuda.h"
#include "kernels/matmul_cuda.h"
#include "kernels/quantize_4bit.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"

namespace lorasweep {
namespace {

constexpr double kDequantGoal = 0.85;

// The stream, the cuBLAS handle, two events and an L2-flush buffer of one benchmark run.
class Bench {
 public:
  static absl::StatusOr<std::unique_ptr<Bench>> Create() {
    auto b = std::unique_ptr<Bench>(new Bench());
    CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&b->prop_, 0));
    CUDA_RETURN_IF_ERROR(cudaStreamCreate(&b->stream_));
    CUBLAS_RETURN_IF_ERROR(CreateCublasContext(b->stream_, &b->cublas_));
    CUDA_RETURN_IF_ERROR(cudaEventCreate(&b->start_));
    CUDA_RETURN_IF_ERROR(cudaEventCreate(&b->stop_));
    const int64_t flush =
        std::max<int64_t>(4 * static_cast<int64_t>(b->prop_.l2CacheSize), 256 << 20);
    ASSIGN_OR_RETURN(b->flush_, DeviceBuffer<uint8_t>::Allocate(flush, "L2 flush buffer"));
    return b;
  }
  ~Bench() {
    if (stream_ != nullptr) cudaStreamSynchronize(stream_);
    if (start_ != nullptr) cudaEventDestroy(start_);
    if (stop_ != nullptr) cudaEventDestroy(stop_);
    DestroyCublasContext(&cublas_);
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  Bench(const Bench&) = delete;
  Bench& operator=(const Bench&) = delete;

  const cudaDeviceProp& prop() const { return prop_; }
  cudaStream_t stream() const { return stream_; }
  const CublasContext& cublas() const { return cublas_; }

  // Best time in ms of `enqueue` (work queued on stream()) over `repeats` after `warmup` runs;
  // with cold_l2, the L2 is flushed before each run.
  absl::StatusOr<double> BestMs(int warmup, int repeats, bool cold_l2,
                                const std::function<absl::Status()>& enqueue) {
    double best = 1e30;
    for (int i = 0; i < warmup + repeats; ++i) {
      if (cold_l2) {
        CUDA_RETURN_IF_ERROR(cudaMemsetAsync(flush_.data(), i & 0xff, flush_.bytes(), stream_));
      }
      CUDA_RETURN_IF_ERROR(cudaEventRecord(start_, stream_));
      RETURN_IF_ERROR(enqueue());
      CUDA_RETURN_IF_ERROR(cudaEventRecord(stop_, stream_));
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(stop_));
      CUDA_RETURN_IF_ERROR(cudaGetLastError());
      float ms = 0;
      CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, start_, stop_));
      if (i >= warmup) best = std::min(best, static_cast<double>(ms));
    }
    return best;
  }

 private:
  Bench() = default;
  cudaDeviceProp prop_{};
  cudaStream_t stream_ = nullptr;
  CublasContext cublas_;
  cudaEvent_t start_ = nullptr;
  cudaEvent_t stop_ = nullptr;
  DeviceBuffer<uint8_t> flush_;
};

// Results, printed as they come and written as JSON at the end.
struct DequantResult {
  int64_t rows, cols;
  double gbps, copy_gbps;
};
struct GemmResult {
  int64_t n;
  const char* out;
  double tflops;
};
struct CrossEntropyResult {
  int64_t N, H, V, chunk;
  double total_ms, logits_gemm_ms, row_kernel_ms, dhidden_gemm_ms, gemm_tflops, row_kernel_gbps;
};

std::vector<uint16_t> RandomBf16(int64_t n, float lo, float hi, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);  // random data: zeros would run faster
  std::vector<uint16_t> v(n);
  for (uint16_t& x : v) x = FloatToBf16(u(rng));
  return v;
}

absl::StatusOr<DequantResult> BenchDequant(Bench& bench, int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  std::vector<float> weights(n);
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 0.02f);
  for (float& w : weights) w = normal(rng);
  ASSIGN_OR_RETURN(const Quantized4bit q,
                   Quantize4bit(weights, {rows, cols}, QuantType::kNF4, 64, true));
  weights = {};
  const std::array<float, 256>& nested_map = DynamicSignedMap();
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> packed,
                   DeviceBuffer<uint8_t>::FromHost(q.packed, "packed"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> codes,
                   DeviceBuffer<uint8_t>::FromHost(q.absmax_codes, "absmax codes"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> nested,
                   DeviceBuffer<float>::FromHost(q.nested_absmax, "nested absmax"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> nested_code,
                   DeviceBuffer<float>::FromHost(
                       std::vector<float>(nested_map.begin(), nested_map.end()), "nested code"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> out, DeviceBuffer<uint16_t>::Allocate(n, "bf16 out"));

  Dequantize4bitCudaArgs args;
  args.packed = packed.data();
  args.absmax_codes = codes.data();
  args.nested_absmax = nested.data();
  args.nested_code = nested_code.data();
  args.nested_offset = q.nested_offset;
  const std::array<float, 16>& code = CodeTable(QuantType::kNF4);
  std::copy(code.begin(), code.end(), args.code);
  args.blocksize = q.blocksize;
  args.num_elements = n;

  const int64_t bytes = packed.bytes() + codes.bytes() + nested.bytes() + out.bytes();
  ASSIGN_OR_RETURN(const double dequant_ms, bench.BestMs(3, 20, true, [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(Dequantize4bitCudaBf16(args, out.data(), bench.stream()));
    return absl::OkStatus();
  }));
  // The ceiling: a device-to-device copy moving the same bytes (half read, half written).
  const int64_t copy_bytes = bytes / 2;
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> src,
                   DeviceBuffer<uint8_t>::Allocate(copy_bytes, "copy src"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint8_t> dst,
                   DeviceBuffer<uint8_t>::Allocate(copy_bytes, "copy dst"));
  CUDA_RETURN_IF_ERROR(cudaMemsetAsync(src.data(), 1, copy_bytes, bench.stream()));
  ASSIGN_OR_RETURN(const double copy_ms, bench.BestMs(3, 20, true, [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(dst.data(), src.data(), copy_bytes,
                                         cudaMemcpyDeviceToDevice, bench.stream()));
    return absl::OkStatus();
  }));
  DequantResult r{rows, cols, bytes / (dequant_ms * 1e6), 2.0 * copy_bytes / (copy_ms * 1e6)};
  std::printf("dequant_nf4_dq_bf16 %.1f copy %.1f ratio %.3f  (GB/s; %" PRId64 "x%" PRId64
              ", %.1f MB moved in %.1f us; goal %.2f)\n",
              r.gbps, r.copy_gbps, r.gbps / r.copy_gbps, rows, cols, bytes / 1e6, dequant_ms * 1e3,
              kDequantGoal);
  return r;
}

absl::StatusOr<std::vector<GemmResult>> BenchGemm(Bench& bench, int64_t n) {
  const std::vector<uint16_t> host = RandomBf16(n * n, -1.0f, 1.0f, 5);
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> a, DeviceBuffer<uint16_t>::FromHost(host, "gemm A"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> b, DeviceBuffer<uint16_t>::FromHost(host, "gemm B"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> c32, DeviceBuffer<float>::Allocate(n * n, "gemm C fp32"));
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> c16,
                   DeviceBuffer<uint16_t>::Allocate(n * n, "gemm C bf16"));
  const bf16* A = reinterpret_cast<const bf16*>(a.data());
  const bf16* B = reinterpret_cast<const bf16*>(b.data());
  const double flop = 2.0 * n * n * n;
  std::vector<GemmResult> results;
  // y = x @ W^T, the layout of a linear layer's forward product.
  ASSIGN_OR_RETURN(const double f32_ms, bench.BestMs(3, 10, false, [&]() -> absl::Status {
    CUBLAS_RETURN_IF_ERROR(
        GemmBf16F32(bench.cublas(), false, true, n, n, n, 1.0f, A, n, B, n, 0.0f, c32.data(), n));
    return absl::OkStatus();
  }));
  results.push_back({n, "f32", flop / (f32_ms * 1e9)});
  ASSIGN_OR_RETURN(const double bf16_ms, bench.BestMs(3, 10, false, [&]() -> absl::Status {
    CUBLAS_RETURN_IF_ERROR(GemmBf16Bf16(bench.cublas(), false, true, n, n, n, 1.0f, A, n, B, n,
                                        0.0f, reinterpret_cast<bf16*>(c16.data()), n));
    return absl::OkStatus();
  }));
  results.push_back({n, "bf16", flop / (bf16_ms * 1e9)});
  for (const GemmResult& r : results) {
    std::printf("gemm_bf16_%s %" PRId64 "^3: %.1f TFLOP/s (%.3f ms)\n", r.out, n, r.tflops,
                flop / (r.tflops * 1e9));
  }
  return results;
}

absl::StatusOr<CrossEntropyResult> BenchCrossEntropy(Bench& bench, int64_t N, int64_t H, int64_t V,
                                                     int64_t chunk) {
  ASSIGN_OR_RETURN(DeviceBuffer<uint16_t> hidden,
                   DeviceBuffer<uint16_t>::FromHost(RandomBf16(N * H, -1.0f, 1.0f, 11), "hidden"));
  ASSIGN_OR_RETURN(
      DeviceBuffer<uint16_t> lm_head,
      DeviceBuffer<uint16_t>::FromHost(RandomBf16(V * H, -0.05f, 0.05f, 12), "lm_head"));
  std::vector<int32_t> targets(N);
  std::mt19937 rng(13);
  for (int64_t i = 0; i < N; ++i) targets[i] = i % 16 == 0 ? -100 : static_cast<int32_t>(rng() % V);
  ASSIGN_OR_RETURN(DeviceBuffer<int32_t> d_targets,
                   DeviceBuffer<int32_t>::FromHost(targets, "targets"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> row_loss, DeviceBuffer<float>::Allocate(N, "row_loss"));
  ASSIGN_OR_RETURN(DeviceBuffer<float> dhidden, DeviceBuffer<float>::Allocate(N * H, "dhidden"));
  ASSIGN_OR_RETURN(
      DeviceBuffer<uint8_t> workspace,
      DeviceBuffer<uint8_t>::Allocate(CrossEntropyWorkspaceBytes(chunk, V), "workspace"));
  const bf16* X = reinterpret_cast<const bf16*>(hidden.data());
  const bf16* W = reinterpret_cast<const bf16*>(lm_head.data());
  const float grad_scale = 1.0f / static_cast<float>(N);

  ASSIGN_OR_RETURN(const double total_ms, bench.BestMs(1, 5, false, [&]() -> absl::Status {
    CUDA_RETURN_IF_ERROR(CrossEntropyForwardBackwardCuda(bench.cublas(), X, W, d_targets.data(), N,
                                                         H, V, chunk, grad_scale, workspace.data(),
                                                         row_loss.data(), dhidden.data()));
    return absl::OkStatus();
  }));

  // The pieces: the same sequence of calls as CrossEntropyForwardBackwardCuda, with events between
  // them (the workspace layout of cross_entropy_cuda.cc: fp32 block, then bf16 block at 256 bytes).
  float* logits = reinterpret_cast<float*>(workspace.data());
  const int64_t logits_bytes = (chunk * V * 4 + 255) / 256 * 256;
  bf16* dlogits = reinterpret_cast<bf16*>(workspace.data() + logits_bytes);
  const int64_t chunks = (N + chunk - 1) / chunk;
  std::vector<cudaEvent_t> events(3 * chunks + 1);
  for (cudaEvent_t& e : events) CUDA_RETURN_IF_ERROR(cudaEventCreate(&e));
  double best_sum = 1e30, best[3] = {0, 0, 0};
  absl::Status status = absl::OkStatus();
  for (int rep = 0; rep < 4 && status.ok(); ++rep) {
    status = [&]() -> absl::Status {
      CUDA_RETURN_IF_ERROR(cudaEventRecord(events[0], bench.stream()));
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t first = c * chunk, n = std::min(chunk, N - first);
        CUBLAS_RETURN_IF_ERROR(GemmBf16F32(bench.cublas(), false, true, n, V, H, 1.0f,
                                           X + first * H, H, W, H, 0.0f, logits, V));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(events[3 * c + 1], bench.stream()));
        CUDA_RETURN_IF_ERROR(CrossEntropyRowsCuda(logits, d_targets.data() + first, n, V,
                                                  grad_scale, row_loss.data() + first, dlogits,
                                                  bench.stream()));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(events[3 * c + 2], bench.stream()));
        CUBLAS_RETURN_IF_ERROR(GemmBf16F32(bench.cublas(), false, false, n, H, V, 1.0f, dlogits, V,
                                           W, H, 0.0f, dhidden.data() + first * H, H));
        CUDA_RETURN_IF_ERROR(cudaEventRecord(events[3 * c + 3], bench.stream()));
      }
      CUDA_RETURN_IF_ERROR(cudaEventSynchronize(events.back()));
      CUDA_RETURN_IF_ERROR(cudaGetLastError());
      double piece[3] = {0, 0, 0};
      for (int64_t k = 0; k + 1 < static_cast<int64_t>(events.size()); ++k) {
        float ms = 0;
        CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, events[k], events[k + 1]));
        piece[k % 3] += ms;
      }
      const double sum = piece[0] + piece[1] + piece[2];
      if (rep > 0 && sum < best_sum) {  // rep 0 warms up
        best_sum = sum;
        std::copy(piece, piece + 3, best);
      }
      return absl::OkStatus();
    }();
  }
  for (cudaEvent_t e : events) cudaEventDestroy(e);
  RETURN_IF_ERROR(status);

  CrossEntropyResult r{N, H, V, chunk, total_ms, best[0], best[1], best[2], 0, 0};
  r.gemm_tflops = 2.0 * (2.0 * N * H * V) / ((best[0] + best[2]) * 1e9);
  // The row kernel reads each fp32 logit twice and writes one bf16.
  r.row_kernel_gbps = static_cast<double>(N) * V * (4 + 4 + 2) / (best[1] * 1e6);
  std::printf(
      "cross_entropy N=%" PRId64 " H=%" PRId64 " V=%" PRId64 " chunk=%" PRId64
      ": %.2f ms; pieces %.2f ms: GEMMs %.1f%% (logits %.2f ms, dhidden %.2f ms, %.1f TFLOP/s), "
      "row kernel %.1f%% (%.2f ms, %.0f GB/s)\n",
      N, H, V, chunk, total_ms, best_sum, 100.0 * (best[0] + best[2]) / best_sum, best[0], best[2],
      r.gemm_tflops, 100.0 * best[1] / best_sum, best[1], r.row_kernel_gbps);
  return r;
}

void WriteJson(const char* path, const cudaDeviceProp& prop, const std::vector<DequantResult>& dq,
               const std::vector<GemmResult>& gemm, double gemm_ceiling,
               const CrossEntropyResult& ce) {
  FILE* f = std::fopen(path, "w");
  if (f == nullptr) {
    std::fprintf(stderr, "kernels_bench: cannot write %s\n", path);
    std::exit(1);
  }
  std::fprintf(f, "{\n  \"device\": \"%s\",\n  \"dequant_nf4_dq_bf16\": [", prop.name);
  for (size_t i = 0; i < dq.size(); ++i) {
    std::fprintf(f,
                 "%s\n    {\"rows\": %" PRId64 ", \"cols\": %" PRId64
                 ", \"gbps\": %.2f, \"copy_gbps\": %.2f, \"ratio\": %.4f, \"goal\": %.2f}",
                 i ? "," : "", dq[i].rows, dq[i].cols, dq[i].gbps, dq[i].copy_gbps,
                 dq[i].gbps / dq[i].copy_gbps, kDequantGoal);
  }
  std::fprintf(f, "\n  ],\n  \"gemm_bf16\": [");
  for (size_t i = 0; i < gemm.size(); ++i) {
    std::fprintf(f, "%s\n    {\"n\": %" PRId64 ", \"out\": \"%s\", \"tflops\": %.2f}", i ? "," : "",
                 gemm[i].n, gemm[i].out, gemm[i].tflops);
  }
  std::fprintf(f, "\n  ],\n  \"gemm_ceiling_tflops\": %.2f,\n", gemm_ceiling);
  std::fprintf(f,
               "  \"cross_entropy\": {\"N\": %" PRId64 ", \"H\": %" PRId64 ", \"V\": %" PRId64
               ", \"chunk\": %" PRId64
               ", \"total_ms\": %.3f, \"logits_gemm_ms\": %.3f, \"row_kernel_ms\": %.3f, "
               "\"dhidden_gemm_ms\": %.3f, \"gemm_tflops\": %.2f, \"row_kernel_gbps\": %.1f}\n}\n",
               ce.N, ce.H, ce.V, ce.chunk, ce.total_ms, ce.logits_gemm_ms, ce.row_kernel_ms,
               ce.dhidden_gemm_ms, ce.gemm_tflops, ce.row_kernel_gbps);
  std::fclose(f);
}

absl::Status Run(const char* json_path) {
  ASSIGN_OR_RETURN(std::unique_ptr<Bench> bench, Bench::Create());
  std::printf("device: %s (%d SMs, L2 %.0f MB)\n", bench->prop().name,
              bench->prop().multiProcessorCount, bench->prop().l2CacheSize / 1e6);
  std::fflush(stdout);

  std::vector<DequantResult> dq;
  for (const auto& [rows, cols] :
       std::vector<std::pair<int64_t, int64_t>>{{8192, 8192}, {2048, 8192}}) {
    ASSIGN_OR_RETURN(DequantResult r, BenchDequant(*bench, rows, cols));
    dq.push_back(r);
    std::fflush(stdout);
  }

  std::vector<GemmResult> gemm;
  double ceiling = 0;
  for (int64_t n : {4096, 8192}) {
    ASSIGN_OR_RETURN(std::vector<GemmResult> r, BenchGemm(*bench, n));
    for (const GemmResult& g : r) ceiling = std::max(ceiling, g.tflops);
    gemm.insert(gemm.end(), r.begin(), r.end());
    std::fflush(stdout);
  }
  std::printf("gemm_bf16 ceiling (best of the above): %.1f TFLOP/s\n", ceiling);

  ASSIGN_OR_RETURN(const CrossEntropyResult ce,
                   BenchCrossEntropy(*bench, 8192, 2048, 128256, 1024));
  if (json_path != nullptr) WriteJson(json_path, bench->prop(), dq, gemm, ceiling, ce);
  return absl::OkStatus();
}

}  // namespace
}  // namespace lorasweep

int main(int argc, char** argv) {
  const char* json_path = argc > 1 ? argv[1] : nullptr;
  if (lorasweep::CudaDeviceCount() == 0) {
    std::printf("no CUDA device\n");
    if (json_path != nullptr) {
      FILE* f = std::fopen(json_path, "w");
      if (f != nullptr) {
        std::fprintf(f, "{\"device\": null}\n");
        std::fclose(f);
      }
    }
    return 0;
  }
  const absl::Status status = lorasweep::Run(json_path);
  if (!status.ok()) {
    std::fprintf(stderr, "kernels_bench: %s\n", std::string(status.message()).c_str());
    return 1;
  }
  return 0;
}

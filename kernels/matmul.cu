// Small element-wise kernels around the cuBLAS products of matmul_cuda.cc. No absl / fmt / spdlog
// here: fmt 9 does not compile under nvcc.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "kernels/bias_add_cuda.h"

namespace lorasweep {
namespace {

constexpr int kBiasThreads = 256;
constexpr int kMaxGridY = 65535;

// Block (x, y) covers kBiasThreads columns of rows y, y + gridDim.y, ...: consecutive threads touch
// consecutive bf16 of a row (coalesced), and each thread loads its bias value once.
__global__ void BiasAddBf16Kernel(bf16* __restrict__ y, const float* __restrict__ bias,
                                  int64_t rows, int64_t cols) {
  const int64_t col = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  const float b = __ldg(bias + col);
  for (int64_t r = blockIdx.y; r < rows; r += gridDim.y) {
    bf16* p = y + r * cols + col;
    *p = __float2bfloat16_rn(__bfloat162float(*p) + b);
  }
}

}  // namespace

cudaError_t BiasAddBf16Cuda(bf16* y, const float* bias, int64_t rows, int64_t cols,
                            cudaStream_t stream) {
  if (rows < 0 || cols < 0) return cudaErrorInvalidValue;
  if (rows == 0 || cols == 0) return cudaSuccess;
  if (y == nullptr || bias == nullptr) return cudaErrorInvalidValue;
  const int64_t blocks_x = (cols + kBiasThreads - 1) / kBiasThreads;
  if (blocks_x > 0x7fffffff) return cudaErrorInvalidValue;
  // Enough rows per launch to fill the GPU; each block then walks rows with stride gridDim.y.
  const int64_t blocks_y = std::min<int64_t>(rows, kMaxGridY);
  const dim3 grid(static_cast<unsigned>(blocks_x), static_cast<unsigned>(blocks_y));
  BiasAddBf16Kernel<<<grid, kBiasThreads, 0, stream>>>(y, bias, rows, cols);
  return cudaGetLastError();
}

}  // namespace lorasweep

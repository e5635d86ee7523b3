// The NCCL communicator against the MPI one: the same all-reduce of the same values, on the GPU
// (f32 sum and average, bf16). Built with the CUDA backend; skips cleanly without a GPU (as on the
// project's CI machines), so here it proves the NCCL code compiles and links.
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "comm/communicator.h"
#include "comm/mpi_communicator.h"
#include "gtest/gtest.h"

#ifdef LORASWEEP_WITH_CUDA
#include <cuda_runtime_api.h>

#include "comm/nccl_communicator.h"
#endif

namespace lorasweep {
namespace {

TEST(NcclCommunicatorTest, AllReduceMatchesMpi) {
#ifndef LORASWEEP_WITH_CUDA
  GTEST_SKIP() << "built without the CUDA backend (LORASWEEP_CUDA=OFF or no nvcc)";
#else
  if (VisibleCudaDevices() == 0) GTEST_SKIP() << "no CUDA device visible";
  absl::StatusOr<std::unique_ptr<Communicator>> host = MakeMpiWorldCommunicator();
  absl::StatusOr<std::unique_ptr<Communicator>> reference = MakeMpiWorldCommunicator();
  ASSERT_TRUE(host.ok() && reference.ok());
  const int rank = (*reference)->rank();
  absl::StatusOr<std::unique_ptr<NcclCommunicator>> nccl =
      NcclCommunicator::Create(*std::move(host));
  ASSERT_TRUE(nccl.ok()) << nccl.status();
  const int64_t n = 1 << 20;
  std::mt19937 rng(17 + rank);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> values(n);
  for (float& v : values) v = normal(rng);
  for (ReduceOp op : {ReduceOp::kSum, ReduceOp::kAverage}) {
    std::vector<float> expected = values;
    ASSERT_TRUE((*reference)->AllReduce(expected.data(), n, op).ok());
    float* device = nullptr;
    ASSERT_EQ(cudaMalloc(reinterpret_cast<void**>(&device), n * sizeof(float)), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(device, values.data(), n * sizeof(float), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_TRUE((*nccl)->AllReduce(device, n, op).ok());
    std::vector<float> got(n);
    ASSERT_EQ(cudaMemcpy(got.data(), device, n * sizeof(float), cudaMemcpyDeviceToHost),
              cudaSuccess);
    cudaFree(device);
    // Ring and MPI reductions add in different orders: float32 rounding only.
    for (int64_t i = 0; i < n; i += 997) {
      EXPECT_NEAR(got[i], expected[i], 1e-5f * (1.0f + std::abs(expected[i]))) << i;
    }
  }
  EXPECT_EQ((*nccl)->stats().all_reduce_bytes, 2 * n * 4);
  // bf16: small integers are exact in bf16 and in any summation order.
  std::vector<uint16_t> bf16(1024);
  for (size_t i = 0; i < bf16.size(); ++i) {
    const float v = static_cast<float>(i % 8);
    uint32_t bits;
    std::memcpy(&bits, &v, 4);
    bf16[i] = static_cast<uint16_t>(bits >> 16);
  }
  void* device = nullptr;
  ASSERT_EQ(cudaMalloc(&device, bf16.size() * 2), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(device, bf16.data(), bf16.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  absl::StatusOr<std::unique_ptr<PendingCollective>> pending =
      (*nccl)->StartAllReduceBf16(device, static_cast<int64_t>(bf16.size()), ReduceOp::kSum);
  ASSERT_TRUE(pending.ok());
  ASSERT_TRUE((*pending)->Wait().ok());
  std::vector<uint16_t> out(bf16.size());
  ASSERT_EQ(cudaMemcpy(out.data(), device, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaFree(device);
  for (size_t i = 0; i < out.size(); ++i) {
    uint32_t bits = static_cast<uint32_t>(out[i]) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    EXPECT_EQ(v, static_cast<float>(i % 8) * (*nccl)->size()) << i;
  }
#endif
}

}  // namespace
}  // namespace lorasweep

// CUDA dequantization of bitsandbytes 4-bit weights (NF4 / FP4, optional double quantization) into
// float32 or bfloat16, with the semantics of Dequantize4bitRaw in quantize_4bit.h: value =
// code[nibble] * absmax[block], absmax either given or, with DQ, decoded on the fly as
// float32(float32(nested_code[absmax_code] * nested_absmax[block / 256]) + nested_offset).
//
// A plain C-style interface returning cudaError_t: it is included from .cu files, which must not
// see absl / spdlog / fmt (fmt 9 does not compile under nvcc), and from C++ that wraps it into a
// Status. Only built when the CUDA backend is on (LORASWEEP_WITH_CUDA).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

namespace lorasweep {

struct Dequantize4bitCudaArgs {
  // Device pointers.
  const uint8_t* packed =
      nullptr;  // (num_elements + 1) / 2 bytes, first element in the high nibble
  // Without DQ: one float32 per block. With DQ leave null and set the three fields below.
  const float* absmax = nullptr;
  const uint8_t* absmax_codes = nullptr;  // one per block
  const float* nested_absmax = nullptr;   // one per 256 blocks
  const float* nested_code = nullptr;     // 256 entries (DynamicSignedMap())
  float nested_offset = 0.0f;

  // Host values.
  float code[16] = {};     // CodeTable(type), copied into the kernel's parameters
  int64_t blocksize = 64;  // power of two in [32, 4096]
  int64_t num_elements = 0;
};

// Writes num_elements values to `out` (device memory) on `stream`. Any alignment works; 16-byte
// aligned `packed` and `out` take the vectorized path. Returns cudaErrorInvalidValue for bad
// arguments, else the launch status (kernel faults surface at the next synchronization, as usual).
cudaError_t Dequantize4bitCudaF32(const Dequantize4bitCudaArgs& args, float* out,
                                  cudaStream_t stream);
// bfloat16 output as raw bits, rounded to nearest even from the float32 value (bnb's
// __float2bfloat16).
cudaError_t Dequantize4bitCudaBf16(const Dequantize4bitCudaArgs& args, uint16_t* out,
                                   cudaStream_t stream);

// Checks, on the host, that the shared-memory staging layout the vectorized kernels use is a
// permutation free of bank conflicts for both output types. Lets CPU-only machines test the index
// arithmetic; returns true when it holds.
bool Dequantize4bitCudaLayoutSelfCheck();

}  // namespace lorasweep

// SwiGLU on the GPU, the mirror of swiglu.h: out = silu(gate) * up over n values, math in fp32.
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

cudaError_t SwigluForwardCuda(const bf16* gate, const bf16* up, int64_t n, bf16* out,
                              cudaStream_t stream);
// Overwrites dgate and dup (bf16: they feed the gate/up backward matrix products).
cudaError_t SwigluBackwardCuda(const bf16* gate, const bf16* up, const bf16* dout, int64_t n,
                               bf16* dgate, bf16* dup, cudaStream_t stream);

}  // namespace lorasweep

// Rotary position embedding on the GPU, the mirror of rotary.h (HF "rotate_half" layout: dimension
// i pairs with i + D/2). Rotation in fp32, values stored in bf16, in place.
#pragma once

#include "kernels/cuda_types.h"

namespace lorasweep {

// x[T, H, D] in place: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin. positions[T] (device),
// cos/sin [max_pos, D/2] fp32 device tables from RopeTables().
cudaError_t RotaryForwardCuda(bf16* x, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                              const float* cos, const float* sin, cudaStream_t stream);
// The transpose (rotation by -angle), in place on the gradient.
cudaError_t RotaryBackwardCuda(bf16* dx, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                               const float* cos, const float* sin, cudaStream_t stream);

}  // namespace lorasweep

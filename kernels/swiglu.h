// SwiGLU (Llama MLP): out = silu(gate) * up, elementwise over n values.
// Legend: n = tokens * intermediate size; every array is [n]. The backward overwrites dgate, dup.
#pragma once

#include <cstdint>

namespace lorasweep {

void SwigluForward(const float* gate, const float* up, int64_t n, float* out);
void SwigluBackward(const float* gate, const float* up, const float* dout, int64_t n, float* dgate,
                    float* dup);

}  // namespace lorasweep

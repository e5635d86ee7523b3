// Rotary position embedding in the Hugging Face Llama layout ("rotate_half": dimension i pairs with
// i + D/2), with transformers' rope_scaling variants. Legend: T tokens, H heads, D head_dim.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace lorasweep {

struct RopeScalingParams {
  std::string type = "none";  // none | default | linear | llama3 (dynamic/yarn: not supported)
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position_embeddings = 0;
};

// inv_freq[D/2] as transformers' rope init functions compute it: theta^(-2i/D), divided by
// `factor` for linear scaling, and for llama3 the wavelength-dependent blend of
// _compute_llama3_parameters. Computed in double, returned as float (transformers holds float32).
// An unsupported type falls back to none after the caller has rejected it (see the model loader).
std::vector<float> RopeInverseFrequencies(int64_t head_dim, double theta,
                                          const RopeScalingParams& scaling);

// True for the rope_type values RopeInverseFrequencies implements (none, default, linear, llama3).
// The model loader rejects the others (dynamic, yarn, ...) with this before building tables.
bool RopeScalingSupported(const std::string& type);

// cos/sin tables [max_pos, D/2]: angle = float(pos) * inv_freq[i] in float32, as transformers'
// `freqs = inv_freq @ position_ids` computes it.
void RopeTables(const std::vector<float>& inv_freq, int64_t max_pos, float* cos, float* sin);

// In place on x[T, H, D]: x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin (x1 the first half).
void RotaryForward(float* x, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                   const float* cos, const float* sin);
// The transpose (rotation by -angle), in place on the gradient.
void RotaryBackward(float* dx, const int32_t* positions, int64_t T, int64_t H, int64_t D,
                    const float* cos, const float* sin);

}  // namespace lorasweep

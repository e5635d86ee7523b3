#include "worker/model/lora_dropout.h"

#include "common/parallel_for.h"

namespace lorasweep {
namespace {

inline uint64_t SplitMix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

uint64_t LoraDropoutKey(uint64_t micro_batch_seed, int layer, int module) {
  return SplitMix64(SplitMix64(micro_batch_seed) ^ (static_cast<uint64_t>(layer) << 8) ^
                    static_cast<uint64_t>(module));
}

void ApplyLoraDropout(const float* x, int64_t n, float p, uint64_t key, float* out) {
  const float keep_scale = 1.0f / (1.0f - p);
  // Compare in the 24-bit integer domain so the decision does not depend on float rounding.
  const uint64_t threshold = static_cast<uint64_t>(static_cast<double>(p) * (1 << 24));
  ParallelFor(n, 1 << 16, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const uint64_t bits = SplitMix64(key + static_cast<uint64_t>(i)) >> 40;
      out[i] = bits < threshold ? 0.0f : x[i] * keep_scale;
    }
  });
}

}  // namespace lorasweep

// Parity cases of rotary position embedding, forward and backward (kernels/rotary_cuda.h vs
// kernels/rotary.h and a float64 reference written here). See tests/cuda_parity.h and
// small_ops_helpers.h.
//
// The cos/sin tables are inputs (fp32, from RopeTables), shared by all three computations; x is
// drawn, rounded to bf16 and rotated in place. Shapes: packed sequences whose positions restart
// (0..29, 0..24, 0..14), large positions near the end of a 8192-entry table with llama3 scaling,
// head_dim 64 / 128 / 80 (the vector path: D/2 even) and 6 (D/2 = 3, the scalar path).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "kernels/rotary.h"
#include "kernels/rotary_cuda.h"
#include "tests/cuda_parity.h"
#include "tests/cuda_parity/small_ops_helpers.h"

namespace lorasweep {
namespace {

using parity_small::kBf16OutputTolerance;
using parity_small::kF32OutputTolerance;
using parity_small::Rng;
using parity_small::ScopedStream;
using parity_small::Upload;

enum class Positions { kRestarting, kLarge, kRandom };

struct RotaryShape {
  std::string name;
  int64_t T;
  int64_t H;
  int64_t D;
  Positions positions;
  bool llama3;
};

constexpr int64_t kMaxPos = 8192;

std::vector<int32_t> DrawPositions(Rng& rng, const RotaryShape& s) {
  std::vector<int32_t> pos(s.T);
  switch (s.positions) {
    case Positions::kRestarting: {  // sequences of 30, 25, 15 tokens, then 0, 1, ... again
      const int64_t lengths[] = {30, 25, 15};
      int64_t t = 0;
      for (int k = 0; t < s.T; k = (k + 1) % 3) {
        for (int64_t p = 0; p < lengths[k] && t < s.T; ++p) pos[t++] = static_cast<int32_t>(p);
      }
      break;
    }
    case Positions::kLarge: {
      const int64_t start = kMaxPos - s.T - rng.Int(0, 50);
      for (int64_t t = 0; t < s.T; ++t) pos[t] = static_cast<int32_t>(start + t);
      break;
    }
    case Positions::kRandom:
      for (int32_t& p : pos) p = static_cast<int32_t>(rng.Int(0, kMaxPos - 1));
      break;
  }
  return pos;
}

absl::StatusOr<std::vector<ParityOutput>> RunRotary(uint64_t seed, const RotaryShape& s,
                                                    bool backward) {
  Rng rng(seed, 0x524f'5045'0000'0000ull ^ static_cast<uint64_t>(s.T * 1000003 + s.H * 1009 + s.D) ^
                    (backward ? 1ull : 0ull));
  RopeScalingParams scaling;
  if (s.llama3) {
    scaling.type = "llama3";
    scaling.factor = 32.0;
    scaling.low_freq_factor = 1.0;
    scaling.high_freq_factor = 4.0;
    scaling.original_max_position_embeddings = 8192;
  }
  const std::vector<float> inv_freq =
      RopeInverseFrequencies(s.D, s.llama3 ? 500000.0 : 10000.0, scaling);
  const int64_t half = s.D / 2;
  std::vector<float> cos_table(kMaxPos * half), sin_table(kMaxPos * half);
  RopeTables(inv_freq, kMaxPos, cos_table.data(), sin_table.data());
  const std::vector<int32_t> pos = DrawPositions(rng, s);
  const parity_small::Bf16Values x = parity_small::RoundToBf16(rng.Normal(s.T * s.H * s.D, 1.0f));

  ASSIGN_OR_RETURN(ScopedStream stream, ScopedStream::Create());
  ASSIGN_OR_RETURN(auto d_x, Upload(x.bits));
  ASSIGN_OR_RETURN(auto d_pos, Upload(pos));
  ASSIGN_OR_RETURN(auto d_cos, Upload(cos_table));
  ASSIGN_OR_RETURN(auto d_sin, Upload(sin_table));
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  if (backward) {
    CUDA_RETURN_IF_ERROR(RotaryBackwardCuda(parity_small::AsBf16(d_x), d_pos.data(), s.T, s.H, s.D,
                                            d_cos.data(), d_sin.data(), stream.get()));
  } else {
    CUDA_RETURN_IF_ERROR(RotaryForwardCuda(parity_small::AsBf16(d_x), d_pos.data(), s.T, s.H, s.D,
                                           d_cos.data(), d_sin.data(), stream.get()));
  }
  RETURN_IF_ERROR(ScopedStream::Synchronize());
  ASSIGN_OR_RETURN(std::vector<uint16_t> gpu_bits, d_x.ToHost());

  std::vector<float> cpu = x.values;
  if (backward) {
    RotaryBackward(cpu.data(), pos.data(), s.T, s.H, s.D, cos_table.data(), sin_table.data());
  } else {
    RotaryForward(cpu.data(), pos.data(), s.T, s.H, s.D, cos_table.data(), sin_table.data());
  }

  // float64: (x1, x2) -> (x1 c - x2 s', x2 c + x1 s'), s' = +-sin.
  const double sign = backward ? -1.0 : 1.0;
  std::vector<double> ref(x.values.size());
  for (int64_t t = 0; t < s.T; ++t) {
    for (int64_t h = 0; h < s.H; ++h) {
      const int64_t o = (t * s.H + h) * s.D;
      for (int64_t i = 0; i < half; ++i) {
        const double c = cos_table[pos[t] * half + i];
        const double sn = sign * sin_table[pos[t] * half + i];
        const double x1 = x.values[o + i], x2 = x.values[o + i + half];
        ref[o + i] = x1 * c - x2 * sn;
        ref[o + i + half] = x2 * c + x1 * sn;
      }
    }
  }
  return std::vector<ParityOutput>{{backward ? "dx" : "x",
                                    RelativeError(parity_small::Bf16BitsToFloats(gpu_bits), ref),
                                    RelativeError(cpu, ref)}};
}

std::vector<ParityCase> RotaryCases() {
  const std::vector<RotaryShape> shapes = {
      {"T70_H3_D64_restarting_positions", 70, 3, 64, Positions::kRestarting, false},
      {"T33_H5_D128_large_positions_llama3", 33, 5, 128, Positions::kLarge, true},
      {"T129_H9_D80_random_positions", 129, 9, 80, Positions::kRandom, false},
      {"T17_H2_D6_odd_half", 17, 2, 6, Positions::kRandom, false},
      {"T1024_H32_D128", 1024, 32, 128, Positions::kRestarting, false},
  };
  std::vector<ParityCase> cases;
  for (const RotaryShape& s : shapes) {
    for (bool backward : {false, true}) {
      cases.push_back({absl::StrCat(backward ? "rotary_backward/" : "rotary_forward/", s.name),
                       kBf16OutputTolerance, kF32OutputTolerance,
                       [s, backward](uint64_t seed) { return RunRotary(seed, s, backward); }});
    }
  }
  return cases;
}

}  // namespace

LORASWEEP_PARITY_CASES(RotaryCases);

}  // namespace lorasweep

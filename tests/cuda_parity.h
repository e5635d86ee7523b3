// The table of GPU-vs-CPU parity cases that tests/cuda_parity_test.cc runs (issue [cuda], "one
// table-driven parity test"). Each op's cases live in tests/cuda_parity/<op>_cases.cc and register
// themselves with LORASWEEP_PARITY_CASES; the test runs every registered case.
//
// A case draws fresh random inputs from its seed, runs the op on the GPU (kernels/*_cuda.h) and on
// the CPU reference (kernels/*.h), computes a float64 reference on the host (written in the case,
// independent of both), and reports each output's relative error against it:
//   rel = ||out - ref||_2 / max(||ref||_2, 1e-30)
// The test asserts gpu_rel <= tolerance (set per output dtype: bf16 outputs ~1e-2, fp32 ~1e-5) and
// cpu_rel <= cpu_tolerance (the CPU reference is checked against float64 too).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace lorasweep {

struct ParityOutput {
  std::string name;  // e.g. "dx"
  double gpu_rel = 0;
  double cpu_rel = 0;
};

struct ParityCase {
  std::string name;             // "<op>/<shape>", e.g. "rms_norm_forward/rows37_dim576"
  double tolerance = 1e-2;      // on gpu_rel of every output
  double cpu_tolerance = 1e-5;  // on cpu_rel of every output
  std::function<absl::StatusOr<std::vector<ParityOutput>>(uint64_t seed)> run;
};

using ParityCaseFactory = std::vector<ParityCase> (*)();
bool RegisterParityCases(ParityCaseFactory factory);
std::vector<ParityCase> AllParityCases();

// ||a - ref||_2 / max(||ref||_2, 1e-30), accumulated in double.
double RelativeError(const std::vector<float>& a, const std::vector<double>& ref);

}  // namespace lorasweep

#define LORASWEEP_PARITY_CASES(factory)                     \
  static const bool lorasweep_parity_registered_##factory = \
      ::lorasweep::RegisterParityCases(factory)

#include "kernels/blas_core.h"

#include <cblas.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

namespace lorasweep {
namespace {

// OpenBLAS cores without AVX2 (the ones its generic fallback lands on).
bool IsPreAvx2Core(const char* core) {
  for (const char* old :
       {"Prescott", "Core2", "Penryn", "Dunnington", "Nehalem", "Atom", "Sandybridge", "Unknown"}) {
    if (std::strcmp(core, old) == 0) return true;
  }
  return false;
}

}  // namespace

void ReexecWithMatchingBlasCore(char** argv) {
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;  // the user's (or our earlier) choice
  const char* core = openblas_get_corename();
  if (core == nullptr || !IsPreAvx2Core(core)) return;
  __builtin_cpu_init();
  const char* want = nullptr;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
    want = "SkylakeX";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    want = "Haswell";
  }
  if (want == nullptr) return;
  setenv("OPENBLAS_CORETYPE", want, 1);
  setenv("LORASWEEP_BLAS_CORE_WAS", core, 1);
  execv("/proc/self/exe", argv);
  // exec failed (no /proc?): go on with the kernels OpenBLAS picked.
  unsetenv("OPENBLAS_CORETYPE");
  unsetenv("LORASWEEP_BLAS_CORE_WAS");
}

std::string BlasCoreDescription() {
  std::string d = openblas_get_corename();
  if (const char* was = std::getenv("LORASWEEP_BLAS_CORE_WAS")) {
    d += std::string(" (OpenBLAS detected ") + was + ")";
  }
  return d;
}

}  // namespace lorasweep

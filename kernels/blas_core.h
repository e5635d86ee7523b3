// OpenBLAS chooses its kernels from the CPU model when the library loads. On virtual machines that
// report a generic model (Firecracker's "Intel(R) Xeon(R) Processor", as on lorasweep's CI),
// Debian's OpenBLAS 0.3.21 falls back to its Prescott (SSE3) kernels on CPUs with AVX-512: sgemm
// 5-10x below what the same cores do with the SkylakeX kernels. OpenBLAS reads OPENBLAS_CORETYPE
// only at load time, so the fix is to run the program again, once, with the core type the CPU's own
// feature flags call for.
#pragma once

#include <string>

namespace lorasweep {

// Call first thing in main(). When OPENBLAS_CORETYPE is unset, OpenBLAS picked a core older than
// the CPU (Prescott, Core2, Penryn, Dunnington, Nehalem, Atom, Sandybridge) and the CPU has
// AVX-512 (-> SkylakeX) or AVX2 + FMA (-> Haswell): sets OPENBLAS_CORETYPE and re-executes argv
// (/proc/self/exe), recording the original choice in LORASWEEP_BLAS_CORE_WAS. Returns when no
// re-execution is needed or it failed (the program then runs with the detected kernels).
void ReexecWithMatchingBlasCore(char** argv);

// "SkylakeX (OpenBLAS detected Prescott)" after a re-execution, else the core OpenBLAS uses.
std::string BlasCoreDescription();

}  // namespace lorasweep

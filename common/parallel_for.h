// A minimal fork-join loop over an index range, for the CPU kernels. Threads are started per call:
// the kernels that use it do milliseconds of work per call, so a pool would buy nothing measurable.
#pragma once

#include <cstdint>
#include <functional>

namespace lorasweep {

// Number of worker threads CPU kernels use: LORASWEEP_NUM_THREADS, else OMP_NUM_THREADS, else the
// number of hardware threads.
int DefaultNumThreads();

// Calls body(begin, end) on disjoint chunks covering [0, n), each at least `min_chunk` long, on up to
// `num_threads` threads (0 = DefaultNumThreads()). Runs inline when one chunk suffices.
void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& body,
                 int num_threads = 0);

}  // namespace lorasweep

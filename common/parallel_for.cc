#include "common/parallel_for.h"

#include <algorithm>
#include <cstdlib>
#include <thread>
#include <vector>

namespace lorasweep {

int DefaultNumThreads() {
  for (const char* name : {"LORASWEEP_NUM_THREADS", "OMP_NUM_THREADS"}) {
    if (const char* value = std::getenv(name)) {
      int n = std::atoi(value);
      if (n > 0) return n;
    }
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

void ParallelFor(int64_t n, int64_t min_chunk, const std::function<void(int64_t, int64_t)>& body,
                 int num_threads) {
  if (n <= 0) return;
  if (num_threads <= 0) num_threads = DefaultNumThreads();
  const int64_t max_chunks = std::max<int64_t>(1, n / std::max<int64_t>(1, min_chunk));
  const int64_t chunks = std::min<int64_t>(num_threads, max_chunks);
  if (chunks <= 1) {
    body(0, n);
    return;
  }
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(chunks - 1));
  const int64_t step = (n + chunks - 1) / chunks;
  for (int64_t c = 1; c < chunks; ++c) {
    const int64_t begin = c * step;
    const int64_t end = std::min(n, begin + step);
    if (begin < end) threads.emplace_back([&body, begin, end] { body(begin, end); });
  }
  body(0, std::min(n, step));
  for (std::thread& t : threads) t.join();
}

}  // namespace lorasweep

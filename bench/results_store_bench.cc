// Metric rows ingested per second by the sweep's results store (SQLite, WAL, synchronous=NORMAL),
// as the coordinator writes them: one transaction per metrics line (9 numbers, a train step) and
// in batches of 1,000 rows (a finished trial's metrics.jsonl stored again). The ceiling measured
// in the same run is the same inserts into an in-memory SQLite database (no file, no journal).
//
//   results_store_bench [ROWS=200000]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "coordinator/results_store.h"

namespace {

double Ingest(lorasweep::ResultsStore& store, int64_t rows, int64_t per_transaction) {
  std::vector<lorasweep::MetricPoint> batch;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < rows; ++i) {
    batch.push_back({"trial" + std::to_string(i % 16), i / 16 / 9, "m" + std::to_string(i % 9),
                     static_cast<double>(i), 0.0});
    if (static_cast<int64_t>(batch.size()) == per_transaction) {
      (void)store.AddMetrics(batch);
      batch.clear();
    }
  }
  (void)store.AddMetrics(batch);
  return rows / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int64_t rows = argc > 1 ? std::atoll(argv[1]) : 200000;
  const std::string dir = std::filesystem::temp_directory_path() / "lorasweep_store_bench";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::printf("results store ingest, %lld metric rows (goal: > 50k rows/s)\n",
              static_cast<long long>(rows));
  for (int64_t per : {9, 1000}) {
    auto memory = lorasweep::ResultsStore::Open(":memory:");
    auto file = lorasweep::ResultsStore::Open(dir + "/sweep" + std::to_string(per) + ".db");
    if (!memory.ok() || !file.ok()) return 1;
    const double ceiling = Ingest(**memory, rows, per);
    const double rate = Ingest(**file, rows, per);
    std::printf("%5lld rows/transaction: %9.0f rows/s to sweep.db, in-memory ceiling %9.0f rows/s, "
                "ratio %.2f\n",
                static_cast<long long>(per), rate, ceiling, rate / ceiling);
  }
  std::filesystem::remove_all(dir);
  return 0;
}

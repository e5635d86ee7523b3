// RUN_DIR/sweep.db: every number a sweep produces, in SQLite (WAL journal, synchronous=NORMAL), so
// that a crash of any process loses nothing that was committed and `--resume` knows exactly what
// finished. The schema (also what `lorasweep report` reads):
//
//   sweep(key TEXT PRIMARY KEY, value TEXT)
//       name, spec_json (the spec as given), created_at, base_eval_loss, base_eval_tokens,
//       resumes (count)
//   trials(id TEXT PRIMARY KEY,         -- stable hash of the resolved trial config
//          ordinal INTEGER,             -- position in the expanded search space
//          kind TEXT,                   -- 'trained' | 'soup'
//          config_json TEXT,            -- resolved TrialConfig (proto JSON)
//          params_json TEXT,            -- the swept values: {"lora.rank": 16, ...}
//          status TEXT,                 -- pending | running | completed | stopped_early | failed
//          slot INTEGER, attempts INTEGER, started_at REAL, ended_at REAL, failure TEXT,
//          stopped_rung INTEGER,        -- ASHA rung (or median-rule step) it was stopped at
//          steps_done INTEGER, final_train_loss REAL, final_eval_loss REAL, best_eval_loss REAL,
//          tokens_seen INTEGER, wall_s REAL, tokens_per_s REAL, peak_rss_bytes INTEGER,
//          comm_bytes INTEGER,          -- total bytes all-reduced by one rank
//          trainable_params INTEGER, workers INTEGER, lora_rank INTEGER,
//          adapter_path TEXT)           -- RUN_DIR-relative PEFT folder
//   metrics(trial_id TEXT, step INTEGER, name TEXT, value REAL, time REAL,
//           PRIMARY KEY (trial_id, step, name))   -- loss, lr, grad_norm, eval_loss, ...
//   events(id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, trial_id TEXT, kind TEXT, detail TEXT)
//
// Metric points are keyed by (trial, step, name) and written with INSERT OR REPLACE, so a trial
// that resumes from a checkpoint and logs steps again cannot duplicate a row.
//
// Thread-safety: one ResultsStore per thread (one SQLite connection).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

struct sqlite3;

namespace lorasweep {

enum class TrialStatus { kPending, kRunning, kCompleted, kStoppedEarly, kFailed };
const char* TrialStatusName(TrialStatus status);
absl::StatusOr<TrialStatus> ParseTrialStatus(const std::string& name);

struct TrialRow {
  std::string id;
  int64_t ordinal = 0;
  std::string kind = "trained";
  std::string config_json;
  std::string params_json;
  TrialStatus status = TrialStatus::kPending;
  int64_t slot = -1;
  int64_t attempts = 0;
  double started_at = 0, ended_at = 0;
  std::string failure;
  int64_t stopped_rung = -1;
  int64_t steps_done = 0;
  std::optional<double> final_train_loss, final_eval_loss, best_eval_loss;
  int64_t tokens_seen = 0;
  double wall_s = 0, tokens_per_s = 0;
  int64_t peak_rss_bytes = 0, comm_bytes = 0, trainable_params = 0;
  int64_t workers = 1, lora_rank = 0;
  std::string adapter_path;
};

struct MetricPoint {
  std::string trial_id;
  int64_t step = 0;
  std::string name;
  double value = 0;
  double time = 0;
};

class ResultsStore {
 public:
  // Opens (creating when missing) the database at `path` and its schema.
  static absl::StatusOr<std::unique_ptr<ResultsStore>> Open(const std::string& path);
  ~ResultsStore();
  ResultsStore(const ResultsStore&) = delete;
  ResultsStore& operator=(const ResultsStore&) = delete;

  absl::Status SetValue(const std::string& key, const std::string& value);
  absl::StatusOr<std::optional<std::string>> GetValue(const std::string& key);

  // Inserts trials whose id is not there yet; existing rows are left untouched (resume).
  absl::Status AddTrialsIfMissing(const std::vector<TrialRow>& trials);
  // Replaces every column of the row with id `row.id`.
  absl::Status UpdateTrial(const TrialRow& row);
  absl::StatusOr<std::vector<TrialRow>> Trials();
  absl::StatusOr<TrialRow> Trial(const std::string& id);

  // Many points in one transaction (one fsync).
  absl::Status AddMetrics(const std::vector<MetricPoint>& points);
  absl::StatusOr<std::vector<MetricPoint>> Metrics(const std::string& trial_id = "");
  absl::Status AddEvent(const std::string& trial_id, const std::string& kind,
                        const std::string& detail);

  const std::string& path() const { return path_; }

 private:
  ResultsStore(std::string path, sqlite3* db) : path_(std::move(path)), db_(db) {}
  absl::Status Exec(const std::string& sql);
  std::string path_;
  sqlite3* db_;
};

// Seconds since the Unix epoch (the `time` columns).
double UnixNow();

}  // namespace lorasweep

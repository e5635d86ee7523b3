#include "coordinator/results_store.h"

#include <sqlite3.h>

#include <chrono>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

constexpr char kSchema[] = R"sql(
CREATE TABLE IF NOT EXISTS sweep (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS trials (
  id TEXT PRIMARY KEY, ordinal INTEGER, kind TEXT, config_json TEXT, params_json TEXT,
  status TEXT, slot INTEGER, attempts INTEGER, started_at REAL, ended_at REAL, failure TEXT,
  stopped_rung INTEGER, steps_done INTEGER, final_train_loss REAL, final_eval_loss REAL,
  best_eval_loss REAL, tokens_seen INTEGER, wall_s REAL, tokens_per_s REAL,
  peak_rss_bytes INTEGER, comm_bytes INTEGER, trainable_params INTEGER, workers INTEGER,
  lora_rank INTEGER, adapter_path TEXT);
CREATE TABLE IF NOT EXISTS metrics (
  trial_id TEXT, step INTEGER, name TEXT, value REAL, time REAL,
  PRIMARY KEY (trial_id, step, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY AUTOINCREMENT, time REAL, trial_id TEXT, kind TEXT, detail TEXT);
)sql";

constexpr char kTrialColumns[] =
    "id, ordinal, kind, config_json, params_json, status, slot, attempts, started_at, ended_at, "
    "failure, stopped_rung, steps_done, final_train_loss, final_eval_loss, best_eval_loss, "
    "tokens_seen, wall_s, tokens_per_s, peak_rss_bytes, comm_bytes, trainable_params, workers, "
    "lora_rank, adapter_path";

// A prepared statement that finalizes itself.
class Statement {
 public:
  Statement(sqlite3* db, const std::string& sql) : db_(db) {
    rc_ = sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr);
  }
  ~Statement() { sqlite3_finalize(stmt_); }
  absl::Status status() const {
    if (rc_ == SQLITE_OK) return absl::OkStatus();
    return absl::InternalError(absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
  }
  sqlite3_stmt* get() { return stmt_; }
  void Bind(int i, const std::string& s) {
    sqlite3_bind_text(stmt_, i, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
  }
  void Bind(int i, int64_t v) { sqlite3_bind_int64(stmt_, i, v); }
  void Bind(int i, double v) { sqlite3_bind_double(stmt_, i, v); }
  void Bind(int i, const std::optional<double>& v) {
    if (v) {
      sqlite3_bind_double(stmt_, i, *v);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
  }
  // Runs a statement that returns no rows, then resets it for reuse.
  absl::Status Run() {
    const int rc = sqlite3_step(stmt_);
    sqlite3_reset(stmt_);
    sqlite3_clear_bindings(stmt_);
    if (rc != SQLITE_DONE) {
      return absl::InternalError(absl::StrCat("sqlite: ", sqlite3_errmsg(db_)));
    }
    return absl::OkStatus();
  }
  std::string Text(int col) {
    const unsigned char* t = sqlite3_column_text(stmt_, col);
    return t ? reinterpret_cast<const char*>(t) : "";
  }
  int64_t Int(int col) { return sqlite3_column_int64(stmt_, col); }
  double Double(int col) { return sqlite3_column_double(stmt_, col); }
  std::optional<double> OptDouble(int col) {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_double(stmt_, col);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* stmt_ = nullptr;
  int rc_ = SQLITE_OK;
};

void BindTrial(Statement& s, const TrialRow& r) {
  int i = 1;
  s.Bind(i++, r.id);
  s.Bind(i++, r.ordinal);
  s.Bind(i++, r.kind);
  s.Bind(i++, r.config_json);
  s.Bind(i++, r.params_json);
  s.Bind(i++, std::string(TrialStatusName(r.status)));
  s.Bind(i++, r.slot);
  s.Bind(i++, r.attempts);
  s.Bind(i++, r.started_at);
  s.Bind(i++, r.ended_at);
  s.Bind(i++, r.failure);
  s.Bind(i++, r.stopped_rung);
  s.Bind(i++, r.steps_done);
  s.Bind(i++, r.final_train_loss);
  s.Bind(i++, r.final_eval_loss);
  s.Bind(i++, r.best_eval_loss);
  s.Bind(i++, r.tokens_seen);
  s.Bind(i++, r.wall_s);
  s.Bind(i++, r.tokens_per_s);
  s.Bind(i++, r.peak_rss_bytes);
  s.Bind(i++, r.comm_bytes);
  s.Bind(i++, r.trainable_params);
  s.Bind(i++, r.workers);
  s.Bind(i++, r.lora_rank);
  s.Bind(i++, r.adapter_path);
}

absl::StatusOr<TrialRow> ReadTrial(Statement& s) {
  TrialRow r;
  int i = 0;
  r.id = s.Text(i++);
  r.ordinal = s.Int(i++);
  r.kind = s.Text(i++);
  r.config_json = s.Text(i++);
  r.params_json = s.Text(i++);
  ASSIGN_OR_RETURN(r.status, ParseTrialStatus(s.Text(i++)));
  r.slot = s.Int(i++);
  r.attempts = s.Int(i++);
  r.started_at = s.Double(i++);
  r.ended_at = s.Double(i++);
  r.failure = s.Text(i++);
  r.stopped_rung = s.Int(i++);
  r.steps_done = s.Int(i++);
  r.final_train_loss = s.OptDouble(i++);
  r.final_eval_loss = s.OptDouble(i++);
  r.best_eval_loss = s.OptDouble(i++);
  r.tokens_seen = s.Int(i++);
  r.wall_s = s.Double(i++);
  r.tokens_per_s = s.Double(i++);
  r.peak_rss_bytes = s.Int(i++);
  r.comm_bytes = s.Int(i++);
  r.trainable_params = s.Int(i++);
  r.workers = s.Int(i++);
  r.lora_rank = s.Int(i++);
  r.adapter_path = s.Text(i++);
  return r;
}

}  // namespace

const char* TrialStatusName(TrialStatus status) {
  switch (status) {
    case TrialStatus::kPending:
      return "pending";
    case TrialStatus::kRunning:
      return "running";
    case TrialStatus::kCompleted:
      return "completed";
    case TrialStatus::kStoppedEarly:
      return "stopped_early";
    case TrialStatus::kFailed:
      return "failed";
  }
  return "?";
}

absl::StatusOr<TrialStatus> ParseTrialStatus(const std::string& name) {
  for (TrialStatus s : {TrialStatus::kPending, TrialStatus::kRunning, TrialStatus::kCompleted,
                        TrialStatus::kStoppedEarly, TrialStatus::kFailed}) {
    if (name == TrialStatusName(s)) return s;
  }
  return absl::DataLossError(absl::StrCat("unknown trial status '", name, "'"));
}

double UnixNow() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

absl::StatusOr<std::unique_ptr<ResultsStore>> ResultsStore::Open(const std::string& path) {
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nullptr) !=
      SQLITE_OK) {
    const std::string message = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return absl::UnavailableError(absl::StrCat("cannot open ", path, ": ", message));
  }
  std::unique_ptr<ResultsStore> store(new ResultsStore(path, db));
  sqlite3_busy_timeout(db, 10000);
  RETURN_IF_ERROR(store->Exec("PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"));
  RETURN_IF_ERROR(store->Exec(kSchema));
  return store;
}

ResultsStore::~ResultsStore() { sqlite3_close(db_); }

absl::Status ResultsStore::Exec(const std::string& sql) {
  char* error = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
    const std::string message = error ? error : "?";
    sqlite3_free(error);
    return absl::InternalError(absl::StrCat(path_, ": sqlite: ", message));
  }
  return absl::OkStatus();
}

absl::Status ResultsStore::SetValue(const std::string& key, const std::string& value) {
  Statement s(db_, "INSERT OR REPLACE INTO sweep (key, value) VALUES (?, ?)");
  RETURN_IF_ERROR(s.status());
  s.Bind(1, key);
  s.Bind(2, value);
  return s.Run();
}

absl::StatusOr<std::optional<std::string>> ResultsStore::GetValue(const std::string& key) {
  Statement s(db_, "SELECT value FROM sweep WHERE key = ?");
  RETURN_IF_ERROR(s.status());
  s.Bind(1, key);
  if (sqlite3_step(s.get()) == SQLITE_ROW) return std::optional<std::string>(s.Text(0));
  return std::optional<std::string>();
}

absl::Status ResultsStore::AddTrialsIfMissing(const std::vector<TrialRow>& trials) {
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  Statement s(db_, absl::StrCat("INSERT OR IGNORE INTO trials (", kTrialColumns,
                                ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  absl::Status status = s.status();
  for (const TrialRow& row : trials) {
    if (!status.ok()) break;
    BindTrial(s, row);
    status = s.Run();
  }
  if (!status.ok()) {
    (void)Exec("ROLLBACK");
    return status;
  }
  return Exec("COMMIT");
}

absl::Status ResultsStore::UpdateTrial(const TrialRow& row) {
  Statement s(db_, absl::StrCat("INSERT OR REPLACE INTO trials (", kTrialColumns,
                                ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"));
  RETURN_IF_ERROR(s.status());
  BindTrial(s, row);
  return s.Run();
}

absl::StatusOr<std::vector<TrialRow>> ResultsStore::Trials() {
  Statement s(db_, absl::StrCat("SELECT ", kTrialColumns, " FROM trials ORDER BY ordinal, id"));
  RETURN_IF_ERROR(s.status());
  std::vector<TrialRow> rows;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    ASSIGN_OR_RETURN(TrialRow row, ReadTrial(s));
    rows.push_back(std::move(row));
  }
  return rows;
}

absl::StatusOr<TrialRow> ResultsStore::Trial(const std::string& id) {
  Statement s(db_, absl::StrCat("SELECT ", kTrialColumns, " FROM trials WHERE id = ?"));
  RETURN_IF_ERROR(s.status());
  s.Bind(1, id);
  if (sqlite3_step(s.get()) != SQLITE_ROW) {
    return absl::NotFoundError(absl::StrCat(path_, ": no trial '", id, "'"));
  }
  return ReadTrial(s);
}

absl::Status ResultsStore::AddMetrics(const std::vector<MetricPoint>& points) {
  if (points.empty()) return absl::OkStatus();
  RETURN_IF_ERROR(Exec("BEGIN IMMEDIATE"));
  Statement s(db_,
              "INSERT OR REPLACE INTO metrics (trial_id, step, name, value, time) "
              "VALUES (?, ?, ?, ?, ?)");
  absl::Status status = s.status();
  for (const MetricPoint& p : points) {
    if (!status.ok()) break;
    s.Bind(1, p.trial_id);
    s.Bind(2, p.step);
    s.Bind(3, p.name);
    s.Bind(4, p.value);
    s.Bind(5, p.time);
    status = s.Run();
  }
  if (!status.ok()) {
    (void)Exec("ROLLBACK");
    return status;
  }
  return Exec("COMMIT");
}

absl::StatusOr<std::vector<MetricPoint>> ResultsStore::Metrics(const std::string& trial_id) {
  Statement s(db_, trial_id.empty()
                       ? "SELECT trial_id, step, name, value, time FROM metrics ORDER BY "
                         "trial_id, step, name"
                       : "SELECT trial_id, step, name, value, time FROM metrics WHERE trial_id = "
                         "? ORDER BY step, name");
  RETURN_IF_ERROR(s.status());
  if (!trial_id.empty()) s.Bind(1, trial_id);
  std::vector<MetricPoint> points;
  while (sqlite3_step(s.get()) == SQLITE_ROW) {
    points.push_back({s.Text(0), s.Int(1), s.Text(2), s.Double(3), s.Double(4)});
  }
  return points;
}

absl::Status ResultsStore::AddEvent(const std::string& trial_id, const std::string& kind,
                                    const std::string& detail) {
  Statement s(db_, "INSERT INTO events (time, trial_id, kind, detail) VALUES (?, ?, ?, ?)");
  RETURN_IF_ERROR(s.status());
  s.Bind(1, UnixNow());
  s.Bind(2, trial_id);
  s.Bind(3, kind);
  s.Bind(4, detail);
  return s.Run();
}

}  // namespace lorasweep

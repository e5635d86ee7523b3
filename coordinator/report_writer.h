// `lorasweep report`: turns RUN_DIR/sweep.db into what a team reads to pick its adapter.
//
//   report.html  one self-contained page (inline CSS and SVG, a few lines of inline script to sort
//                the trials table; no URL of any kind, so it opens offline and from any archive)
//   report.md    the same findings as Markdown tables (pull requests, wikis)
//   trials.csv   one row per trial: swept values as columns, final metrics, costs, adapter path
//   metrics.csv  tidy: trial_id, step, name, value (one row per logged metric point)
//
// An empty sweep, a sweep still running and a sweep whose trials all failed each produce a report
// that says so; only an unreadable database or an unwritable folder is an error.
// Every file is written atomically (temp file + rename), so a report regenerated while someone
// has the old one open never shows a torn page.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "coordinator/report_data.h"

namespace lorasweep {

struct ReportOptions {
  std::string metric = "eval_loss";  // what "best" means (final value; see report_data.h)
  std::string out_dir;               // empty: the run folder itself
  bool html = true, markdown = true, csv = true;
};

// Parses `--format`: a comma list of html, md (or markdown), csv; "auto" or "" means all three.
absl::Status ParseReportFormats(const std::string& text, ReportOptions* options);

// Loads RUN_DIR/sweep.db and writes the selected files. What a sweep calls when it ends.
absl::Status WriteSweepReport(const std::string& run_dir, const ReportOptions& options);

// Writes the selected files for already loaded data; returns their paths.
absl::StatusOr<std::vector<std::string>> WriteReportFiles(const ReportData& data,
                                                          const ReportOptions& options);

// The file contents (exposed for tests).
std::string RenderReportHtml(const ReportData& data);
std::string RenderReportMarkdown(const ReportData& data);
std::string RenderTrialsCsv(const ReportData& data);
std::string RenderMetricsCsv(const ReportData& data);

// One or two sentences: the sweep's state and its best trial (what the CLI prints).
std::string ReportHeadline(const ReportData& data);

// Numbers for people.
namespace report_format {
std::string Sig(double value, int digits = 3);  // 3 significant digits: 0.000123 -> 1.23e-4
std::string Duration(double seconds);           // 42.1 s, 12.3 min, 1.52 h
std::string Bytes(double bytes);                // 512 B, 12.3 kB, 45.6 MB, 1.23 GB (decimal)
std::string Count(double n);                    // 950, 12.3k, 4.56M, 1.2B
}  // namespace report_format

}  // namespace lorasweep

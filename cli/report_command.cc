// `lorasweep report RUN_DIR [--metric eval_loss] [--format html,md,csv] [--out DIR]`: the sweep's
// comparison report (coordinator/report_writer.h) from RUN_DIR/sweep.db.
#include <cstdio>

#include "absl/flags/flag.h"
#include "cli/command.h"
#include "cli/flags.h"
#include "coordinator/report_writer.h"

namespace lorasweep::cli {
namespace {

int RunReport(const std::vector<std::string>& positional) {
  if (positional.size() != 1) return ReportError("report", "expected one argument: RUN_DIR");
  ReportOptions options;
  options.metric = absl::GetFlag(FLAGS_metric);
  options.out_dir = absl::GetFlag(FLAGS_out);
  if (options.metric.empty()) return ReportError("report", "--metric must not be empty");
  if (absl::Status s = ParseReportFormats(absl::GetFlag(FLAGS_format), &options); !s.ok()) {
    return ReportError("report", std::string(s.message()));
  }
  absl::StatusOr<ReportData> data = LoadReportDataFromRunDir(positional[0], options.metric);
  if (!data.ok()) return ReportError("report", std::string(data.status().message()));
  absl::StatusOr<std::vector<std::string>> written = WriteReportFiles(*data, options);
  if (!written.ok()) return ReportError("report", std::string(written.status().message()));
  // An empty, running or all-failed sweep still gets a report that says so: exit 0.
  std::printf("%s\n", ReportHeadline(*data).c_str());
  for (const std::string& path : *written) std::printf("wrote %s\n", path.c_str());
  return 0;
}

}  // namespace

Command ReportCommand() {
  return {"report",
          "Comparison report of a sweep: report.html, report.md, trials.csv, metrics.csv",
          "lorasweep report RUN_DIR [--metric eval_loss] [--format html,md,csv] [--out DIR]",
          {"metric", "format", "out"},
          RunReport};
}

}  // namespace lorasweep::cli

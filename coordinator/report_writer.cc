#include "coordinator/report_writer.h"

#include <algorithm>
#include <cmath>
#include <ctime>
#include <map>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "coordinator/svg_chart.h"

namespace lorasweep {

namespace report_format {

std::string Sig(double value, int digits) {
  if (!std::isfinite(value)) return std::isnan(value) ? "n/a" : (value > 0 ? "inf" : "-inf");
  if (value == 0) return "0";
  // Round to `digits` significant digits first, so 9.996 becomes 10.0 and not 10.00.
  const double rounded = std::stod(absl::StrFormat("%.*e", digits - 1, value));
  const double a = std::fabs(rounded);
  if (a >= 1e6 || a < 1e-3) {
    std::string s = absl::StrFormat("%.*e", digits - 1, rounded);
    // 2.00e-04 -> 2e-4: people read exponents without padding and trailing zeros.
    const size_t e = s.find('e');
    std::string mantissa = s.substr(0, e);
    if (mantissa.find('.') != std::string::npos) {
      while (mantissa.back() == '0') mantissa.pop_back();
      if (mantissa.back() == '.') mantissa.pop_back();
    }
    int exponent = std::stoi(s.substr(e + 1));
    return absl::StrCat(mantissa, "e", exponent);
  }
  const int magnitude = static_cast<int>(std::floor(std::log10(a)));
  const int decimals = std::max(0, digits - 1 - magnitude);
  return absl::StrFormat("%.*f", decimals, rounded);
}

std::string Duration(double seconds) {
  if (!std::isfinite(seconds)) return "n/a";
  if (seconds < 60) return absl::StrCat(Sig(seconds), " s");
  if (seconds < 3600) return absl::StrCat(Sig(seconds / 60), " min");
  return absl::StrCat(Sig(seconds / 3600), " h");
}

std::string Bytes(double bytes) {
  if (!std::isfinite(bytes)) return "n/a";
  if (bytes < 1000) return absl::StrCat(static_cast<int64_t>(std::llround(bytes)), " B");
  if (bytes < 1e6) return absl::StrCat(Sig(bytes / 1e3), " kB");
  if (bytes < 1e9) return absl::StrCat(Sig(bytes / 1e6), " MB");
  if (bytes < 1e12) return absl::StrCat(Sig(bytes / 1e9), " GB");
  return absl::StrCat(Sig(bytes / 1e12), " TB");
}

std::string Count(double n) {
  if (!std::isfinite(n)) return "n/a";
  const double a = std::fabs(n);
  if (a < 1000) return a == std::floor(a) ? absl::StrCat(static_cast<int64_t>(n)) : Sig(n);
  if (a < 1e6) return absl::StrCat(Sig(n / 1e3), "k");
  if (a < 1e9) return absl::StrCat(Sig(n / 1e6), "M");
  return absl::StrCat(Sig(n / 1e9), "B");
}

}  // namespace report_format

namespace {

namespace fmt = report_format;
using svg::EscapeXml;

// Losses get four significant digits: trials of one sweep often differ only in the third, and a
// table where two different losses print the same would hide the ranking it exists to show.
std::string Loss(std::optional<double> v) { return v ? fmt::Sig(*v, 4) : "-"; }
std::string Opt(std::optional<double> v, int digits = 3) { return v ? fmt::Sig(*v, digits) : "-"; }

// The shortest text that reads back as the same double (CSV cells).
std::string Exact(double v) { return ShortestNumberText(v); }
std::string Exact(std::optional<double> v) { return v ? Exact(*v) : ""; }

std::string MetricLabel(const std::string& metric) {
  if (metric == "eval_loss") return "eval loss";
  if (metric == "loss") return "train loss";
  if (metric == "eval_perplexity") return "eval perplexity";
  std::string s = metric;
  std::replace(s.begin(), s.end(), '_', ' ');
  return s;
}

// People read "rank", "lr", "shards", not dotted proto paths.
std::string ParamLabel(const std::string& path) {
  if (path == "lora.rank") return "rank";
  if (path == "lora.alpha") return "alpha";
  if (path == "train.learning_rate") return "lr";
  if (path == "data.shards") return "shards";
  const size_t dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}

// Learning rates are swept geometrically: always a log axis. Rank and alpha get one when they
// span a factor of 8 or more (8..256 on a linear axis crowds the small ranks into one corner).
bool IsLogAxis(const ReportData& data, const std::string& path) {
  if (absl::StrContains(path, "learning_rate")) return true;
  if (path != "lora.rank" && path != "lora.alpha") return false;
  double lo = INFINITY, hi = 0;
  for (const ReportTrial& t : data.trials) {
    auto it = t.params.find(path);
    if (it == t.params.end() || !it->second.number || !(*it->second.number > 0)) continue;
    lo = std::min(lo, *it->second.number);
    hi = std::max(hi, *it->second.number);
  }
  return hi > 0 && hi / lo >= 8;
}

// "rank=16 lr=0.0002 shards=all", or the trial kind/id when nothing was swept.
std::string TrialLabel(const ReportData& data, const ReportTrial& t) {
  std::vector<std::string> parts;
  for (const std::string& p : data.swept_params) {
    auto it = t.params.find(p);
    if (it != t.params.end()) parts.push_back(absl::StrCat(ParamLabel(p), "=", it->second.text));
  }
  if (parts.empty())
    return t.row.kind == "trained" ? t.row.id : absl::StrCat(t.row.kind, " ", t.row.id);
  return absl::StrJoin(parts, " ");
}

// The compact form for chart legends, which have room for about 30 characters:
// "r=16 lr=2e-4 data=all".
std::string LegendLabel(const ReportData& data, const ReportTrial& t) {
  std::vector<std::string> parts;
  for (const std::string& p : data.swept_params) {
    auto it = t.params.find(p);
    if (it == t.params.end()) continue;
    std::string key = ParamLabel(p);
    if (p == "lora.rank") key = "r";
    if (p == "lora.alpha") key = "a";
    if (p == "data.shards") key = "data";
    parts.push_back(absl::StrCat(key, "=", it->second.text));
  }
  if (parts.empty()) return t.row.id;
  return absl::StrJoin(parts, " ");
}

std::string StatusText(TrialStatus s) {
  switch (s) {
    case TrialStatus::kPending:
      return "pending";
    case TrialStatus::kRunning:
      return "running";
    case TrialStatus::kCompleted:
      return "completed";
    case TrialStatus::kStoppedEarly:
      return "stopped early";
    case TrialStatus::kFailed:
      return "failed";
  }
  return "?";
}

std::string StatusBreakdown(const ReportData& data) {
  std::vector<std::string> parts;
  for (TrialStatus s : {TrialStatus::kCompleted, TrialStatus::kStoppedEarly, TrialStatus::kFailed,
                        TrialStatus::kRunning, TrialStatus::kPending}) {
    if (size_t n = data.Count(s)) parts.push_back(absl::StrCat(n, " ", StatusText(s)));
  }
  return absl::StrCat(data.trials.size(), data.trials.size() == 1 ? " trial" : " trials",
                      parts.empty() ? "" : ": ", absl::StrJoin(parts, ", "));
}

// "CPU-hours" / "GPU-hours"; a sweep mixing both says "worker-hours" and labels each row.
std::string HoursLabel(const ReportData& data) {
  bool cpu = false, gpu = false;
  for (const ReportTrial& t : data.trials) (t.gpu ? gpu : cpu) = true;
  if (gpu && cpu) return "worker-hours";
  return gpu ? "GPU-hours" : "CPU-hours";
}
std::string Hours(const ReportTrial& t) {
  return absl::StrCat(fmt::Sig(t.device_hours), t.gpu ? " GPU-h" : " CPU-h");
}

std::string FirstFailure(const ReportData& data) {
  for (const ReportTrial& t : data.trials) {
    if (t.row.status == TrialStatus::kFailed && !t.row.failure.empty()) {
      return absl::StrCat(t.row.id, ": ", t.row.failure);
    }
  }
  return "";
}

// Plain sentences about the sweep's state that must come before any number: empty, still running,
// all failed, no usable metric, base model not evaluated.
std::vector<std::string> StateNotes(const ReportData& data) {
  std::vector<std::string> notes;
  const std::string m = MetricLabel(data.metric);
  if (data.trials.empty()) {
    notes.push_back(
        "This sweep has no trials yet: sweep.db holds no trial rows (the sweep has not "
        "expanded its spec, or it was started on another folder).");
    return notes;
  }
  if (data.Running()) {
    notes.push_back(absl::StrCat(
        "Sweep still running: ", data.Finished(), " of ", data.trials.size(), " trials finished (",
        data.Count(TrialStatus::kRunning), " running, ", data.Count(TrialStatus::kPending),
        " pending). Results below cover what has been recorded so far; run `lorasweep report` "
        "again when the sweep ends."));
  }
  if (data.AllFailed()) {
    std::string first = FirstFailure(data);
    notes.push_back(absl::StrCat("All ", data.trials.size(),
                                 " trials failed: there is no adapter to recommend.",
                                 first.empty() ? "" : absl::StrCat(" First failure: ", first)));
  } else if (!data.best && !data.Running()) {
    notes.push_back(absl::StrCat("No finished trial has a value of ", m,
                                 ": there is no best trial to recommend."));
  } else if (!data.best) {
    notes.push_back(absl::StrCat("No trial has finished with a value of ", m, " yet."));
  }
  if (data.best && !data.base_metric) {
    notes.push_back(absl::StrCat("The base model's ", m,
                                 " is not in sweep.db, so the improvement over it is unknown."));
  }
  return notes;
}

std::string ImprovementText(const ReportData& data) {
  if (!data.improvement_pct) return "unknown (base model not evaluated)";
  const double pct = *data.improvement_pct;
  const std::string m = MetricLabel(data.metric);
  if (pct >= 0) {
    return absl::StrCat(fmt::Sig(pct), "% ", data.lower_is_better ? "lower " : "higher ", m,
                        " than the base model");
  }
  return absl::StrCat(fmt::Sig(-pct), "% worse ", m, " than the base model");
}

std::string VllmText(const ReportTrial& t) {
  if (!t.Finished() || t.row.adapter_path.empty()) return "-";
  if (!t.vllm_max_lora_rank) return t.adapter_rank > 0 ? "unsupported" : "-";
  return absl::StrCat("--max-lora-rank ", *t.vllm_max_lora_rank);
}

std::string TrialNotes(const ReportTrial& t) {
  std::vector<std::string> notes;
  if (t.row.status == TrialStatus::kFailed && !t.row.failure.empty()) {
    notes.push_back(absl::StrCat("failed: ", t.row.failure));
  }
  if (t.row.status == TrialStatus::kStoppedEarly) {
    notes.push_back(t.row.stopped_rung >= 0
                        ? absl::StrCat("stopped early at rung ", t.row.stopped_rung, ", step ",
                                       t.row.steps_done)
                        : absl::StrCat("stopped early at step ", t.row.steps_done));
  }
  if (t.Finished()) {
    for (const std::string& n : t.vllm_notes) notes.push_back(absl::StrCat("vLLM: ", n));
  }
  return absl::StrJoin(notes, "; ");
}

// The values of one swept axis in display order: numbers ascending, categories by first appearance.
struct AxisValues {
  bool numeric = true;
  std::vector<std::string> categories;
};
AxisValues CollectAxis(const ReportData& data, const std::string& param) {
  AxisValues a;
  std::vector<std::pair<double, std::string>> numbers;
  for (const ReportTrial& t : data.trials) {
    auto it = t.params.find(param);
    if (it == t.params.end()) continue;
    if (!it->second.number) a.numeric = false;
    if (std::find(a.categories.begin(), a.categories.end(), it->second.text) ==
        a.categories.end()) {
      a.categories.push_back(it->second.text);
      numbers.emplace_back(it->second.number.value_or(0), it->second.text);
    }
  }
  if (a.numeric) {
    std::sort(numbers.begin(), numbers.end());
    a.categories.clear();
    for (const auto& [n, text] : numbers) a.categories.push_back(text);
  }
  return a;
}

// ---- Charts -------------------------------------------------------------------------------------

svg::Series TrialCurveSeries(const ReportData& data, size_t index, const std::string& metric) {
  const ReportTrial& t = data.trials[index];
  svg::Series s;
  s.name = LegendLabel(data, t);
  if (data.best && *data.best == index) s.name += " [best]";
  if (t.row.status == TrialStatus::kStoppedEarly) {
    s.name += " [stopped]";
    s.dashed = true;
    s.last_marker = svg::Marker::kSquare;
  } else if (t.row.status == TrialStatus::kFailed) {
    s.name += " [failed]";
    s.dashed = true;
    s.last_marker = svg::Marker::kCross;
  } else if (t.row.status == TrialStatus::kRunning) {
    s.name += " [running]";
    s.last_marker = svg::Marker::kCircle;
  }
  s.color = svg::PaletteColor(index);
  auto it = t.curves.find(metric);
  if (it != t.curves.end()) {
    for (const auto& [step, value] : it->second) {
      s.x.push_back(static_cast<double>(step));
      s.y.push_back(value);
    }
  }
  // A single eval point is invisible as a line.
  if (s.x.size() == 1 && s.last_marker == svg::Marker::kNone) s.marker = svg::Marker::kCircle;
  return s;
}

std::string CurveChart(const ReportData& data, const std::string& metric, const std::string& title,
                       bool with_base) {
  svg::XYChart chart;
  chart.title = title;
  chart.x.label = "optimizer step";
  chart.y.label = MetricLabel(metric);
  for (size_t i = 0; i < data.trials.size(); ++i) {
    svg::Series s = TrialCurveSeries(data, i, metric);
    if (!s.x.empty()) chart.series.push_back(std::move(s));
  }
  if (with_base && data.base_eval_loss) {
    chart.references.push_back({*data.base_eval_loss, "base model"});
  }
  return svg::RenderXYChart(chart);
}

// The finished trials' metric against one swept axis, one series per status.
std::string AxisChart(const ReportData& data, const std::string& param) {
  const AxisValues axis = CollectAxis(data, param);
  svg::XYChart chart;
  chart.title = absl::StrCat("Final ", MetricLabel(data.metric), " vs ", ParamLabel(param));
  chart.x.log = axis.numeric && IsLogAxis(data, param);
  chart.x.label = absl::StrCat(param, chart.x.log ? " (log scale)" : "");
  chart.y.label = MetricLabel(data.metric);
  chart.x.pad = axis.numeric ? 0.06 : 0;
  chart.y.pad = 0.06;
  if (!axis.numeric) chart.x.categories = axis.categories;
  svg::Series completed, stopped;
  completed.name = "completed";
  completed.color = svg::PaletteColor(0);
  stopped.name = "stopped early";
  stopped.color = svg::PaletteColor(1);
  completed.line = stopped.line = false;
  completed.marker = svg::Marker::kCircle;
  stopped.marker = svg::Marker::kSquare;
  for (const ReportTrial& t : data.trials) {
    auto it = t.params.find(param);
    if (it == t.params.end() || !t.Finished() || !t.metric_value) continue;
    svg::Series& s = t.row.status == TrialStatus::kCompleted ? completed : stopped;
    double x = 0;
    if (axis.numeric) {
      x = *it->second.number;
    } else {
      x = static_cast<double>(
          std::find(axis.categories.begin(), axis.categories.end(), it->second.text) -
          axis.categories.begin());
    }
    s.x.push_back(x);
    s.y.push_back(*t.metric_value);
    s.point_titles.push_back(
        absl::StrCat(t.row.id, " (", TrialLabel(data, t), "): ", Loss(t.metric_value)));
  }
  if (!completed.x.empty()) chart.series.push_back(completed);
  if (!stopped.x.empty()) chart.series.push_back(stopped);
  if (data.base_metric) chart.references.push_back({*data.base_metric, "base model"});
  return svg::RenderXYChart(chart);
}

bool HasRankAndLr(const ReportData& data) {
  const auto& p = data.swept_params;
  return std::find(p.begin(), p.end(), "lora.rank") != p.end() &&
         std::find(p.begin(), p.end(), "train.learning_rate") != p.end();
}

// Best metric per (rank, learning rate) over every other swept value.
svg::HeatMap RankLrHeatMap(const ReportData& data) {
  svg::HeatMap map;
  map.title = absl::StrCat("Best ", MetricLabel(data.metric), ": rank x learning rate");
  map.x_label = "learning rate";
  map.y_label = "LoRA rank";
  map.value_label = MetricLabel(data.metric);
  map.lower_is_better = data.lower_is_better;
  map.x_categories = CollectAxis(data, "train.learning_rate").categories;
  map.y_categories = CollectAxis(data, "lora.rank").categories;
  map.values.assign(map.y_categories.size(),
                    std::vector<std::optional<double>>(map.x_categories.size()));
  for (const ReportTrial& t : data.trials) {
    if (!t.Finished() || !t.metric_value) continue;
    auto r = t.params.find("lora.rank");
    auto l = t.params.find("train.learning_rate");
    if (r == t.params.end() || l == t.params.end()) continue;
    const size_t row = std::find(map.y_categories.begin(), map.y_categories.end(), r->second.text) -
                       map.y_categories.begin();
    const size_t col = std::find(map.x_categories.begin(), map.x_categories.end(), l->second.text) -
                       map.x_categories.begin();
    std::optional<double>& cell = map.values[row][col];
    if (!cell || (data.lower_is_better ? *t.metric_value < *cell : *t.metric_value > *cell)) {
      cell = t.metric_value;
    }
  }
  return map;
}

struct ParetoPoint {
  size_t trial;
  double x, y;
};

// Finished trials with a metric value and a positive cost `x`, plus the indices of the frontier.
std::pair<std::vector<ParetoPoint>, std::vector<size_t>> Pareto(
    const ReportData& data, double (*cost)(const ReportTrial&)) {
  std::vector<ParetoPoint> points;
  for (size_t i = 0; i < data.trials.size(); ++i) {
    const ReportTrial& t = data.trials[i];
    if (!t.Finished() || !t.metric_value || !(cost(t) > 0)) continue;
    points.push_back({i, cost(t), *t.metric_value});
  }
  std::vector<double> xs, ys;
  for (const ParetoPoint& p : points) {
    xs.push_back(p.x);
    ys.push_back(data.lower_is_better ? p.y : -p.y);
  }
  return {points, svg::ParetoFrontier(xs, ys)};
}

double TrainableParams(const ReportTrial& t) { return static_cast<double>(t.row.trainable_params); }
double DeviceHours(const ReportTrial& t) { return t.device_hours; }

std::string ParetoChart(const ReportData& data, double (*cost)(const ReportTrial&),
                        const std::string& title, const std::string& x_label) {
  auto [points, front] = Pareto(data, cost);
  svg::XYChart chart;
  chart.title = title;
  chart.x.label = x_label;
  chart.y.label = MetricLabel(data.metric);
  double lo = INFINITY, hi = 0;
  for (const ParetoPoint& p : points) {
    lo = std::min(lo, p.x);
    hi = std::max(hi, p.x);
  }
  // Costs spread over orders of magnitude (rank 4 vs 256) read best on a log axis.
  chart.x.log = !points.empty() && hi / lo >= 10;
  chart.x.pad = chart.y.pad = 0.06;
  if (chart.x.log) chart.x.label += " (log scale)";
  svg::Series all, frontier;
  all.name = "trial";
  all.line = false;
  all.marker = svg::Marker::kCircle;
  all.color = "#9aa7b5";
  for (const ParetoPoint& p : points) {
    all.x.push_back(p.x);
    all.y.push_back(p.y);
    all.point_titles.push_back(absl::StrCat(data.trials[p.trial].row.id, " (",
                                            TrialLabel(data, data.trials[p.trial]), ")"));
  }
  frontier.name = "Pareto front";
  frontier.marker = svg::Marker::kCircle;
  frontier.color = "#e15759";
  for (size_t i : front) {
    frontier.x.push_back(points[i].x);
    frontier.y.push_back(points[i].y);
    frontier.point_titles.push_back(all.point_titles[i]);
  }
  chart.series = {all, frontier};
  if (data.base_metric) chart.references.push_back({*data.base_metric, "base model"});
  return svg::RenderXYChart(chart);
}

std::vector<std::string> FrontierIds(const ReportData& data, double (*cost)(const ReportTrial&)) {
  auto [points, front] = Pareto(data, cost);
  std::vector<std::string> ids;
  for (size_t i : front) ids.push_back(data.trials[points[i].trial].row.id);
  return ids;
}

// ---- HTML ---------------------------------------------------------------------------------------

constexpr char kCss[] = R"css(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;
  color:#1d232a;background:#f6f7f9}
header{background:#1f3a5f;color:#fff;padding:14px 28px}
header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#d5e0ee;font-size:13px}
main{padding:8px 28px 40px}
section{background:#fff;border:1px solid #dde2e8;border-radius:8px;margin:16px 0;padding:12px 18px}
h2{font-size:17px;margin:4px 0 10px}
.notes{border-left:4px solid #d9822b;background:#fff6ea;padding:8px 14px;margin:14px 0}
.notes p{margin:4px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{box-sizing:border-box;flex:1 1 180px;border:1px solid #dde2e8;border-radius:8px;
  padding:10px 14px;background:#fbfcfd}
.card .k{font-size:12px;color:#5a6570;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:24px;font-weight:600;margin:4px 0}
.card .v.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:17px;padding:4px 0}
.card .s{font-size:13px;color:#3d4852}
.good{color:#2a7a2a}.bad{color:#b3261e}
.charts{display:flex;flex-wrap:wrap;gap:12px}
.charts svg{border:1px solid #eef0f3;border-radius:4px;max-width:100%;height:auto}
table{border-collapse:collapse;font-size:13px;margin:6px 0}
th,td{border-bottom:1px solid #e6e9ed;padding:4px 8px;text-align:left;white-space:nowrap}
td.n{text-align:right;font-variant-numeric:tabular-nums}
th{background:#f0f3f6;position:sticky;top:0}
table.sortable th{cursor:pointer}
table.sortable th[aria-sort=ascending]::after{content:" \25B2"}
table.sortable th[aria-sort=descending]::after{content:" \25BC"}
tr.best td{background:#eaf5ea}
code{background:#f0f3f6;padding:1px 4px;border-radius:3px}
.wrap{overflow-x:auto}
.small{font-size:12px;color:#5a6570}
)css";

// Sorts a table by the clicked column: numbers (data-v) numerically, text alphabetically, blanks
// last.
constexpr char kSortScript[] = R"js(
(function () {
  function key(cell) {
    var v = cell.getAttribute('data-v');
    if (v === null) v = cell.textContent;
    v = v.trim();
    if (v === '' || v === '-') return null;
    var n = Number(v);
    return isNaN(n) ? v.toLowerCase() : n;
  }
  document.querySelectorAll('table.sortable').forEach(function (table) {
    var heads = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(heads, function (th, col) {
      th.addEventListener('click', function () {
        var asc = th.getAttribute('aria-sort') !== 'ascending';
        Array.prototype.forEach.call(heads, function (h) { h.removeAttribute('aria-sort'); });
        th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = key(a.cells[col]), y = key(b.cells[col]);
          if (x === null || y === null) return (x === null) - (y === null);
          var c = (typeof x === typeof y) ? (x < y ? -1 : x > y ? 1 : 0)
                                          : (typeof x === 'number' ? -1 : 1);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });
  });
})();
)js";

std::string Td(const std::string& text, bool numeric = false, const std::string& sort_value = "") {
  return absl::StrCat(
      "<td", numeric ? " class=\"n\"" : "",
      sort_value.empty() ? "" : absl::StrCat(" data-v=\"", EscapeXml(sort_value), "\""), ">",
      EscapeXml(text), "</td>");
}
std::string Th(const std::string& text, const std::string& title = "") {
  return absl::StrCat("<th", title.empty() ? "" : absl::StrCat(" title=\"", EscapeXml(title), "\""),
                      ">", EscapeXml(text), "</th>");
}
std::string NumTd(std::optional<double> v, const std::string& shown) {
  return Td(shown, true, v ? Exact(*v) : "");
}

std::string Card(const std::string& key, const std::string& value, const std::string& sub,
                 const std::string& value_class = "") {
  return absl::StrCat("<div class=\"card\"><div class=\"k\">", EscapeXml(key),
                      "</div><div class=\"v", value_class.empty() ? "" : " ", value_class, "\">",
                      EscapeXml(value), "</div><div class=\"s\">", sub, "</div></div>\n");
}

std::string ConfigLine(const ReportTrial& t) {
  std::vector<std::string> parts;
  if (t.config.lora_rank > 0 || t.adapter_rank > 0) {
    parts.push_back(
        absl::StrCat("rank ", t.adapter_rank > 0 ? t.adapter_rank : t.config.lora_rank));
  }
  if (t.config.lora_alpha > 0) {
    parts.push_back(
        absl::StrCat("alpha ", Exact(t.config.lora_alpha), t.config.rslora ? " (rsLoRA)" : ""));
  }
  if (t.config.learning_rate > 0)
    parts.push_back(absl::StrCat("lr ", fmt::Sig(t.config.learning_rate)));
  if (t.config.steps > 0) parts.push_back(absl::StrCat(t.config.steps, " steps"));
  parts.push_back(absl::StrCat(
      "shards ", t.config.data_shards.empty() ? "all" : absl::StrJoin(t.config.data_shards, "+")));
  return absl::StrJoin(parts, " · ");
}

std::string SummarySection(const ReportData& data) {
  std::string out = "<section id=\"summary\"><h2>Summary</h2>\n<div class=\"cards\">\n";
  const std::string m = MetricLabel(data.metric);
  if (data.best) {
    const ReportTrial& b = data.trials[*data.best];
    out += Card("Best trial", b.row.id,
                EscapeXml(absl::StrCat(TrialLabel(data, b), " — ", StatusText(b.row.status))));
    std::string sub;
    if (data.metric == "eval_loss" || data.metric == "eval_perplexity") {
      sub = absl::StrCat("perplexity ", Opt(b.eval_perplexity), "<br>base model: ",
                         data.base_eval_loss
                             ? absl::StrCat(Loss(data.base_eval_loss), " (perplexity ",
                                            Opt(data.base_eval_perplexity), ")")
                             : std::string("not evaluated"));
    } else {
      sub =
          absl::StrCat("base model: ", data.base_metric ? Loss(data.base_metric) : "not evaluated");
    }
    out += Card(absl::StrCat("Best ", m), Loss(b.metric_value), sub);
    if (data.improvement_pct) {
      const double pct = *data.improvement_pct;
      out += Card("Improvement over base", absl::StrCat(pct >= 0 ? "+" : "", fmt::Sig(pct), "%"),
                  EscapeXml(ImprovementText(data)), pct >= 0 ? "good" : "bad");
    } else {
      out += Card("Improvement over base", "unknown", "base model not evaluated in this sweep");
    }
    out += Card(
        "Serve with vLLM", VllmText(b),
        absl::StrCat("<code>", EscapeXml(b.row.adapter_path.empty() ? "-" : b.row.adapter_path),
                     "</code><br>", EscapeXml(ConfigLine(b))),
        "mono");
  } else {
    out += Card("Best trial", "none",
                EscapeXml(data.trials.empty() ? "no trials recorded"
                                              : absl::StrCat("no finished trial with ", m)),
                "bad");
  }
  double hours = 0, wall = 0;
  for (const ReportTrial& t : data.trials) {
    hours += t.device_hours;
    wall += t.row.wall_s;
  }
  out += Card("Sweep", absl::StrCat(data.Finished(), " / ", data.trials.size(), " finished"),
              EscapeXml(absl::StrCat(StatusBreakdown(data), "; ", fmt::Sig(hours), " ",
                                     HoursLabel(data), " in all")));
  out += "</div>\n";
  if (data.best) {
    const ReportTrial& b = data.trials[*data.best];
    out += "<h3>Best configuration</h3>\n<div class=\"wrap\"><table><tbody>\n";
    auto row = [&](const std::string& k, const std::string& v) {
      absl::StrAppend(&out, "<tr><th>", EscapeXml(k), "</th>", Td(v), "</tr>\n");
    };
    for (const std::string& p : data.swept_params) {
      auto it = b.params.find(p);
      row(absl::StrCat(p, " (swept)"), it == b.params.end() ? "-" : it->second.text);
    }
    if (!b.config.model.empty()) row("model", b.config.model);
    if (!b.config.quantization.empty()) row("quantization", b.config.quantization);
    row("LoRA", ConfigLine(b));
    if (!b.config.target_modules.empty()) {
      row("target modules", absl::StrJoin(b.config.target_modules, ", "));
    }
    row("trainable parameters", fmt::Count(static_cast<double>(b.row.trainable_params)));
    row("final train loss", Loss(b.row.final_train_loss));
    row("final eval loss",
        absl::StrCat(Loss(b.eval_loss), " (perplexity ", Opt(b.eval_perplexity), ")"));
    row("adapter", b.row.adapter_path.empty() ? "-" : b.row.adapter_path);
    out += "</tbody></table></div>\n";
  }
  return out + "</section>\n";
}

std::string CurvesSection(const ReportData& data) {
  std::string out = "<section id=\"curves\"><h2>Loss curves</h2>\n";
  out +=
      "<p class=\"small\">Every trial on shared axes. Dashed lines ending in a square: stopped "
      "early; dashed lines ending in a cross: failed; [best] marks the best trial. The dotted "
      "black line is the base model's eval loss.</p>\n<div class=\"charts\">\n";
  out += CurveChart(data, "loss", "Training loss", false);
  out += CurveChart(data, "eval_loss", "Eval loss", true);
  return out + "</div></section>\n";
}

std::string AxesSection(const ReportData& data) {
  std::string out =
      absl::StrCat("<section id=\"axes\"><h2>Final ", EscapeXml(MetricLabel(data.metric)),
                   " vs each swept value</h2>\n");
  if (data.swept_params.empty()) {
    return out + "<p>Nothing was swept: every trial has the same configuration.</p></section>\n";
  }
  const size_t unplotted = data.trials.size() - [&] {
    size_t n = 0;
    for (const ReportTrial& t : data.trials) n += t.Finished() && t.metric_value ? 1 : 0;
    return n;
  }();
  out += "<div class=\"charts\">\n";
  for (const std::string& p : data.swept_params) out += AxisChart(data, p);
  if (HasRankAndLr(data)) out += svg::RenderHeatMap(RankLrHeatMap(data));
  out += "</div>\n";
  if (unplotted > 0) {
    absl::StrAppend(
        &out, "<p class=\"small\">", unplotted,
        " trial(s) without a final value (failed, pending or running) are not plotted.</p>\n");
  }
  return out + "</section>\n";
}

std::string CostSection(const ReportData& data) {
  std::string out = "<section id=\"cost\"><h2>Cost</h2>\n";
  out += "<div class=\"wrap\"><table class=\"sortable\"><thead><tr>";
  out += Th("trial") + Th("status") + Th("wall time") + Th("tokens/s") + Th("tokens seen") +
         Th("peak memory", "peak resident memory of one worker") +
         Th("communication", "bytes all-reduced by one rank") + Th("workers") +
         Th(HoursLabel(data), "wall time x workers");
  out += "</tr></thead><tbody>\n";
  double wall = 0, hours = 0, tokens = 0, comm = 0;
  for (const ReportTrial& t : data.trials) {
    const TrialRow& r = t.row;
    wall += r.wall_s;
    hours += t.device_hours;
    tokens += static_cast<double>(r.tokens_seen);
    comm += static_cast<double>(r.comm_bytes);
    absl::StrAppend(
        &out, "<tr>", Td(r.id), Td(StatusText(r.status)), NumTd(r.wall_s, fmt::Duration(r.wall_s)),
        NumTd(r.tokens_per_s, fmt::Count(r.tokens_per_s)),
        NumTd(static_cast<double>(r.tokens_seen), fmt::Count(static_cast<double>(r.tokens_seen))),
        NumTd(static_cast<double>(r.peak_rss_bytes),
              fmt::Bytes(static_cast<double>(r.peak_rss_bytes))),
        NumTd(static_cast<double>(r.comm_bytes), fmt::Bytes(static_cast<double>(r.comm_bytes))),
        NumTd(static_cast<double>(r.workers), absl::StrCat(r.workers)),
        NumTd(t.device_hours, Hours(t)), "</tr>\n");
  }
  out += "</tbody></table></div>\n";
  absl::StrAppend(&out, "<p class=\"small\">Total: ", EscapeXml(fmt::Duration(wall)),
                  " of trial wall time, ", EscapeXml(fmt::Sig(hours)), " ", HoursLabel(data), ", ",
                  EscapeXml(fmt::Count(tokens)), " tokens, ", EscapeXml(fmt::Bytes(comm)),
                  " all-reduced. Hours are worker-hours: wall time x worker processes.</p>\n");
  return out + "</section>\n";
}

std::string ParetoSection(const ReportData& data) {
  std::string out = "<section id=\"pareto\"><h2>Quality vs size and cost (Pareto)</h2>\n";
  out +=
      "<p class=\"small\">Red points are on the Pareto front: no other trial is both cheaper "
      "(or smaller) and better.</p>\n<div class=\"charts\">\n";
  out += ParetoChart(data, TrainableParams,
                     absl::StrCat(MetricLabel(data.metric), " vs trainable parameters"),
                     "trainable parameters");
  out += ParetoChart(data, DeviceHours, absl::StrCat(MetricLabel(data.metric), " vs compute"),
                     HoursLabel(data));
  out += "</div>\n";
  const std::vector<std::string> by_size = FrontierIds(data, TrainableParams);
  const std::vector<std::string> by_cost = FrontierIds(data, DeviceHours);
  absl::StrAppend(&out, "<p class=\"small\">Front by size: ",
                  EscapeXml(by_size.empty() ? "-" : absl::StrJoin(by_size, ", ")),
                  ". Front by compute: ",
                  EscapeXml(by_cost.empty() ? "-" : absl::StrJoin(by_cost, ", ")), ".</p>\n");
  return out + "</section>\n";
}

std::string TrialsSection(const ReportData& data) {
  std::string out = "<section id=\"trials\"><h2>All trials</h2>\n";
  out +=
      "<p class=\"small\">Click a column header to sort. vLLM serves an adapter only when "
      "started with <code>--enable-lora --max-lora-rank N</code>, N at least the adapter's rank "
      "and one of 1, 8, 16, 32, 64, 128, 256, 320, 512.</p>\n";
  out += "<div class=\"wrap\"><table class=\"sortable\"><thead><tr>";
  out += Th("trial") + Th("status");
  for (const std::string& p : data.swept_params) out += Th(ParamLabel(p), p);
  const bool extra_metric = data.metric != "eval_loss" && data.metric != "loss";
  out += Th("train loss", "final training loss") + Th("eval loss", "final eval loss") +
         Th("best eval", "lowest eval loss seen") + Th("perplexity", "exp(final eval loss)");
  if (extra_metric) out += Th(data.metric);
  out += Th("steps") + Th("params", "trainable parameters") + Th("wall time") + Th("adapter") +
         Th("vLLM") + Th("notes");
  out += "</tr></thead><tbody>\n";
  for (size_t i = 0; i < data.trials.size(); ++i) {
    const ReportTrial& t = data.trials[i];
    const TrialRow& r = t.row;
    absl::StrAppend(&out, data.best && *data.best == i ? "<tr class=\"best\">" : "<tr>",
                    Td(r.kind == "trained" ? r.id : absl::StrCat(r.id, " (", r.kind, ")")),
                    Td(StatusText(r.status)));
    for (const std::string& p : data.swept_params) {
      auto it = t.params.find(p);
      if (it == t.params.end()) {
        out += Td("-");
      } else {
        out += Td(it->second.text, it->second.number.has_value(),
                  it->second.number ? Exact(*it->second.number) : "");
      }
    }
    absl::StrAppend(&out, NumTd(r.final_train_loss, Loss(r.final_train_loss)),
                    NumTd(t.eval_loss, Loss(t.eval_loss)),
                    NumTd(r.best_eval_loss, Loss(r.best_eval_loss)),
                    NumTd(t.eval_perplexity, Opt(t.eval_perplexity)));
    if (extra_metric) out += NumTd(t.metric_value, Loss(t.metric_value));
    absl::StrAppend(
        &out, NumTd(static_cast<double>(r.steps_done), absl::StrCat(r.steps_done)),
        NumTd(static_cast<double>(r.trainable_params),
              fmt::Count(static_cast<double>(r.trainable_params))),
        NumTd(r.wall_s, fmt::Duration(r.wall_s)), Td(r.adapter_path.empty() ? "-" : r.adapter_path),
        Td(VllmText(t), false,
           t.vllm_max_lora_rank && t.Finished() ? absl::StrCat(*t.vllm_max_lora_rank) : ""),
        Td(TrialNotes(t)), "</tr>\n");
  }
  return out + "</tbody></table></div></section>\n";
}

std::string NowText() {
  const std::time_t now = std::time(nullptr);
  std::tm tm_utc;
  gmtime_r(&now, &tm_utc);
  char buffer[64];
  std::strftime(buffer, sizeof(buffer), "%Y-%m-%d %H:%M UTC", &tm_utc);
  return buffer;
}

// ---- Markdown -----------------------------------------------------------------------------------

std::string MdCell(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '|') {
      out += "\\|";
    } else if (c == '\n') {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out.empty() ? "-" : out;
}

std::string MdRow(const std::vector<std::string>& cells) {
  std::vector<std::string> escaped;
  for (const std::string& c : cells) escaped.push_back(MdCell(c));
  return absl::StrCat("| ", absl::StrJoin(escaped, " | "), " |\n");
}

std::string MdHeader(const std::vector<std::string>& cells) {
  std::string out = MdRow(cells) + "|";
  for (size_t i = 0; i < cells.size(); ++i) out += "---|";
  return out + "\n";
}

// ---- CSV ----------------------------------------------------------------------------------------

// RFC 4180: quote fields holding a comma, quote or line break; double the quotes inside.
std::string CsvField(const std::string& text) {
  if (text.find_first_of(",\"\r\n") == std::string::npos) return text;
  std::string out = "\"";
  for (char c : text) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + "\"";
}

std::string CsvRow(const std::vector<std::string>& cells) {
  std::vector<std::string> fields;
  for (const std::string& c : cells) fields.push_back(CsvField(c));
  return absl::StrJoin(fields, ",") + "\n";
}

}  // namespace

absl::Status ParseReportFormats(const std::string& text, ReportOptions* options) {
  const std::string trimmed(absl::StripAsciiWhitespace(text));
  if (trimmed.empty() || trimmed == "auto" || trimmed == "all") {
    options->html = options->markdown = options->csv = true;
    return absl::OkStatus();
  }
  options->html = options->markdown = options->csv = false;
  for (absl::string_view part : absl::StrSplit(trimmed, ',', absl::SkipWhitespace())) {
    const std::string f(absl::StripAsciiWhitespace(part));
    if (f == "html") {
      options->html = true;
    } else if (f == "md" || f == "markdown") {
      options->markdown = true;
    } else if (f == "csv") {
      options->csv = true;
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("--format: unknown report format '", f, "' (expected html, md, csv)"));
    }
  }
  return absl::OkStatus();
}

std::string ReportHeadline(const ReportData& data) {
  std::string out = StatusBreakdown(data);
  if (data.best) {
    const ReportTrial& b = data.trials[*data.best];
    absl::StrAppend(&out, ". Best: ", b.row.id, " (", TrialLabel(data, b), "), ",
                    MetricLabel(data.metric), " ", Loss(b.metric_value));
    if (data.base_metric) {
      absl::StrAppend(&out, " vs base ", Loss(data.base_metric), ": ", ImprovementText(data));
    }
  }
  for (const std::string& note : StateNotes(data)) absl::StrAppend(&out, "\n", note);
  return out;
}

std::string RenderReportHtml(const ReportData& data) {
  const std::string name = data.sweep_name.empty() ? "sweep" : data.sweep_name;
  std::string out = absl::StrCat(
      "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
      "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
      "<title>lorasweep report: ",
      EscapeXml(name), "</title>\n<style>", kCss, "</style>\n</head>\n<body>\n<header><h1>Sweep ",
      EscapeXml(name), "</h1>\n<p>", EscapeXml(StatusBreakdown(data)), " · best by final ",
      EscapeXml(MetricLabel(data.metric)),
      data.lower_is_better ? " (lower is better)" : " (higher is better)", " · ",
      EscapeXml(data.run_dir.empty() ? "" : data.run_dir + "/sweep.db"), "</p></header>\n<main>\n");
  const std::vector<std::string> notes = StateNotes(data);
  if (!notes.empty()) {
    out += "<div class=\"notes\" id=\"state\">\n";
    for (const std::string& n : notes) absl::StrAppend(&out, "<p>", EscapeXml(n), "</p>\n");
    out += "</div>\n";
  }
  if (!data.trials.empty()) {
    out += SummarySection(data);
    out += CurvesSection(data);
    out += AxesSection(data);
    out += CostSection(data);
    out += ParetoSection(data);
    out += TrialsSection(data);
  }
  absl::StrAppend(&out, "<p class=\"small\">Written by <code>lorasweep report</code> on ",
                  EscapeXml(NowText()), (data.created_at.empty() ? "" : " · sweep created "),
                  EscapeXml(data.created_at), ". See docs/report.md for how to read it.</p>\n",
                  "</main>\n<script>", kSortScript, "</script>\n</body>\n</html>\n");
  return out;
}

std::string RenderReportMarkdown(const ReportData& data) {
  const std::string name = data.sweep_name.empty() ? "sweep" : data.sweep_name;
  const std::string m = MetricLabel(data.metric);
  std::string out =
      absl::StrCat("# Sweep report: ", name, "\n\n", StatusBreakdown(data), ". Best by final ", m,
                   data.lower_is_better ? " (lower is better).\n\n" : " (higher is better).\n\n");
  for (const std::string& n : StateNotes(data)) absl::StrAppend(&out, "> ", n, "\n>\n");
  if (!StateNotes(data).empty()) out += "\n";
  if (data.trials.empty()) return out;

  out += "## Summary\n\n";
  out += MdHeader({"", "value"});
  if (data.best) {
    const ReportTrial& b = data.trials[*data.best];
    out += MdRow({"best trial", absl::StrCat("`", b.row.id, "` (", TrialLabel(data, b), ")")});
    out += MdRow({absl::StrCat("best ", m), Loss(b.metric_value)});
    out += MdRow({"eval loss (perplexity)",
                  absl::StrCat(Loss(b.eval_loss), " (", Opt(b.eval_perplexity), ")")});
    out += MdRow({"base model eval loss (perplexity)",
                  data.base_eval_loss ? absl::StrCat(Loss(data.base_eval_loss), " (",
                                                     Opt(data.base_eval_perplexity), ")")
                                      : "not evaluated"});
    out += MdRow({"improvement over base", data.improvement_pct
                                               ? absl::StrCat(fmt::Sig(*data.improvement_pct),
                                                              "% (", ImprovementText(data), ")")
                                               : "unknown"});
    out += MdRow({"configuration", ConfigLine(b)});
    out += MdRow(
        {"adapter", b.row.adapter_path.empty() ? "-" : absl::StrCat("`", b.row.adapter_path, "`")});
    out += MdRow({"vLLM", VllmText(b)});
  } else {
    out += MdRow({"best trial", "none"});
  }
  out += "\n";

  if (!data.swept_params.empty()) {
    absl::StrAppend(&out, "## Final ", m, " by swept value\n\n");
    for (const std::string& p : data.swept_params) {
      absl::StrAppend(&out, "### ", p, "\n\n");
      out += MdHeader(
          {ParamLabel(p), "finished trials", absl::StrCat("best ", m), absl::StrCat("mean ", m)});
      for (const std::string& value : CollectAxis(data, p).categories) {
        size_t n = 0;
        double sum = 0;
        std::optional<double> best;
        for (const ReportTrial& t : data.trials) {
          auto it = t.params.find(p);
          if (it == t.params.end() || it->second.text != value || !t.Finished() ||
              !t.metric_value) {
            continue;
          }
          ++n;
          sum += *t.metric_value;
          if (!best || (data.lower_is_better ? *t.metric_value < *best : *t.metric_value > *best)) {
            best = t.metric_value;
          }
        }
        out += MdRow(
            {value, absl::StrCat(n), Loss(best), n ? Loss(sum / static_cast<double>(n)) : "-"});
      }
      out += "\n";
    }
    if (HasRankAndLr(data)) {
      const svg::HeatMap map = RankLrHeatMap(data);
      absl::StrAppend(&out, "### Best ", m, ": rank (rows) x learning rate (columns)\n\n");
      std::vector<std::string> header = {"rank \\ lr"};
      for (const std::string& c : map.x_categories) header.push_back(c);
      out += MdHeader(header);
      for (size_t r = 0; r < map.y_categories.size(); ++r) {
        std::vector<std::string> row = {map.y_categories[r]};
        for (const auto& v : map.values[r]) row.push_back(Loss(v));
        out += MdRow(row);
      }
      out += "\n";
    }
  }

  out += "## Cost\n\n";
  out += MdHeader({"trial", "status", "wall time", "tokens/s", "tokens seen", "peak memory",
                   "communication", "workers", HoursLabel(data)});
  for (const ReportTrial& t : data.trials) {
    const TrialRow& r = t.row;
    out +=
        MdRow({r.id, StatusText(r.status), fmt::Duration(r.wall_s), fmt::Count(r.tokens_per_s),
               fmt::Count(static_cast<double>(r.tokens_seen)),
               fmt::Bytes(static_cast<double>(r.peak_rss_bytes)),
               fmt::Bytes(static_cast<double>(r.comm_bytes)), absl::StrCat(r.workers), Hours(t)});
  }
  out += "\n## Pareto front\n\n";
  const std::vector<std::string> by_size = FrontierIds(data, TrainableParams);
  const std::vector<std::string> by_cost = FrontierIds(data, DeviceHours);
  absl::StrAppend(
      &out, "- ", m,
      " vs trainable parameters: ", by_size.empty() ? "-" : absl::StrJoin(by_size, ", "), "\n- ", m,
      " vs ", HoursLabel(data), ": ", by_cost.empty() ? "-" : absl::StrJoin(by_cost, ", "), "\n\n");

  out += "## All trials\n\n";
  std::vector<std::string> header = {"trial", "status"};
  for (const std::string& p : data.swept_params) header.push_back(ParamLabel(p));
  for (const char* h : {"train loss", "eval loss", "best eval", "perplexity", "steps", "params",
                        "wall time", "adapter", "vLLM", "notes"}) {
    header.push_back(h);
  }
  out += MdHeader(header);
  for (size_t i = 0; i < data.trials.size(); ++i) {
    const ReportTrial& t = data.trials[i];
    const TrialRow& r = t.row;
    std::vector<std::string> row = {
        data.best && *data.best == i ? absl::StrCat("**", r.id, "** (best)") : r.id,
        StatusText(r.status)};
    for (const std::string& p : data.swept_params) {
      auto it = t.params.find(p);
      row.push_back(it == t.params.end() ? "-" : it->second.text);
    }
    for (const std::string& cell :
         {Loss(r.final_train_loss), Loss(t.eval_loss), Loss(r.best_eval_loss),
          Opt(t.eval_perplexity), absl::StrCat(r.steps_done),
          fmt::Count(static_cast<double>(r.trainable_params)), fmt::Duration(r.wall_s),
          r.adapter_path.empty() ? "-" : r.adapter_path, VllmText(t), TrialNotes(t)}) {
      row.push_back(cell);
    }
    out += MdRow(row);
  }
  return out;
}

std::string RenderTrialsCsv(const ReportData& data) {
  std::vector<std::string> header = {"trial_id", "ordinal", "kind", "status"};
  for (const std::string& p : data.swept_params) header.push_back(p);
  const bool extra_metric = data.metric != "eval_loss" && data.metric != "loss";
  for (const char* h :
       {"final_train_loss", "final_eval_loss", "best_eval_loss", "eval_perplexity"}) {
    header.push_back(h);
  }
  if (extra_metric) header.push_back("final_" + data.metric);
  for (const char* h :
       {"steps_done", "stopped_rung", "tokens_seen", "wall_s", "tokens_per_s", "peak_rss_bytes",
        "comm_bytes", "workers", "device_hours", "device", "trainable_params", "lora_rank",
        "vllm_max_lora_rank", "adapter_path", "failure"}) {
    header.push_back(h);
  }
  std::string out = CsvRow(header);
  for (const ReportTrial& t : data.trials) {
    const TrialRow& r = t.row;
    std::vector<std::string> row = {r.id, absl::StrCat(r.ordinal), r.kind,
                                    TrialStatusName(r.status)};
    for (const std::string& p : data.swept_params) {
      auto it = t.params.find(p);
      row.push_back(it == t.params.end() ? "" : it->second.text);
    }
    row.push_back(Exact(r.final_train_loss));
    row.push_back(Exact(t.eval_loss));
    row.push_back(Exact(r.best_eval_loss));
    row.push_back(Exact(t.eval_perplexity));
    if (extra_metric) row.push_back(Exact(t.metric_value));
    row.push_back(absl::StrCat(r.steps_done));
    row.push_back(r.stopped_rung >= 0 ? absl::StrCat(r.stopped_rung) : "");
    row.push_back(absl::StrCat(r.tokens_seen));
    row.push_back(Exact(r.wall_s));
    row.push_back(Exact(r.tokens_per_s));
    row.push_back(absl::StrCat(r.peak_rss_bytes));
    row.push_back(absl::StrCat(r.comm_bytes));
    row.push_back(absl::StrCat(r.workers));
    row.push_back(Exact(t.device_hours));
    row.push_back(t.gpu ? "gpu" : "cpu");
    row.push_back(absl::StrCat(r.trainable_params));
    row.push_back(absl::StrCat(t.adapter_rank));
    row.push_back(t.vllm_max_lora_rank ? absl::StrCat(*t.vllm_max_lora_rank) : "");
    row.push_back(r.adapter_path);
    row.push_back(r.failure);
    out += CsvRow(row);
  }
  return out;
}

std::string RenderMetricsCsv(const ReportData& data) {
  std::string out = "trial_id,step,name,value\n";
  for (const ReportTrial& t : data.trials) {
    for (const auto& [name, curve] : t.curves) {
      for (const auto& [step, value] : curve) {
        out += CsvRow({t.row.id, absl::StrCat(step), name, Exact(value)});
      }
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> WriteReportFiles(const ReportData& data,
                                                          const ReportOptions& options) {
  const std::string dir = options.out_dir.empty() ? data.run_dir : options.out_dir;
  if (dir.empty())
    return absl::InvalidArgumentError("report: no output folder (run_dir and --out empty)");
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::vector<std::string> written;
  auto write = [&](const std::string& name, const std::string& contents) -> absl::Status {
    const std::string path = dir + "/" + name;
    absl::Status s = WriteFileAtomically(path, contents);
    if (!s.ok()) return absl::Status(s.code(), absl::StrCat(path, ": ", s.message()));
    written.push_back(path);
    return absl::OkStatus();
  };
  if (options.html) RETURN_IF_ERROR(write("report.html", RenderReportHtml(data)));
  if (options.markdown) RETURN_IF_ERROR(write("report.md", RenderReportMarkdown(data)));
  if (options.csv) {
    RETURN_IF_ERROR(write("trials.csv", RenderTrialsCsv(data)));
    RETURN_IF_ERROR(write("metrics.csv", RenderMetricsCsv(data)));
  }
  return written;
}

absl::Status WriteSweepReport(const std::string& run_dir, const ReportOptions& options) {
  ASSIGN_OR_RETURN(ReportData data, LoadReportDataFromRunDir(run_dir, options.metric));
  return WriteReportFiles(data, options).status();
}

}  // namespace lorasweep

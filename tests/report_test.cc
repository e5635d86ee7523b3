// `lorasweep report`: from a fixture sweep.db with known trials and curves, the report's numbers,
// tables and CSV rows equal the expected ones; the HTML is well formed, has no URL, and renders in
// headless Chromium; empty, running and all-failed sweeps produce reports that say so.
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "coordinator/report_data.h"
#include "coordinator/report_writer.h"
#include "coordinator/results_store.h"
#include "coordinator/svg_chart.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace lorasweep {
namespace {

using nlohmann::json;

std::string MakeTempDir() {
  std::string pattern = ::testing::TempDir() + "report_test_XXXXXX";
  char* dir = mkdtemp(pattern.data());
  EXPECT_NE(dir, nullptr);
  return pattern;
}

std::string Slurp(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// ---- The fixture
// ----------------------------------------------------------------------------------

struct FixtureTrial {
  std::string id;
  int rank;
  double lr;
  std::vector<std::string> shards;
  TrialStatus status;
  std::optional<double> train_loss, eval_loss, best_eval;
  double wall_s;
  int64_t workers, trainable;
  std::string failure;
};

constexpr double kBaseEvalLoss = 2.40;

// Six trials over rank x lr x shards: one stopped early, one failed (whose last eval point is the
// lowest of all, so a report that ranked failed trials would pick the wrong one).
std::vector<FixtureTrial> FixtureTrials() {
  return {
      {"aaaa01",
       8,
       1e-4,
       {"install"},
       TrialStatus::kCompleted,
       1.90,
       2.10,
       2.10,
       30.5,
       1,
       100000,
       ""},
      {"aaaa02", 16, 1e-4, {}, TrialStatus::kCompleted, 1.85, 2.05, 2.05, 95.0, 2, 200000, ""},
      {"aaaa03",
       8,
       2e-4,
       {"install"},
       TrialStatus::kCompleted,
       1.70,
       1.95,
       1.93,
       31.0,
       1,
       100000,
       ""},
      {"aaaa04", 16, 2e-4, {}, TrialStatus::kCompleted, 1.60, 1.80, 1.80, 4000.0, 2, 200000, ""},
      {"aaaa05",
       64,
       2e-4,
       {"install", "packages"},
       TrialStatus::kStoppedEarly,
       2.20,
       2.30,
       2.30,
       12.0,
       1,
       800000,
       ""},
      {"aaaa06",
       64,
       1e-4,
       {},
       TrialStatus::kFailed,
       std::nullopt,
       std::nullopt,
       std::nullopt,
       3.0,
       1,
       800000,
       "diverged at step 3, loss \"nan\""},
  };
}

std::string ConfigJson(const FixtureTrial& f) {
  json c = {{"model", "models/SmolLM2-135M"},
            {"quantization", {{"type", "nf4"}, {"blocksize", 64}, {"double_quant", true}}},
            {"lora",
             {{"rank", f.rank},
              {"alpha", 2.0 * f.rank},
              {"rslora", false},
              {"target_modules", {"q_proj", "k_proj", "v_proj", "o_proj"}}}},
            {"data", {{"path", "data/faq"}, {"shards", f.shards}}},
            // Proto JSON spells int64 as strings.
            {"train", {{"steps", "30"}, {"learning_rate", f.lr}}},
            {"device", "cpu"}};
  return c.dump(2);
}

// The curves each trial logged: train loss every 10 steps, eval loss at 15 and 30.
std::vector<MetricPoint> FixturePoints(const FixtureTrial& f) {
  std::vector<MetricPoint> points;
  const int last = f.status == TrialStatus::kStoppedEarly ? 15
                   : f.status == TrialStatus::kFailed     ? 3
                                                          : 30;
  for (int step = 1; step <= last; step += (step == 1 ? 9 : 10)) {
    const double loss = f.train_loss.value_or(3.0) + 0.02 * (last - step);
    points.push_back({f.id, step, "loss", loss, 0});
    points.push_back({f.id, step, "lr", f.lr, 0});
    points.push_back({f.id, step, "grad_norm", 0.5, 0});
  }
  if (f.status == TrialStatus::kFailed) {
    points.push_back({f.id, 3, "loss", 2.5, 0});
    points.push_back({f.id, 3, "eval_loss", 1.0, 0});  // lowest of all, but the trial failed
  } else {
    points.push_back({f.id, 15, "eval_loss", *f.eval_loss + 0.1, 0});
    if (last == 30) points.push_back({f.id, 30, "eval_loss", *f.eval_loss, 0});
  }
  return points;
}

TrialRow FixtureRow(const FixtureTrial& f, int64_t ordinal) {
  TrialRow r;
  r.id = f.id;
  r.ordinal = ordinal;
  r.config_json = ConfigJson(f);
  r.params_json =
      json{{"lora.rank", f.rank}, {"train.learning_rate", f.lr}, {"data.shards", f.shards}}.dump();
  r.status = f.status;
  r.attempts = 1;
  r.failure = f.failure;
  r.stopped_rung = f.status == TrialStatus::kStoppedEarly ? 0 : -1;
  r.steps_done = f.status == TrialStatus::kStoppedEarly ? 15
                 : f.status == TrialStatus::kFailed     ? 3
                                                        : 30;
  r.final_train_loss = f.train_loss;
  r.final_eval_loss = f.eval_loss;
  r.best_eval_loss = f.best_eval;
  r.tokens_seen = r.steps_done * 4096;
  r.wall_s = f.wall_s;
  r.tokens_per_s = 4096.0 * static_cast<double>(r.steps_done) / f.wall_s;
  r.peak_rss_bytes = 700'000'000 + f.rank * 1'000'000;
  r.comm_bytes = f.workers > 1 ? 4 * f.trainable * r.steps_done : 0;
  r.trainable_params = f.trainable;
  r.workers = f.workers;
  r.lora_rank = f.rank;
  if (f.status != TrialStatus::kFailed) r.adapter_path = absl::StrCat("trials/", f.id, "/adapter");
  return r;
}

// Writes RUN_DIR/sweep.db with the given trials; returns the number of metric points stored.
size_t WriteFixture(const std::string& run_dir, const std::vector<FixtureTrial>& trials,
                    std::optional<double> base_eval_loss) {
  absl::StatusOr<std::unique_ptr<ResultsStore>> store = ResultsStore::Open(run_dir + "/sweep.db");
  EXPECT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->SetValue("name", "faq <sweep> & co").ok());
  EXPECT_TRUE((*store)->SetValue("created_at", "2024-05-01T10:00:00Z").ok());
  if (base_eval_loss) {
    EXPECT_TRUE((*store)->SetValue("base_eval_loss", absl::StrCat(*base_eval_loss)).ok());
  }
  std::vector<TrialRow> rows;
  std::vector<MetricPoint> points;
  for (size_t i = 0; i < trials.size(); ++i) {
    rows.push_back(FixtureRow(trials[i], static_cast<int64_t>(i)));
    for (const MetricPoint& p : FixturePoints(trials[i])) points.push_back(p);
  }
  EXPECT_TRUE((*store)->AddTrialsIfMissing(rows).ok());
  EXPECT_TRUE((*store)->AddMetrics(points).ok());
  // (trial, step, name) is the key: count what the table holds, not what was sent.
  absl::StatusOr<std::vector<MetricPoint>> stored = (*store)->Metrics();
  EXPECT_TRUE(stored.ok());
  return stored->size();
}

// ---- Small parsers used to read the outputs back
// ---------------------------------------------------

std::vector<std::vector<std::string>> ParseCsv(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> row;
  std::string field;
  bool quoted = false, any = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quoted) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        quoted = false;
      } else {
        field += c;
      }
    } else if (c == '"') {
      quoted = true;
      any = true;
    } else if (c == ',') {
      row.push_back(field);
      field.clear();
      any = true;
    } else if (c == '\n') {
      row.push_back(field);
      rows.push_back(row);
      row.clear();
      field.clear();
      any = false;
    } else {
      field += c;
      any = true;
    }
  }
  if (any) {
    row.push_back(field);
    rows.push_back(row);
  }
  return rows;
}

// Checks that every element the report emits is closed in order (void elements and "/>" aside),
// skipping the raw text of <script> and <style>. Returns "" when balanced, else what went wrong.
std::string CheckTagBalance(const std::string& html) {
  static const std::vector<std::string> kVoid = {"meta", "br", "hr", "img", "input", "link"};
  std::vector<std::string> stack;
  size_t pos = 0;
  while ((pos = html.find('<', pos)) != std::string::npos) {
    if (html.compare(pos, 4, "<!--") == 0) {
      pos = html.find("-->", pos);
      if (pos == std::string::npos) return "unterminated comment";
      continue;
    }
    const size_t end = html.find('>', pos);
    if (end == std::string::npos) return absl::StrCat("unterminated tag at ", pos);
    const std::string tag = html.substr(pos + 1, end - pos - 1);
    pos = end + 1;
    if (tag.empty()) return "empty tag";
    if (tag[0] == '!') continue;  // <!DOCTYPE html>
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) {
        return absl::StrCat("</", name, "> closes <", stack.empty() ? "nothing" : stack.back(),
                            "> at offset ", pos);
      }
      stack.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \t\n/"));
    if (tag.back() == '/' || std::find(kVoid.begin(), kVoid.end(), name) != kVoid.end()) continue;
    if (name == "script" || name == "style") {
      const size_t close = html.find("</" + name + ">", pos);
      if (close == std::string::npos) return absl::StrCat("<", name, "> never closed");
      pos = close + name.size() + 3;
      continue;
    }
    stack.push_back(name);
  }
  if (!stack.empty()) return absl::StrCat("<", stack.back(), "> never closed");
  return "";
}

size_t CountOf(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + 1)) ++n;
  return n;
}

std::string BuildDir() {
  std::string binary = LORASWEEP_BINARY;
  return binary.substr(0, binary.rfind('/'));
}

int RunShell(const std::string& command) {
  const int rc = std::system(command.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

// ---- Tests
// -------------------------------------------------------------------------------------------

TEST(ReportFormatTest, NumbersForPeople) {
  EXPECT_EQ(report_format::Sig(0.000123), "1.23e-4");
  EXPECT_EQ(report_format::Sig(2e-4), "2e-4");
  EXPECT_EQ(report_format::Sig(1.23456), "1.23");
  EXPECT_EQ(report_format::Sig(9.996), "10.0");
  EXPECT_EQ(report_format::Sig(123456), "123000");
  EXPECT_EQ(report_format::Sig(25.0), "25.0");
  EXPECT_EQ(report_format::Duration(42.14), "42.1 s");
  EXPECT_EQ(report_format::Duration(90), "1.50 min");
  EXPECT_EQ(report_format::Duration(5472), "1.52 h");
  EXPECT_EQ(report_format::Bytes(512), "512 B");
  EXPECT_EQ(report_format::Bytes(1.5e9), "1.50 GB");
  EXPECT_EQ(report_format::Bytes(45.6e6), "45.6 MB");
  EXPECT_EQ(report_format::Count(950), "950");
  EXPECT_EQ(report_format::Count(12345), "12.3k");
  EXPECT_EQ(report_format::Count(4.56e6), "4.56M");
}

TEST(ReportDataTest, VllmRankBuckets) {
  EXPECT_EQ(VllmMaxLoraRank(1), 1);
  EXPECT_EQ(VllmMaxLoraRank(2), 8);
  EXPECT_EQ(VllmMaxLoraRank(16), 16);
  EXPECT_EQ(VllmMaxLoraRank(17), 32);
  EXPECT_EQ(VllmMaxLoraRank(300), 320);
  EXPECT_EQ(VllmMaxLoraRank(512), 512);
  EXPECT_EQ(VllmMaxLoraRank(513), std::nullopt);
}

TEST(SvgChartTest, TicksAndEscaping) {
  EXPECT_EQ(svg::NiceTicks(0, 1), (std::vector<double>{0, 0.2, 0.4, 0.6, 0.8, 1.0}));
  const std::vector<double> t = svg::NiceTicks(1.83, 2.41);
  EXPECT_LE(t.front(), 1.83);
  EXPECT_GE(t.back(), 2.41);
  EXPECT_EQ(svg::LogTicks(1e-4, 2e-4), (std::vector<double>{1e-4, 2e-4}));
  EXPECT_EQ(svg::LogTicks(1e-6, 1e-2).size(), 5u);
  EXPECT_EQ(svg::FormatTick(2e-4), "2e-4");
  EXPECT_EQ(svg::FormatTick(20000), "20k");
  EXPECT_EQ(svg::FormatTick(0.0015), "0.0015");
  EXPECT_EQ(ShortestNumberText(2e-4), "2e-4");
  EXPECT_EQ(ShortestNumberText(1.5e20), "1.5e20");
  EXPECT_EQ(ShortestNumberText(16), "16");
  EXPECT_EQ(svg::EscapeXml("a<b & \"c\">"), "a&lt;b &amp; &quot;c&quot;&gt;");
  EXPECT_EQ(svg::ParetoFrontier({1, 2, 3, 4}, {5, 3, 4, 1}), (std::vector<size_t>{0, 1, 3}));
  svg::XYChart empty;
  empty.title = "t";
  EXPECT_TRUE(absl::StrContains(svg::RenderXYChart(empty), "no data yet"));
}

class ReportFixtureTest : public ::testing::Test {
 protected:
  void SetUp() override {
    run_dir_ = MakeTempDir();
    points_ = WriteFixture(run_dir_, FixtureTrials(), kBaseEvalLoss);
  }
  std::string run_dir_;
  size_t points_ = 0;
};

TEST_F(ReportFixtureTest, BestTrialImprovementAndCosts) {
  absl::StatusOr<ReportData> data = LoadReportDataFromRunDir(run_dir_, "eval_loss");
  ASSERT_TRUE(data.ok()) << data.status();
  ASSERT_EQ(data->trials.size(), 6u);
  ASSERT_TRUE(data->best.has_value());
  EXPECT_EQ(data->trials[*data->best].row.id, "aaaa04");
  const double expected_pct = (kBaseEvalLoss - 1.80) / kBaseEvalLoss * 100.0;  // 25%
  ASSERT_TRUE(data->improvement_pct.has_value());
  EXPECT_NEAR(*data->improvement_pct, expected_pct, 1e-9);
  EXPECT_NEAR(*data->base_eval_perplexity, std::exp(kBaseEvalLoss), 1e-9);
  EXPECT_EQ(data->metric_points, points_);
  EXPECT_EQ(data->swept_params,
            (std::vector<std::string>{"lora.rank", "train.learning_rate", "data.shards"}));
  const ReportTrial& best = data->trials[*data->best];
  EXPECT_NEAR(*best.eval_perplexity, std::exp(1.80), 1e-9);
  EXPECT_NEAR(best.device_hours, 4000.0 * 2 / 3600, 1e-12);
  EXPECT_FALSE(best.gpu);
  EXPECT_EQ(best.config.steps, 30);
  EXPECT_EQ(best.params.at("data.shards").text, "all");
  const ReportTrial& stopped = data->trials[4];
  EXPECT_EQ(stopped.params.at("data.shards").text, "install+packages");
  EXPECT_EQ(stopped.vllm_max_lora_rank, 64);
  ASSERT_EQ(stopped.vllm_notes.size(), 1u);
  EXPECT_TRUE(absl::StrContains(stopped.vllm_notes[0], "--max-lora-rank 64"));

  // By train loss the best is still aaaa04 (1.60); by a throughput metric, higher wins.
  absl::StatusOr<ReportData> by_loss = LoadReportDataFromRunDir(run_dir_, "loss");
  ASSERT_TRUE(by_loss.ok());
  EXPECT_EQ(by_loss->trials[*by_loss->best].row.id, "aaaa04");
  EXPECT_FALSE(by_loss->improvement_pct.has_value());  // no base train loss
  absl::StatusOr<ReportData> by_lr = LoadReportDataFromRunDir(run_dir_, "lr");
  ASSERT_TRUE(by_lr.ok());
  EXPECT_TRUE(by_lr->lower_is_better);
}

TEST_F(ReportFixtureTest, CsvFilesReadBackAsTheFixture) {
  ReportOptions options;
  ASSERT_TRUE(WriteSweepReport(run_dir_, options).ok());
  for (const char* f : {"report.html", "report.md", "trials.csv", "metrics.csv"}) {
    EXPECT_TRUE(Exists(run_dir_ + "/" + f)) << f;
  }
  const std::vector<std::vector<std::string>> rows = ParseCsv(Slurp(run_dir_ + "/trials.csv"));
  const std::vector<FixtureTrial> fixture = FixtureTrials();
  ASSERT_EQ(rows.size(), fixture.size() + 1);
  std::map<std::string, size_t> col;
  for (size_t i = 0; i < rows[0].size(); ++i) col[rows[0][i]] = i;
  for (const char* name :
       {"trial_id", "status", "lora.rank", "train.learning_rate", "data.shards", "final_train_loss",
        "final_eval_loss", "best_eval_loss", "eval_perplexity", "wall_s", "tokens_per_s",
        "peak_rss_bytes", "comm_bytes", "device_hours", "trainable_params", "vllm_max_lora_rank",
        "adapter_path", "failure"}) {
    ASSERT_TRUE(col.count(name)) << "trials.csv has no column " << name;
  }
  auto number = [](const std::string& s) { return std::stod(s); };
  for (size_t i = 0; i < fixture.size(); ++i) {
    const std::vector<std::string>& r = rows[i + 1];
    const FixtureTrial& f = fixture[i];
    const TrialRow expected = FixtureRow(f, static_cast<int64_t>(i));
    ASSERT_EQ(r.size(), rows[0].size()) << "row " << i;
    EXPECT_EQ(r[col["trial_id"]], f.id);
    EXPECT_EQ(r[col["status"]], TrialStatusName(f.status));
    EXPECT_EQ(number(r[col["lora.rank"]]), f.rank);
    EXPECT_EQ(number(r[col["train.learning_rate"]]), f.lr);
    EXPECT_EQ(r[col["data.shards"]], f.shards.empty() ? "all" : absl::StrJoin(f.shards, "+"));
    if (f.eval_loss) {
      EXPECT_EQ(number(r[col["final_eval_loss"]]), *f.eval_loss);
      EXPECT_EQ(number(r[col["final_train_loss"]]), *f.train_loss);
      EXPECT_EQ(number(r[col["best_eval_loss"]]), *f.best_eval);
      EXPECT_EQ(number(r[col["eval_perplexity"]]), std::exp(*f.eval_loss));
    } else {
      // The failed trial has no final losses; its last eval point (1.0, the lowest of all) came
      // before it diverged and is not reported as a result.
      EXPECT_EQ(r[col["final_eval_loss"]], "");
      EXPECT_EQ(r[col["eval_perplexity"]], "");
      EXPECT_EQ(r[col["final_train_loss"]], "");
      EXPECT_EQ(r[col["best_eval_loss"]], "");
    }
    EXPECT_EQ(number(r[col["wall_s"]]), f.wall_s);
    EXPECT_EQ(number(r[col["tokens_per_s"]]), expected.tokens_per_s);
    EXPECT_EQ(number(r[col["peak_rss_bytes"]]), static_cast<double>(expected.peak_rss_bytes));
    EXPECT_EQ(number(r[col["comm_bytes"]]), static_cast<double>(expected.comm_bytes));
    EXPECT_EQ(number(r[col["device_hours"]]), f.wall_s * static_cast<double>(f.workers) / 3600.0);
    EXPECT_EQ(number(r[col["trainable_params"]]), static_cast<double>(f.trainable));
    EXPECT_EQ(number(r[col["vllm_max_lora_rank"]]), *VllmMaxLoraRank(f.rank));
    EXPECT_EQ(r[col["adapter_path"]], expected.adapter_path);
    EXPECT_EQ(r[col["failure"]], f.failure);  // holds a comma and quotes: RFC 4180 quoting
  }

  const std::vector<std::vector<std::string>> metrics = ParseCsv(Slurp(run_dir_ + "/metrics.csv"));
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics[0], (std::vector<std::string>{"trial_id", "step", "name", "value"}));
  EXPECT_EQ(metrics.size() - 1, points_);
}

TEST_F(ReportFixtureTest, MarkdownHasSummaryAndEveryTrial) {
  ReportOptions options;
  ASSERT_TRUE(ParseReportFormats("md", &options).ok());
  ASSERT_TRUE(WriteSweepReport(run_dir_, options).ok());
  EXPECT_FALSE(Exists(run_dir_ + "/report.html"));
  const std::string md = Slurp(run_dir_ + "/report.md");
  EXPECT_TRUE(absl::StrContains(md, "| best trial | `aaaa04`")) << md;
  EXPECT_TRUE(absl::StrContains(md, "| improvement over base | 25.0% ")) << md;
  EXPECT_TRUE(absl::StrContains(md, "| base model eval loss (perplexity) | 2.400 (11.0) |")) << md;
  EXPECT_TRUE(absl::StrContains(md, "| **aaaa04** (best) | completed |")) << md;
  for (const char* id : {"aaaa01", "aaaa02", "aaaa03", "aaaa05", "aaaa06"}) {
    EXPECT_TRUE(absl::StrContains(md, absl::StrCat("| ", id, " | "))) << id;
  }
  EXPECT_TRUE(absl::StrContains(md, "| aaaa05 | stopped early |"));
  EXPECT_TRUE(absl::StrContains(md, "| aaaa06 | failed |"));
  EXPECT_TRUE(absl::StrContains(md, "### Best eval loss: rank (rows) x learning rate (columns)"));
  EXPECT_TRUE(absl::StrContains(md, "--max-lora-rank 16"));
}

TEST_F(ReportFixtureTest, HtmlIsWellFormedAndSelfContained) {
  ReportOptions options;
  options.out_dir = run_dir_ + "/elsewhere";
  ASSERT_TRUE(WriteSweepReport(run_dir_, options).ok());
  const std::string html = Slurp(options.out_dir + "/report.html");
  EXPECT_EQ(CheckTagBalance(html), "");
  EXPECT_FALSE(absl::StrContains(html, "http://"));
  EXPECT_FALSE(absl::StrContains(html, "https://"));
  EXPECT_FALSE(absl::StrContains(html, "<link"));
  EXPECT_FALSE(absl::StrContains(html, " src="));
  // Escaped sweep name; summary, charts (2 curves + 3 axes + heat map + 2 Pareto), sortable tables.
  EXPECT_TRUE(absl::StrContains(html, "faq &lt;sweep&gt; &amp; co"));
  EXPECT_FALSE(absl::StrContains(html, "faq <sweep>"));
  EXPECT_EQ(CountOf(html, "<svg "), 8u);
  EXPECT_TRUE(absl::StrContains(html, ">aaaa04</div>"));  // the best-trial card
  EXPECT_TRUE(absl::StrContains(html, "+25.0%"));
  EXPECT_TRUE(absl::StrContains(html, "r=64 lr=2e-4 data=install+packages [stopped]"));
  EXPECT_TRUE(absl::StrContains(html, "r=64 lr=1e-4 data=all [failed]"));
  EXPECT_TRUE(absl::StrContains(html, "r=16 lr=2e-4 data=all [best]"));
  EXPECT_TRUE(absl::StrContains(html, "learning rate"));
  EXPECT_EQ(CountOf(html, "<table class=\"sortable\">"), 2u);
  EXPECT_EQ(CountOf(html, "<tr class=\"best\">"), 1u);
  EXPECT_TRUE(absl::StrContains(html, "CPU-hours"));
  EXPECT_TRUE(absl::StrContains(html, "diverged at step 3, loss &quot;nan&quot;"));
}

TEST_F(ReportFixtureTest, CliWritesTheReport) {
  const std::string out = run_dir_ + "/cli";
  const std::string log = run_dir_ + "/cli.log";
  const int rc = RunShell(absl::StrCat(LORASWEEP_BINARY, " report ", run_dir_,
                                       " --format html,csv --out ", out, " > ", log, " 2>&1"));
  const std::string printed = Slurp(log);
  ASSERT_EQ(rc, 0) << printed;
  EXPECT_TRUE(absl::StrContains(printed, "Best: aaaa04")) << printed;
  EXPECT_TRUE(Exists(out + "/report.html"));
  EXPECT_TRUE(Exists(out + "/trials.csv"));
  EXPECT_FALSE(Exists(out + "/report.md"));
  EXPECT_NE(RunShell(absl::StrCat(LORASWEEP_BINARY, " report ", run_dir_, " --format pdf > ", log,
                                  " 2>&1")),
            0);
  EXPECT_TRUE(absl::StrContains(Slurp(log), "unknown report format 'pdf'"));
}

TEST(ReportStateTest, MissingDatabaseIsAnErrorAndNotCreated) {
  const std::string dir = MakeTempDir();
  absl::Status s = WriteSweepReport(dir, ReportOptions());
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(s.message(), "sweep.db")) << s;
  EXPECT_FALSE(Exists(dir + "/sweep.db"));
}

TEST(ReportStateTest, EmptySweepSaysSo) {
  const std::string dir = MakeTempDir();
  WriteFixture(dir, {}, std::nullopt);
  const std::string log = dir + "/cli.log";
  ASSERT_EQ(RunShell(absl::StrCat(LORASWEEP_BINARY, " report ", dir, " > ", log, " 2>&1")), 0)
      << Slurp(log);
  EXPECT_TRUE(absl::StrContains(Slurp(log), "no trials yet"));
  const std::string html = Slurp(dir + "/report.html");
  EXPECT_EQ(CheckTagBalance(html), "");
  EXPECT_TRUE(absl::StrContains(html, "This sweep has no trials yet"));
  EXPECT_TRUE(absl::StrContains(Slurp(dir + "/report.md"), "This sweep has no trials yet"));
  EXPECT_EQ(ParseCsv(Slurp(dir + "/trials.csv")).size(), 1u);  // the header only
  EXPECT_EQ(ParseCsv(Slurp(dir + "/metrics.csv")).size(), 1u);
}

TEST(ReportStateTest, RunningSweepSaysSo) {
  const std::string dir = MakeTempDir();
  std::vector<FixtureTrial> trials = FixtureTrials();
  trials.resize(3);
  trials[0].status = TrialStatus::kRunning;
  trials[0].eval_loss = trials[0].train_loss = trials[0].best_eval = std::nullopt;
  trials[1].status = TrialStatus::kPending;
  trials[1].eval_loss = trials[1].train_loss = trials[1].best_eval = std::nullopt;
  trials[2].status = TrialStatus::kPending;
  trials[2].eval_loss = trials[2].train_loss = trials[2].best_eval = std::nullopt;
  WriteFixture(dir, trials, kBaseEvalLoss);
  ASSERT_TRUE(WriteSweepReport(dir, ReportOptions()).ok());
  const std::string html = Slurp(dir + "/report.html");
  EXPECT_EQ(CheckTagBalance(html), "");
  EXPECT_TRUE(absl::StrContains(
      html, "Sweep still running: 0 of 3 trials finished (1 running, 2 pending)"));
  EXPECT_TRUE(absl::StrContains(html, "[running]"));  // its curve so far is drawn
  EXPECT_TRUE(absl::StrContains(Slurp(dir + "/report.md"), "Sweep still running"));
}

TEST(ReportStateTest, AllFailedSweepSaysSo) {
  const std::string dir = MakeTempDir();
  std::vector<FixtureTrial> trials = {FixtureTrials()[5], FixtureTrials()[5]};
  trials[1].id = "bbbb02";
  trials[1].failure = "out of memory";
  WriteFixture(dir, trials, kBaseEvalLoss);
  ASSERT_TRUE(WriteSweepReport(dir, ReportOptions()).ok());
  const std::string html = Slurp(dir + "/report.html");
  EXPECT_EQ(CheckTagBalance(html), "");
  EXPECT_TRUE(absl::StrContains(html, "All 2 trials failed: there is no adapter to recommend"));
  const std::string md = Slurp(dir + "/report.md");
  EXPECT_TRUE(absl::StrContains(md, "All 2 trials failed"));
  EXPECT_TRUE(absl::StrContains(md, "| best trial | none |"));
  EXPECT_EQ(ParseCsv(Slurp(dir + "/trials.csv")).size(), 3u);
}

// Renders the fixture report in headless Chromium (cluster/setup.sh installs it), keeps the
// screenshot as build/tests/artifacts/report.png and checks it is not blank and that the page
// logged nothing to the console (the report logs nothing itself, so any console line is an error:
// a script exception, a blocked resource).
TEST_F(ReportFixtureTest, RendersInHeadlessChromium) {
  if (RunShell("command -v chromium > /dev/null 2>&1") != 0) {
    GTEST_SKIP() << "chromium is not installed (cluster/setup.sh installs it)";
  }
  ASSERT_TRUE(WriteSweepReport(run_dir_, ReportOptions()).ok());
  const std::string artifacts = BuildDir() + "/tests/artifacts";
  ASSERT_TRUE(MakeDirectories(artifacts).ok());
  const std::string png = artifacts + "/report.png";
  std::remove(png.c_str());
  const std::string log = run_dir_ + "/chromium.log";
  // --no-sandbox: tests run as root, where Chromium refuses its sandbox. A private profile dir
  // keeps parallel runs apart.
  const std::string command = absl::StrCat(
      "timeout 180 chromium --headless --no-sandbox --disable-gpu --hide-scrollbars "
      "--user-data-dir=",
      run_dir_,
      "/chromium-profile --enable-logging=stderr --v=0 "
      "--screenshot=",
      png, " --window-size=1280,2000 file://", run_dir_, "/report.html > ", log, " 2>&1");
  const int rc = RunShell(command);
  const std::string output = Slurp(log);
  ASSERT_EQ(rc, 0) << command << "\n" << output;
  ASSERT_TRUE(Exists(png)) << output;
  struct stat st;
  ASSERT_EQ(::stat(png.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 50 * 1024) << "a screenshot this small is a blank page";
  for (absl::string_view line : absl::StrSplit(output, '\n')) {
    EXPECT_FALSE(absl::StrContains(line, ":CONSOLE")) << "the page logged: " << line;
    EXPECT_FALSE(absl::StrContains(line, "Uncaught")) << line;
  }
  const std::string checker = absl::StrCat(LORASWEEP_SOURCE_DIR, "/tests/python/png_not_blank.py");
  const std::string check_log = run_dir_ + "/png.log";
  EXPECT_EQ(RunShell(absl::StrCat("python3 ", checker, " ", png,
                                  " --min-colors 16 --min-ink 0.05 > ", check_log, " 2>&1")),
            0)
      << Slurp(check_log);
  std::printf("screenshot: %s (%s)\n", png.c_str(), Slurp(check_log).c_str());
}

}  // namespace
}  // namespace lorasweep

#include "coordinator/early_stopping.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_format.h"

namespace lorasweep {
namespace {

class NoStopping : public EarlyStopper {
 public:
  StopDecision OnReport(const std::string&, int64_t, double) override { return {}; }
};

class Asha : public EarlyStopper {
 public:
  Asha(int64_t grace, int reduction_factor, int64_t max_steps) : rf_(reduction_factor) {
    for (int64_t milestone = grace; milestone < max_steps; milestone *= reduction_factor) {
      milestones_.push_back(milestone);
      if (milestone > max_steps / reduction_factor) break;
    }
    recorded_.resize(milestones_.size());
  }

  StopDecision OnReport(const std::string& trial, int64_t step, double value) override {
    for (int k = static_cast<int>(milestones_.size()) - 1; k >= 0; --k) {
      if (step < milestones_[k] || recorded_[k].count(trial)) continue;
      StopDecision decision;
      std::map<std::string, double>& rung = recorded_[k];
      if (!rung.empty()) {
        std::vector<double> values;
        for (const auto& [id, v] : rung) values.push_back(v);
        const double cutoff = Percentile(values, 100.0 / rf_);
        if (value > cutoff) {
          decision.stop = true;
          decision.rung = k;
          decision.reason = absl::StrFormat(
              "ASHA rung %d (step %d): %.6g is worse than the top-1/%d cutoff %.6g of %d trials", k,
              milestones_[k], value, rf_, cutoff, rung.size());
        }
      }
      rung[trial] = value;
      return decision;
    }
    return {};
  }

 private:
  int rf_;
  std::vector<int64_t> milestones_;
  std::vector<std::map<std::string, double>> recorded_;
};

class MedianRule : public EarlyStopper {
 public:
  MedianRule(int64_t grace, int min_samples) : grace_(grace), min_samples_(min_samples) {}

  StopDecision OnReport(const std::string& trial, int64_t step, double value) override {
    history_[trial].push_back({step, value});
    if (step < grace_) return {};
    double best = INFINITY;
    for (const auto& [s, v] : history_[trial]) best = std::min(best, v);
    std::vector<double> means;
    for (const auto& [other, points] : history_) {
      if (other == trial) continue;
      double sum = 0;
      int n = 0;
      for (const auto& [s, v] : points) {
        if (s > step) break;
        sum += v;
        ++n;
      }
      if (n > 0) means.push_back(sum / n);
    }
    if (static_cast<int>(means.size()) < min_samples_) return {};
    const double median = Percentile(means, 50);
    StopDecision decision;
    if (best > median) {
      decision.stop = true;
      decision.rung = step;
      decision.reason = absl::StrFormat(
          "median rule at step %d: best %.6g is worse than the median %.6g of %d trials' running "
          "means",
          step, best, median, means.size());
    }
    return decision;
  }

 private:
  int64_t grace_;
  int min_samples_;
  std::map<std::string, std::vector<std::pair<int64_t, double>>> history_;
};

}  // namespace

double Percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  const double pos = q / 100.0 * static_cast<double>(values.size() - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  const size_t hi = std::min(lo + 1, values.size() - 1);
  return values[lo] + (pos - static_cast<double>(lo)) * (values[hi] - values[lo]);
}

std::unique_ptr<EarlyStopper> EarlyStopper::Create(const EarlyStoppingConfig& config,
                                                   int64_t max_steps) {
  if (config.method() == "asha") {
    return std::make_unique<Asha>(config.grace_steps(), config.reduction_factor(), max_steps);
  }
  if (config.method() == "median") {
    return std::make_unique<MedianRule>(config.grace_steps(), std::max(1, config.min_samples()));
  }
  return std::make_unique<NoStopping>();
}

}  // namespace lorasweep

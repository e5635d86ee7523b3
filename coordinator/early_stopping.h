// Early stopping of weak trials, decided by the coordinator from the metric points trials report
// (lower is better, e.g. eval_loss):
//   - ASHA (asynchronous successive halving, the stopping variant Ray Tune's AsyncHyperBand uses):
//     rungs at grace_steps * rf^k steps. When a trial first reports at or past a rung it has not
//     recorded yet (the highest such rung), its value is compared with the values other trials
//     recorded there: it stops when it is worse than their 1/rf quantile (numpy's linear
//     percentile at 100/rf), i.e. only about the best 1/rf continue. The first trial at a rung
//     always continues. Its value is then recorded at that rung.
//   - median stopping rule (Google Vizier; Ray's MedianStoppingRule): at a report at step t >=
//     grace_steps, the trial stops when its best value so far is worse than the median, over the
//     other trials with reports up to t (at least min_samples of them), of their running means of
//     the values reported up to t.
// Decisions depend only on the sequence of reports, so replaying a sweep's stored reports after a
// resume rebuilds the same state.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "proto/sweep_spec.pb.h"

namespace lorasweep {

struct StopDecision {
  bool stop = false;
  int64_t rung = -1;  // ASHA rung index or the step (median) at which it was decided
  std::string reason;
};

class EarlyStopper {
 public:
  virtual ~EarlyStopper() = default;
  // Creates the stopper of `config` (method none: never stops). `max_steps` bounds the rungs.
  static std::unique_ptr<EarlyStopper> Create(const EarlyStoppingConfig& config,
                                              int64_t max_steps);
  // One report of `trial` at `step` with `value`.
  virtual StopDecision OnReport(const std::string& trial, int64_t step, double value) = 0;
};

// numpy.percentile(values, q) with linear interpolation (q in [0, 100]); values non-empty.
double Percentile(std::vector<double> values, double q);

}  // namespace lorasweep

// `lorasweep sweep SPEC --out RUN_DIR [--resume]`: runs every trial of a sweep once, records every
// metric in RUN_DIR/sweep.db, stops weak trials early and survives crashes.
//
// Process layout. Alone, the process runs the trials itself, one after another. Under mpirun/srun
// with N ranks, rank 0 is the coordinator and ranks 1..N-1 form slots of workers_per_trial
// consecutive ranks (consecutive ranks share a node under the default mapping); each slot trains
// one trial at a time with the data-parallel trainer over its own sub-communicator. Ranks that do
// not fill a slot stay idle (logged).
//
// Protocol (proto/sweep_protocol.proto; rank 0 <-> the first rank, "leader", of each slot):
//   1. rank 0 expands the spec, opens the store and sends AssignTrial to every free slot;
//   2. the leader broadcasts the assignment to its slot; all its ranks run the trainer;
//   3. for every metrics line, the leader sends TrialMetrics; rank 0 stores it and feeds the early
//      stopper; when the stopper says stop, rank 0 sends StopTrial;
//   4. the leader checks for StopTrial between steps; the slot stops at the same step, saves a
//      checkpoint and the adapter;
//   5. the leader sends TrialDone (ok / stopped early / failed with the reason); the slot is free
//      again and rank 0 goes back to 1 while trials are pending;
//   6. when nothing is pending or running, rank 0 sends Shutdown to every slot and all ranks exit.
// A failed trial is retried (from scratch) up to max_failures_per_trial times.
//
// Crashes: every state change is committed to SQLite before it is acted upon. If any process dies
// the MPI job ends; running the same command with --resume marks trials found "running" as pending
// again (they continue from their last checkpoint, bit for bit), keeps completed ones, and rebuilds
// the early stopper from the stored metric points.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "comm/communicator.h"

namespace lorasweep {

struct SweepOptions {
  std::string spec_path;
  std::string run_dir;
  bool resume = false;
  Communicator* world = nullptr;  // null: this process alone
  // >= 0: run only the trial with this ordinal, alone (one Slurm array task per trial, many
  // processes sharing RUN_DIR/sweep.db). Other trials' rows are left as they are; the task that
  // finishes the last trained trial writes the report.
  int64_t trial_index = -1;
};

absl::Status RunSweep(const SweepOptions& options);

}  // namespace lorasweep

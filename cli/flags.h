// The absl flags of the `lorasweep` subcommands. One definition per name: a flag means the same thing
// in every subcommand that accepts it (cli/command.h lists which accept which).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/flags/declare.h"

ABSL_DECLARE_FLAG(std::string, model);
ABSL_DECLARE_FLAG(std::string, out);
ABSL_DECLARE_FLAG(bool, json);
ABSL_DECLARE_FLAG(std::string, quant);
ABSL_DECLARE_FLAG(int64_t, blocksize);
ABSL_DECLARE_FLAG(bool, double_quant);
ABSL_DECLARE_FLAG(std::string, dtype);
ABSL_DECLARE_FLAG(int32_t, threads);
ABSL_DECLARE_FLAG(std::string, max_shard_size);
ABSL_DECLARE_FLAG(std::string, config);
ABSL_DECLARE_FLAG(bool, resume);
ABSL_DECLARE_FLAG(int64_t, stop_after);
ABSL_DECLARE_FLAG(std::string, adapter);
ABSL_DECLARE_FLAG(std::string, data);
ABSL_DECLARE_FLAG(int64_t, micro_batch);
ABSL_DECLARE_FLAG(int64_t, max_batches);
ABSL_DECLARE_FLAG(std::string, prompt);
ABSL_DECLARE_FLAG(std::string, system);
ABSL_DECLARE_FLAG(int64_t, max_new_tokens);
ABSL_DECLARE_FLAG(double, temperature);
ABSL_DECLARE_FLAG(double, top_p);

// prepare-data (and chat_template also for generate).
ABSL_DECLARE_FLAG(std::string, tokenizer);
ABSL_DECLARE_FLAG(std::string, input);
ABSL_DECLARE_FLAG(std::string, format);
ABSL_DECLARE_FLAG(int64_t, seq_len);
ABSL_DECLARE_FLAG(double, eval_fraction);
ABSL_DECLARE_FLAG(std::string, shard_by);
ABSL_DECLARE_FLAG(int64_t, shards);
ABSL_DECLARE_FLAG(uint64_t, seed);
ABSL_DECLARE_FLAG(std::string, packing);
ABSL_DECLARE_FLAG(std::string, chat_template);
ABSL_DECLARE_FLAG(bool, skip_bad_lines);
ABSL_DECLARE_FLAG(double, comm_timeout);

// merge / soup / export (worker/adapters/).
ABSL_DECLARE_FLAG(std::string, merge_into);
ABSL_DECLARE_FLAG(std::vector<std::string>, adapters);
ABSL_DECLARE_FLAG(std::string, method);
ABSL_DECLARE_FLAG(int32_t, rank);
ABSL_DECLARE_FLAG(std::string, for);

// report (coordinator/report_writer.h); `format` above also selects the report's files.
ABSL_DECLARE_FLAG(std::string, metric);

// slurm (coordinator/slurm_script.h).
ABSL_DECLARE_FLAG(int32_t, nodes);
ABSL_DECLARE_FLAG(int32_t, gpus_per_node);
ABSL_DECLARE_FLAG(int32_t, tasks_per_node);
ABSL_DECLARE_FLAG(bool, overcommit);
ABSL_DECLARE_FLAG(std::string, partition);
ABSL_DECLARE_FLAG(std::string, time);
ABSL_DECLARE_FLAG(std::string, account);
ABSL_DECLARE_FLAG(bool, submit);

// sweep as a Slurm job array.
ABSL_DECLARE_FLAG(int64_t, trial_index);

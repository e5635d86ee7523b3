#include "cli/flags.h"

#include "absl/flags/flag.h"

ABSL_FLAG(std::string, model, "", "Model: a Hugging Face folder, a .gguf file or a .safetensors file");
ABSL_FLAG(std::string, out, "", "Output folder");
ABSL_FLAG(bool, json, false, "Print one JSON object (as the last line of stdout)");
ABSL_FLAG(std::string, quant, "",
          "Base quantization: nf4 or fp4 (quantize: default nf4); eval and generate also take none "
          "(default: what the adapter was trained with, else none)");
ABSL_FLAG(int64_t, blocksize, 64, "Quantization block size (a power of two in 32..4096)");
ABSL_FLAG(bool, double_quant, true, "Quantize the per-block absmax values again (QLoRA double quant)");
ABSL_FLAG(std::string, dtype, "auto",
          "dtype of the tensors left unquantized: auto (as stored; f32 for GGUF block types), f32, "
          "bf16 or f16");
ABSL_FLAG(int32_t, threads, 0, "CPU threads (0: LORASWEEP_NUM_THREADS or all cores)");
ABSL_FLAG(std::string, max_shard_size, "5GB",
          "Largest safetensors shard to write, as transformers spells it (e.g. 5GB, 500MB, 20KB)");
// train / eval / generate
ABSL_FLAG(std::string, config, "", "Trial config (YAML)");
ABSL_FLAG(bool, resume, false, "Continue from OUT/checkpoint (same config); bit-for-bit the same run");
ABSL_FLAG(int64_t, stop_after, 0,
          "Stop after this many optimizer steps of this run, with a checkpoint (as a preempted job)");
ABSL_FLAG(std::string, adapter, "", "A PEFT LoRA adapter folder (as `lorasweep train` writes)");
ABSL_FLAG(std::string, data, "", "A dataset folder written by `lorasweep prepare-data`");
ABSL_FLAG(int64_t, micro_batch, 4, "Sequences per forward pass");
ABSL_FLAG(int64_t, max_batches, 0, "Evaluate at most this many micro-batches (0: the whole split)");
ABSL_FLAG(std::string, prompt, "", "The user message to answer");
ABSL_FLAG(std::string, system, "", "An optional system message");
ABSL_FLAG(int64_t, max_new_tokens, 128, "Most tokens to generate");
ABSL_FLAG(double, temperature, 0.0, "Sampling temperature (0: greedy)");
ABSL_FLAG(double, top_p, 1.0, "Nucleus sampling: keep the smallest set of tokens with this mass");

// prepare-data (and chat_template also for generate).
ABSL_FLAG(std::string, tokenizer, "",
          "Tokenizer: a model folder, a .gguf file or a tokenizer.json");
ABSL_FLAG(std::string, input, "", "Input JSONL file(s), comma-separated");
ABSL_FLAG(std::string, format, "auto",
          "prepare-data: input records: auto (per file, from its first record), text, alpaca or "
          "chat; report: files to write, a comma list of html, md, csv (auto: all)");
ABSL_FLAG(int64_t, seq_len, 0, "Tokens per training sequence");
ABSL_FLAG(double, eval_fraction, 0.1,
          "Fraction of the documents held out as the eval split (0 <= f < 1)");
ABSL_FLAG(std::string, shard_by, "", "Make one shard per value of this record field");
ABSL_FLAG(int64_t, shards, 0, "Split the training documents into K round-robin shards part-0..");
ABSL_FLAG(uint64_t, seed, 0, "Seed of the eval split");
ABSL_FLAG(std::string, packing, "pack",
          "pack: concatenate documents into full sequences (split across them); pad: one "
          "document per sequence, truncated and padded");
ABSL_FLAG(std::string, chat_template, "",
          "Chat template: chatml, llama3, llama2 or alpaca (default: the model's own; generate "
          "also takes none)");
ABSL_FLAG(bool, skip_bad_lines, false, "Skip (and count) bad input lines instead of failing");
ABSL_FLAG(double, comm_timeout, 300,
          "Seconds a collective may take before the job fails (a peer rank died or hangs)");

// merge / soup / export (worker/adapters/).
ABSL_FLAG(std::string, merge_into, "trained",
          "merge: trained (the base as the adapter saw it in training: quantized and dequantized "
          "as its lorasweep_training.json records) or original (the stored weights)");
ABSL_FLAG(std::vector<std::string>, adapters, {},
          "soup: comma-separated PATH:WEIGHT adapter folders (weight 1 when omitted)");
ABSL_FLAG(std::string, method, "cat",
          "soup: cat (exact weighted sum, rank = sum of ranks), linear (PEFT's sqrt(w*s) on A and "
          "B, equal ranks) or svd (exact sum truncated to --rank)");
ABSL_FLAG(int32_t, rank, 0, "soup --method svd: rank of the result (0: the largest input rank)");
ABSL_FLAG(std::string, for, "vllm", "export: the serving target to check for: vllm or peft");

// report (coordinator/report_writer.h).
ABSL_FLAG(std::string, metric, "eval_loss",
          "report: the metric that picks the best trial (its final value; losses: lower is better)");

// slurm (coordinator/slurm_script.h).
ABSL_FLAG(int32_t, nodes, 1, "slurm: nodes to allocate");
ABSL_FLAG(int32_t, gpus_per_node, 0,
          "slurm: GPUs per node, one worker task each, plus the coordinator (0: CPU only)");
ABSL_FLAG(int32_t, tasks_per_node, 0,
          "slurm --gpus-per-node 0: tasks per node, coordinator included (0: this machine's cores)");
ABSL_FLAG(bool, overcommit, false,
          "slurm: allow more tasks than CPUs (sbatch/srun -O; without it such a step never starts)");
ABSL_FLAG(std::string, partition, "", "slurm: partition (empty: the cluster's default)");
ABSL_FLAG(std::string, time, "", "slurm: time limit, e.g. 4:00:00 (empty: the partition's)");
ABSL_FLAG(std::string, account, "", "slurm: account to charge (empty: the user's default)");
ABSL_FLAG(bool, submit, false, "slurm: submit the script with sbatch and print the job id");

// sweep as a Slurm job array (cluster/slurm/array.sbatch).
ABSL_FLAG(int64_t, trial_index, -1,
          "sweep: run only the trial with this ordinal (0-based, the spec's expansion order), "
          "alone; many such processes may share one RUN_DIR (one per Slurm array task)");

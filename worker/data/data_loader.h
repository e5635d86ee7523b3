// The trainer's view of a prepared dataset: batches of sequences from a selection of named shards,
// in an order fixed by (seed, epoch), split between data-parallel ranks, with a cursor that a
// checkpoint saves so that a resumed run sees exactly the batches an uninterrupted one would.
//
// Order. The selected shards' sequences are numbered 0..S-1 (shards in the order given, or the
// manifest's order for "every shard"; sequences in file order). Epoch e visits them in the order
// of a permutation made by Fisher-Yates written out here (std::shuffle's algorithm is
// implementation-defined, and the order must not depend on the standard library):
//   perm = 0..S-1; rng = std::mt19937_64(seed ^ (e * 0x9E3779B97F4A7C15))  (u64 arithmetic)
//   for i = S-1 down to 1: j = rng() % (i + 1); swap(perm[i], perm[j])
// Global batch b of the epoch is perm[b*G .. b*G+G-1] (G = global_batch); an epoch has
// steps_per_epoch = S / G batches and the remainder of S is dropped (a different part each epoch,
// as the permutation changes). Rank r of w gets the batch's entries j (0-based within the batch)
// with j % w == r, in that order.
//
// Eval. OpenEval() reads the eval split (eval.tok) in file order, unshuffled; rank r of w gets the
// sequences i with i % w == r (EvalSequences).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"

namespace lorasweep {

// Where the loader is: the next batch is batch `step` of epoch `epoch`.
struct DataCursor {
  int64_t epoch = 0;
  int64_t step = 0;

  // {"epoch": E, "step": S}
  std::string ToJson() const;
  static absl::StatusOr<DataCursor> FromJson(std::string_view json);
  bool operator==(const DataCursor&) const = default;
};

class DataLoader {
 public:
  // `shard_names`: empty = every training shard; "all" means the shard named "all" when there is
  // one, else every shard. Errors name unknown shards (and list the known ones), a global batch
  // larger than the selection, and shard files that do not match the manifest.
  static absl::StatusOr<DataLoader> Open(const std::string& dataset_dir,
                                         const std::vector<std::string>& shard_names,
                                         int64_t global_batch, int rank, int world, uint64_t seed);
  // The eval split of `dataset_dir`, unshuffled; NextBatch gives one sequence per rank per step.
  // A dataset without an eval split gives a loader with no sequences.
  static absl::StatusOr<DataLoader> OpenEval(const std::string& dataset_dir, int rank, int world);

  int64_t seq_len() const { return seq_len_; }
  int64_t sequences_per_epoch() const { return total_sequences_; }
  int64_t steps_per_epoch() const { return total_sequences_ / global_batch_; }
  int64_t global_batch() const { return global_batch_; }
  const DatasetManifest& manifest() const { return manifest_; }

  // This rank's sequences of the batch at the cursor (num_sequences * seq_len ids and flags,
  // row-major), then advances the cursor (to the next epoch after its last batch).
  void NextBatch(std::vector<int32_t>* ids, std::vector<uint8_t>* flags, int64_t* num_sequences);

  // All of this rank's eval sequences (OpenEval loaders; for others, this rank's slice of all
  // selected sequences in file order).
  void EvalSequences(std::vector<int32_t>* ids, std::vector<uint8_t>* flags,
                     int64_t* num_sequences) const;

  DataCursor cursor() const { return cursor_; }
  void set_cursor(DataCursor cursor) { cursor_ = cursor; }

  // The global sequence numbers of epoch `epoch` in visiting order (exposed for tests and tools).
  std::vector<int64_t> EpochOrder(int64_t epoch) const;

 private:
  DataLoader() = default;
  void ReadGlobalSequence(int64_t index, int32_t* ids, uint8_t* flags) const;

  DatasetManifest manifest_;
  std::vector<TokenShard> shards_;
  std::vector<int64_t> shard_start_;  // first global sequence number of each shard
  int64_t total_sequences_ = 0;
  int64_t seq_len_ = 0;
  int64_t global_batch_ = 1;
  int rank_ = 0;
  int world_ = 1;
  uint64_t seed_ = 0;
  bool eval_ = false;
  DataCursor cursor_;
  // The permutation of the epoch last used, kept to avoid recomputing it every batch.
  int64_t cached_epoch_ = -1;
  std::vector<int64_t> cached_order_;
};

}  // namespace lorasweep

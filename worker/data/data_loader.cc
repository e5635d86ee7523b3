#include "worker/data/data_loader.h"

#include <algorithm>
#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lorasweep {
namespace {

absl::Status CheckRank(int rank, int world) {
  if (world < 1 || rank < 0 || rank >= world) {
    return absl::InvalidArgumentError(
        absl::StrCat("data loader: rank ", rank, " of world ", world, " is out of range"));
  }
  return absl::OkStatus();
}

// Opens a shard and checks it against its manifest entry.
absl::StatusOr<TokenShard> OpenShard(const DatasetManifest& m, const DatasetShardInfo& info) {
  ASSIGN_OR_RETURN(TokenShard shard, TokenShard::Open(absl::StrCat(m.dir, "/", info.file)));
  if (shard.seq_len() != m.seq_len || shard.num_sequences() != info.sequences) {
    return absl::DataLossError(absl::StrCat(
        shard.path(), ": holds ", shard.num_sequences(), " sequences of ", shard.seq_len(),
        " tokens but the manifest says ", info.sequences, " of ", m.seq_len));
  }
  return shard;
}

}  // namespace

std::string DataCursor::ToJson() const {
  return nlohmann::json{{"epoch", epoch}, {"step", step}}.dump();
}

absl::StatusOr<DataCursor> DataCursor::FromJson(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || !j.contains("epoch") || !j.contains("step") ||
      !j["epoch"].is_number_integer() || !j["step"].is_number_integer()) {
    return absl::InvalidArgumentError(
        absl::StrCat("data cursor: expected {\"epoch\": N, \"step\": N}, got ", std::string(text)));
  }
  DataCursor c{j["epoch"].get<int64_t>(), j["step"].get<int64_t>()};
  if (c.epoch < 0 || c.step < 0) return absl::InvalidArgumentError("data cursor: negative value");
  return c;
}

absl::StatusOr<DataLoader> DataLoader::Open(const std::string& dataset_dir,
                                            const std::vector<std::string>& shard_names,
                                            int64_t global_batch, int rank, int world,
                                            uint64_t seed) {
  RETURN_IF_ERROR(CheckRank(rank, world));
  if (global_batch < 1) {
    return absl::InvalidArgumentError(absl::StrCat("data loader: global batch ", global_batch));
  }
  ASSIGN_OR_RETURN(DatasetManifest m, LoadDatasetManifest(dataset_dir));
  std::vector<const DatasetShardInfo*> selected;
  const bool every = shard_names.empty() ||
                     (shard_names.size() == 1 && shard_names[0] == "all" && !m.FindShard("all"));
  if (every) {
    for (const DatasetShardInfo& s : m.shards) selected.push_back(&s);
  } else {
    for (const std::string& name : shard_names) {
      const DatasetShardInfo* s = m.FindShard(name);
      if (s == nullptr) {
        std::vector<std::string> known;
        for (const DatasetShardInfo& k : m.shards) known.push_back(k.name);
        return absl::NotFoundError(absl::StrCat(dataset_dir, ": no shard named \"", name,
                                                "\"; its shards: ", absl::StrJoin(known, ", ")));
      }
      if (std::find(selected.begin(), selected.end(), s) != selected.end()) {
        return absl::InvalidArgumentError(
            absl::StrCat(dataset_dir, ": shard \"", name, "\" selected twice"));
      }
      selected.push_back(s);
    }
  }
  DataLoader loader;
  for (const DatasetShardInfo* info : selected) {
    ASSIGN_OR_RETURN(TokenShard shard, OpenShard(m, *info));
    loader.shard_start_.push_back(loader.total_sequences_);
    loader.total_sequences_ += shard.num_sequences();
    loader.shards_.push_back(std::move(shard));
  }
  if (loader.total_sequences_ < global_batch) {
    return absl::InvalidArgumentError(
        absl::StrCat(dataset_dir, ": the selected shards hold ", loader.total_sequences_,
                     " sequences, fewer than one global batch of ", global_batch));
  }
  loader.manifest_ = std::move(m);
  loader.seq_len_ = loader.manifest_.seq_len;
  loader.global_batch_ = global_batch;
  loader.rank_ = rank;
  loader.world_ = world;
  loader.seed_ = seed;
  return loader;
}

absl::StatusOr<DataLoader> DataLoader::OpenEval(const std::string& dataset_dir, int rank,
                                                int world) {
  RETURN_IF_ERROR(CheckRank(rank, world));
  ASSIGN_OR_RETURN(DatasetManifest m, LoadDatasetManifest(dataset_dir));
  DataLoader loader;
  loader.eval_ = true;
  loader.global_batch_ = world;
  loader.rank_ = rank;
  loader.world_ = world;
  if (m.eval.sequences > 0) {
    ASSIGN_OR_RETURN(TokenShard shard, OpenShard(m, m.eval));
    loader.shard_start_.push_back(0);
    loader.total_sequences_ = shard.num_sequences();
    loader.shards_.push_back(std::move(shard));
  }
  loader.manifest_ = std::move(m);
  loader.seq_len_ = loader.manifest_.seq_len;
  return loader;
}

std::vector<int64_t> DataLoader::EpochOrder(int64_t epoch) const {
  std::vector<int64_t> order(total_sequences_);
  for (int64_t i = 0; i < total_sequences_; ++i) order[i] = i;
  if (eval_) return order;
  std::mt19937_64 rng(seed_ ^ (static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ull));
  for (int64_t i = total_sequences_ - 1; i > 0; --i) {
    const int64_t j = static_cast<int64_t>(rng() % static_cast<uint64_t>(i + 1));
    std::swap(order[i], order[j]);
  }
  return order;
}

void DataLoader::ReadGlobalSequence(int64_t index, int32_t* ids, uint8_t* flags) const {
  const size_t s =
      std::upper_bound(shard_start_.begin(), shard_start_.end(), index) - shard_start_.begin() - 1;
  shards_[s].ReadSequence(index - shard_start_[s], ids, flags);
}

void DataLoader::NextBatch(std::vector<int32_t>* ids, std::vector<uint8_t>* flags,
                           int64_t* num_sequences) {
  ids->clear();
  flags->clear();
  *num_sequences = 0;
  const int64_t steps = steps_per_epoch();
  if (steps == 0) return;
  // A cursor restored past an epoch's end (e.g. from a larger batch size) continues with the next.
  if (cursor_.step >= steps) cursor_ = {cursor_.epoch + 1, 0};
  if (cached_epoch_ != cursor_.epoch) {
    cached_order_ = EpochOrder(cursor_.epoch);
    cached_epoch_ = cursor_.epoch;
  }
  const int64_t first = cursor_.step * global_batch_;
  for (int64_t j = rank_; j < global_batch_; j += world_) {
    const size_t at = ids->size();
    ids->resize(at + seq_len_);
    flags->resize(at + seq_len_);
    ReadGlobalSequence(cached_order_[first + j], ids->data() + at, flags->data() + at);
    ++*num_sequences;
  }
  cursor_.step += 1;
  if (cursor_.step == steps) cursor_ = {cursor_.epoch + 1, 0};
}

void DataLoader::EvalSequences(std::vector<int32_t>* ids, std::vector<uint8_t>* flags,
                               int64_t* num_sequences) const {
  ids->clear();
  flags->clear();
  *num_sequences = 0;
  for (int64_t i = rank_; i < total_sequences_; i += world_) {
    const size_t at = ids->size();
    ids->resize(at + seq_len_);
    flags->resize(at + seq_len_);
    ReadGlobalSequence(i, ids->data() + at, flags->data() + at);
    ++*num_sequences;
  }
}

}  // namespace lorasweep

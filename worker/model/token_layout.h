// What the model needs per token of a micro-batch, derived from the ids and the per-token flags of
// the dataset shards (worker/data/token_shard.h): RoPE positions that restart at every document,
// document starts (attention never crosses one), and the next-token targets that count in the loss.
#pragma once

#include <cstdint>
#include <vector>

namespace lorasweep {

// B sequences of T tokens each, row-major [B, T].
struct MicroBatch {
  int64_t batch = 0;
  int64_t seq_len = 0;
  const int32_t* ids = nullptr;
  const uint8_t* flags = nullptr;  // token_shard.h flag bits; nullptr = one document, all counted
};

struct TokenLayout {
  std::vector<int32_t> positions;  // [B*T] position within its document
  std::vector<uint8_t> doc_start;  // [B*T] 1 where a document (or a sequence) starts
  std::vector<int32_t> targets;    // [B*T] the id to predict at t (= ids[t+1]) or -100 (ignored)
  int64_t num_targets = 0;
  int32_t max_position = 0;
};

// Position t predicts ids[t + 1] when token t + 1 of the same sequence has the loss bit, is not a
// document start and is not padding. Every sequence's first token starts a document.
TokenLayout MakeTokenLayout(const MicroBatch& batch);

}  // namespace lorasweep

// Token shards: the binary files (NAME.tok) prepare-data writes and the trainer reads, holding
// fixed-length sequences of token ids with one flags byte per token.
//
// Layout (all integers little-endian):
//   offset  size  field
//        0     8  magic "LSWPTOK1"
//        8     4  u32 version = 1
//       12     4  u32 dtype: 1 = u16 ids (vocabularies of at most 65535 ids), 2 = u32 ids
//       16     4  u32 seq_len (T)
//       20     4  u32 reserved = 0
//       24     8  u64 num_sequences (N)
//       32     8  u64 num_documents (documents that start in this file)
//       40     8  u64 num_loss_tokens (tokens with the loss bit)
//       48    16  u64 reserved = 0, u64 reserved = 0
//       64        N*T ids (u16 or u32), sequence after sequence
//                 N*T flag bytes, sequence after sequence
// The file size must be exactly 64 + N*T*(2 or 4) + N*T.
//
// Flags of token t of a sequence:
//   bit0 kTokenLoss     token t is a training target: the model at position t-1 is trained to
//                       predict it. prepare-data never sets it on a token that starts a document
//                       or a sequence (there is no earlier position of the same document to
//                       predict it from), so num_loss_tokens is the number of targets.
//   bit1 kTokenDocStart token t is the first token of a document. Attention never crosses it: a
//                       token attends only to tokens of its own document, from this bit back; the
//                       trainer derives per-sequence document ids (and RoPE positions restarting
//                       at 0) from it. Position 0 of every sequence starts a document (or the part
//                       of one that continues from the previous sequence, when a packed document
//                       is split) whether or not the bit is set: the bit is set only where a
//                       document really starts, so counting it counts documents.
//   bit2 kTokenPad      padding after the last document (id = EOS, or 0 without EOS); never a
//                       target, never attended by real tokens.
// So the label of position t-1 is id[t] when flags[t] has kTokenLoss and neither kTokenDocStart nor
// kTokenPad (worker/model/token_layout.h implements exactly this rule, which tolerates loss bits on
// document starts written by other tools).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lorasweep {

class MappedFile;

inline constexpr uint8_t kTokenLoss = 1;
inline constexpr uint8_t kTokenDocStart = 2;
inline constexpr uint8_t kTokenPad = 4;

inline constexpr char kTokenShardMagic[8] = {'L', 'S', 'W', 'P', 'T', 'O', 'K', '1'};
inline constexpr uint32_t kTokenShardVersion = 1;
inline constexpr size_t kTokenShardHeaderBytes = 64;

enum TokenShardDtype : uint32_t { kTokenIdsU16 = 1, kTokenIdsU32 = 2 };

// The dtype that holds every id below `vocab_size`.
TokenShardDtype TokenShardDtypeFor(int64_t vocab_size);

// Counts kept in the header, recomputed by the writer from what it writes.
struct TokenShardCounts {
  int64_t sequences = 0;
  int64_t documents = 0;  // kTokenDocStart flags
  int64_t tokens = 0;     // non-padding tokens
  int64_t loss_tokens = 0;
};

// Writes sequences of `seq_len` tokens to `path` atomically (nothing at `path` until Finish()).
// Sequences are buffered in memory: shards of the datasets lorasweep targets are megabytes.
class TokenShardWriter {
 public:
  TokenShardWriter(std::string path, int64_t seq_len, TokenShardDtype dtype);
  // `ids` and `flags` hold seq_len entries each.
  void AddSequence(const int32_t* ids, const uint8_t* flags);
  const TokenShardCounts& counts() const { return counts_; }
  absl::Status Finish();

 private:
  std::string path_;
  int64_t seq_len_;
  TokenShardDtype dtype_;
  std::vector<uint8_t> ids_;  // little-endian, in the file's dtype
  std::vector<uint8_t> flags_;
  TokenShardCounts counts_;
};

// A shard opened read-only through a memory map; copies are cheap and share the map. Open() checks
// the magic, version, dtype and that the file size matches the header; errors name the file.
class TokenShard {
 public:
  static absl::StatusOr<TokenShard> Open(const std::string& path);

  int64_t num_sequences() const { return num_sequences_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t num_documents() const { return num_documents_; }
  int64_t num_loss_tokens() const { return num_loss_tokens_; }
  TokenShardDtype dtype() const { return dtype_; }
  const std::string& path() const;

  // Copies sequence i (0 <= i < num_sequences) into seq_len ids and seq_len flags.
  void ReadSequence(int64_t i, int32_t* ids, uint8_t* flags) const;

 private:
  TokenShard() = default;
  std::shared_ptr<MappedFile> file_;
  int64_t num_sequences_ = 0;
  int64_t seq_len_ = 0;
  int64_t num_documents_ = 0;
  int64_t num_loss_tokens_ = 0;
  TokenShardDtype dtype_ = kTokenIdsU16;
  const uint8_t* ids_ = nullptr;
  const uint8_t* flags_ = nullptr;
};

}  // namespace lorasweep

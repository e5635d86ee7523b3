#include "worker/data/token_shard.h"

#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint32_t Get32(const uint8_t* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint64_t Get64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

absl::Status Corrupt(const std::string& path, const std::string& problem) {
  return absl::DataLossError(absl::StrCat(path, ": not a valid lorasweep token shard: ", problem));
}

}  // namespace

TokenShardDtype TokenShardDtypeFor(int64_t vocab_size) {
  return vocab_size <= 65535 ? kTokenIdsU16 : kTokenIdsU32;
}

TokenShardWriter::TokenShardWriter(std::string path, int64_t seq_len, TokenShardDtype dtype)
    : path_(std::move(path)), seq_len_(seq_len), dtype_(dtype) {}

void TokenShardWriter::AddSequence(const int32_t* ids, const uint8_t* flags) {
  const size_t width = dtype_ == kTokenIdsU16 ? 2 : 4;
  const size_t base = ids_.size();
  ids_.resize(base + width * seq_len_);
  for (int64_t t = 0; t < seq_len_; ++t) {
    const uint32_t id = static_cast<uint32_t>(ids[t]);
    for (size_t b = 0; b < width; ++b)
      ids_[base + width * t + b] = static_cast<uint8_t>(id >> (8 * b));
  }
  flags_.insert(flags_.end(), flags, flags + seq_len_);
  ++counts_.sequences;
  for (int64_t t = 0; t < seq_len_; ++t) {
    counts_.documents += (flags[t] & kTokenDocStart) != 0;
    counts_.loss_tokens += (flags[t] & kTokenLoss) != 0;
    counts_.tokens += (flags[t] & kTokenPad) == 0;
  }
}

absl::Status TokenShardWriter::Finish() {
  uint8_t header[kTokenShardHeaderBytes] = {};
  std::memcpy(header, kTokenShardMagic, 8);
  Put32(header + 8, kTokenShardVersion);
  Put32(header + 12, dtype_);
  Put32(header + 16, static_cast<uint32_t>(seq_len_));
  Put64(header + 24, static_cast<uint64_t>(counts_.sequences));
  Put64(header + 32, static_cast<uint64_t>(counts_.documents));
  Put64(header + 40, static_cast<uint64_t>(counts_.loss_tokens));
  ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer, AtomicFileWriter::Create(path_));
  RETURN_IF_ERROR(writer->Append(std::span<const uint8_t>(header, sizeof(header))));
  RETURN_IF_ERROR(writer->Append(ids_));
  RETURN_IF_ERROR(writer->Append(flags_));
  return writer->Commit();
}

absl::StatusOr<TokenShard> TokenShard::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  const std::span<const uint8_t> bytes = file->bytes();
  if (bytes.size() < kTokenShardHeaderBytes) {
    return Corrupt(path, absl::StrCat(bytes.size(), " bytes, shorter than the 64-byte header"));
  }
  const uint8_t* h = bytes.data();
  if (std::memcmp(h, kTokenShardMagic, 8) != 0) return Corrupt(path, "bad magic");
  const uint32_t version = Get32(h + 8);
  if (version != kTokenShardVersion) {
    return Corrupt(path, absl::StrCat("version ", version, " (this build reads version 1)"));
  }
  const uint32_t dtype = Get32(h + 12);
  if (dtype != kTokenIdsU16 && dtype != kTokenIdsU32) {
    return Corrupt(path, absl::StrCat("unknown id dtype ", dtype));
  }
  const uint64_t seq_len = Get32(h + 16);
  const uint64_t num_sequences = Get64(h + 24);
  if (seq_len == 0) return Corrupt(path, "seq_len 0");
  const uint64_t width = dtype == kTokenIdsU16 ? 2 : 4;
  // Guard the size arithmetic against a hostile header before multiplying.
  const uint64_t max_tokens = (bytes.size() - kTokenShardHeaderBytes) / (width + 1);
  if (num_sequences > max_tokens / seq_len ||
      kTokenShardHeaderBytes + num_sequences * seq_len * (width + 1) != bytes.size()) {
    return Corrupt(
        path, absl::StrCat("header says ", num_sequences, " sequences of ", seq_len, " tokens (",
                           width, "-byte ids) but the file has ", bytes.size(), " bytes"));
  }
  TokenShard shard;
  shard.num_sequences_ = static_cast<int64_t>(num_sequences);
  shard.seq_len_ = static_cast<int64_t>(seq_len);
  shard.num_documents_ = static_cast<int64_t>(Get64(h + 32));
  shard.num_loss_tokens_ = static_cast<int64_t>(Get64(h + 40));
  shard.dtype_ = static_cast<TokenShardDtype>(dtype);
  shard.ids_ = h + kTokenShardHeaderBytes;
  shard.flags_ = shard.ids_ + num_sequences * seq_len * width;
  shard.file_ = std::move(file);
  return shard;
}

const std::string& TokenShard::path() const { return file_->path(); }

void TokenShard::ReadSequence(int64_t i, int32_t* ids, uint8_t* flags) const {
  const int64_t first = i * seq_len_;
  if (dtype_ == kTokenIdsU16) {
    const uint8_t* p = ids_ + 2 * first;
    for (int64_t t = 0; t < seq_len_; ++t) ids[t] = p[2 * t] | (p[2 * t + 1] << 8);
  } else {
    const uint8_t* p = ids_ + 4 * first;
    for (int64_t t = 0; t < seq_len_; ++t) ids[t] = static_cast<int32_t>(Get32(p + 4 * t));
  }
  std::memcpy(flags, flags_ + first, seq_len_);
}

}  // namespace lorasweep

// SHA-256 (FIPS 180-4) digests, written out as lowercase hex: tokenizer fingerprints and the
// checksums of dataset source files. Dependency-free because Debian's Abseil has no hashing of this
// kind; it needs a stable digest, not speed (~200 MB/s is plenty for fingerprints and JSONL
// inputs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace lorasweep {

// Incremental hashing: Update() any number of times, then HexDigest() once.
class Sha256 {
 public:
  void Update(std::string_view data);
  // The digest of everything passed to Update(); the object is spent afterwards.
  std::string HexDigest();

 private:
  void Compress();
  uint32_t h_[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                    0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  uint8_t block_[64] = {};
  size_t fill_ = 0;
  uint64_t bits_ = 0;
};

// SHA-256 of `data` as 64 lowercase hex digits.
std::string Sha256Hex(std::string_view data);

// SHA-256 of a file's bytes (read in chunks); errors name the file.
absl::StatusOr<std::string> Sha256FileHex(const std::string& path);

}  // namespace lorasweep

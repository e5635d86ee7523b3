// The file-system operations lorasweep relies on: read-only memory maps and atomic writes.
//
// Atomic writes go to a temporary file in the destination's directory, are fsync'ed, then renamed
// over the destination, so a reader (or a crash) sees the old file or the new one, never a torn one.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "absl/status/statusor.h"

namespace lorasweep {

// A read-only mapping of a whole file. Empty files map to an empty span.
class MappedFile {
 public:
  static absl::StatusOr<std::shared_ptr<MappedFile>> Open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  std::span<const uint8_t> bytes() const { return {data_, size_}; }
  const std::string& path() const { return path_; }

 private:
  MappedFile(std::string path, const uint8_t* data, size_t size)
      : path_(std::move(path)), data_(data), size_(size) {}
  std::string path_;
  const uint8_t* data_;
  size_t size_;
};

absl::StatusOr<std::string> ReadFileToString(const std::string& path);

// Writes `contents` to `path` atomically (temp file + fsync + rename).
absl::Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> contents);
absl::Status WriteFileAtomically(const std::string& path, const std::string& contents);

// Streams data into a temporary file beside `path`; Commit() fsyncs and renames it into place.
// Destroying the writer without Commit() removes the temporary file.
class AtomicFileWriter {
 public:
  static absl::StatusOr<std::unique_ptr<AtomicFileWriter>> Create(const std::string& path);
  ~AtomicFileWriter();
  absl::Status Append(std::span<const uint8_t> data);
  absl::Status Append(const std::string& data);
  absl::Status Commit();

 private:
  AtomicFileWriter(std::string path, std::string temp_path, int fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(fd) {}
  std::string path_;
  std::string temp_path_;
  int fd_;
  bool committed_ = false;
};

// Makes `path` and its parents (like mkdir -p).
absl::Status MakeDirectories(const std::string& path);

// A fresh, empty directory beside `dest` ("DEST.partial-XXXXXX") to stage a folder's files in.
absl::StatusOr<std::string> MakeStagingDirectory(const std::string& dest);

// Puts the staged folder `staged` in place of `dest`: an existing `dest` is first renamed aside
// ("DEST.old-XXXXXX"), `staged` renamed to `dest`, then the old one removed. Each step is one
// rename, so a crash leaves either the old or the new folder whole (RecoverReplacedDirectory finds
// an old one left aside when `dest` itself is missing).
absl::Status ReplaceDirectory(const std::string& staged, const std::string& dest);

// If `dest` is missing but a complete "DEST.old-*" from an interrupted ReplaceDirectory exists,
// renames it back. Returns whether `dest` exists afterwards.
absl::StatusOr<bool> RecoverReplacedDirectory(const std::string& dest);

}  // namespace lorasweep

#include "common/file_util.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>

#include "absl/strings/str_cat.h"

namespace lorasweep {
namespace {

absl::Status ErrnoError(const std::string& what, const std::string& path) {
  return absl::UnavailableError(absl::StrCat(what, " ", path, ": ", std::strerror(errno)));
}

std::string DirectoryOf(const std::string& path) {
  std::filesystem::path parent = std::filesystem::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

absl::Status FsyncDirectory(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return ErrnoError("cannot open directory", dir);
  ::fsync(fd);
  ::close(fd);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<MappedFile>> MappedFile::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return ErrnoError("cannot open", path);
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    absl::Status status = ErrnoError("cannot stat", path);
    ::close(fd);
    return status;
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return absl::InvalidArgumentError(absl::StrCat(path, ": not a regular file"));
  }
  const size_t size = static_cast<size_t>(st.st_size);
  const uint8_t* data = nullptr;
  if (size > 0) {
    void* mapped = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapped == MAP_FAILED) {
      absl::Status status = ErrnoError("cannot mmap", path);
      ::close(fd);
      return status;
    }
    data = static_cast<const uint8_t*>(mapped);
  }
  ::close(fd);  // the mapping stays valid after close
  return std::shared_ptr<MappedFile>(new MappedFile(path, data, size));
}

MappedFile::~MappedFile() {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), size_);
}

absl::StatusOr<std::string> ReadFileToString(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return ErrnoError("cannot open", path);
  std::string out;
  char buffer[1 << 16];
  while (true) {
    ssize_t n = ::read(fd, buffer, sizeof(buffer));
    if (n < 0) {
      if (errno == EINTR) continue;
      absl::Status status = ErrnoError("cannot read", path);
      ::close(fd);
      return status;
    }
    if (n == 0) break;
    out.append(buffer, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

absl::StatusOr<std::unique_ptr<AtomicFileWriter>> AtomicFileWriter::Create(const std::string& path) {
  std::random_device rd;
  const std::string temp_path = absl::StrCat(path, ".tmp.", ::getpid(), ".", rd());
  int fd = ::open(temp_path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("cannot create", temp_path);
  return std::unique_ptr<AtomicFileWriter>(new AtomicFileWriter(path, temp_path, fd));
}

AtomicFileWriter::~AtomicFileWriter() {
  if (fd_ >= 0) ::close(fd_);
  if (!committed_) ::unlink(temp_path_.c_str());
}

absl::Status AtomicFileWriter::Append(std::span<const uint8_t> data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd_, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("cannot write", temp_path_);
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::Status AtomicFileWriter::Append(const std::string& data) {
  return Append(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data.data()), data.size()));
}

absl::Status AtomicFileWriter::Commit() {
  if (::fsync(fd_) != 0) return ErrnoError("cannot fsync", temp_path_);
  if (::close(fd_) != 0) {
    fd_ = -1;
    return ErrnoError("cannot close", temp_path_);
  }
  fd_ = -1;
  if (::rename(temp_path_.c_str(), path_.c_str()) != 0) return ErrnoError("cannot rename to", path_);
  committed_ = true;
  return FsyncDirectory(DirectoryOf(path_));
}

absl::Status WriteFileAtomically(const std::string& path, std::span<const uint8_t> contents) {
  auto writer = AtomicFileWriter::Create(path);
  if (!writer.ok()) return writer.status();
  absl::Status status = (*writer)->Append(contents);
  if (!status.ok()) return status;
  return (*writer)->Commit();
}

absl::Status WriteFileAtomically(const std::string& path, const std::string& contents) {
  return WriteFileAtomically(
      path, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(contents.data()), contents.size()));
}

absl::Status MakeDirectories(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot create directory ", path, ": ", ec.message()));
  return absl::OkStatus();
}

namespace {

std::string RandomSuffix() {
  static constexpr char kChars[] = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::random_device device;
  std::string suffix(6, 'x');
  for (char& c : suffix) c = kChars[device() % (sizeof(kChars) - 1)];
  return suffix;
}

}  // namespace

absl::StatusOr<std::string> MakeStagingDirectory(const std::string& dest) {
  std::string base = dest;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  for (int attempt = 0; attempt < 16; ++attempt) {
    const std::string path = absl::StrCat(base, ".partial-", RandomSuffix());
    std::error_code ec;
    if (std::filesystem::create_directory(path, ec)) return path;
    if (ec && ec != std::errc::file_exists) {
      return absl::UnavailableError(
          absl::StrCat("cannot create directory ", path, ": ", ec.message()));
    }
  }
  return absl::UnavailableError(absl::StrCat("cannot create a staging directory beside ", dest));
}

absl::Status ReplaceDirectory(const std::string& staged, const std::string& dest) {
  std::string base = dest;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::error_code ec;
  std::string old;
  if (std::filesystem::exists(base, ec)) {
    old = absl::StrCat(base, ".old-", RandomSuffix());
    std::filesystem::rename(base, old, ec);
    if (ec) {
      return absl::UnavailableError(
          absl::StrCat("cannot move ", base, " aside to ", old, ": ", ec.message()));
    }
  }
  std::filesystem::rename(staged, base, ec);
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot rename ", staged, " to ", base, ": ", ec.message()));
  }
  if (!old.empty()) std::filesystem::remove_all(old, ec);  // best effort: the new one is in place
  return absl::OkStatus();
}

absl::StatusOr<bool> RecoverReplacedDirectory(const std::string& dest) {
  std::string base = dest;
  while (base.size() > 1 && base.back() == '/') base.pop_back();
  std::error_code ec;
  if (std::filesystem::exists(base, ec)) return true;
  const std::filesystem::path path(base);
  const std::filesystem::path parent = path.has_parent_path() ? path.parent_path() : ".";
  if (!std::filesystem::is_directory(parent, ec)) return false;
  const std::string prefix = path.filename().string() + ".old-";
  for (const auto& entry : std::filesystem::directory_iterator(parent, ec)) {
    if (entry.path().filename().string().rfind(prefix, 0) == 0) {
      std::filesystem::rename(entry.path(), base, ec);
      if (ec) {
        return absl::UnavailableError(absl::StrCat("cannot restore ", entry.path().string(),
                                                   " to ", base, ": ", ec.message()));
      }
      return true;
    }
  }
  return false;
}

}  // namespace lorasweep

#include "worker/formats/safetensors.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <set>
#include <system_error>
#include <tuple>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

// The reference library refuses headers above 100 MB; a larger one is corrupt or hostile.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;
// Real headers nest three levels ({name: {shape: [...]}}); the cap keeps a hostile header from
// making the DOM parser allocate millions of nested values.
constexpr int kMaxJsonDepth = 64;
constexpr char kMetadataKey[] = "__metadata__";
constexpr char kSingleFileName[] = "model.safetensors";
constexpr char kIndexFileName[] = "model.safetensors.index.json";

absl::Status Invalid(const std::string& path, const std::string& problem) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": ", problem));
}

// Tensor names come from untrusted files and may hold control characters; keep messages printable.
std::string Quoted(const std::string& name) {
  return absl::StrCat("\"", absl::CHexEscape(name), "\"");
}

std::string TensorLabel(const std::string& name) { return absl::StrCat("tensor ", Quoted(name)); }

uint64_t LoadLittleEndian64(const uint8_t* p) {
  uint64_t value = 0;
  for (int i = 7; i >= 0; --i) value = (value << 8) | p[i];
  return value;
}

// Position of a dtype in the reference library's Dtype enum, which is ordered by alignment. The
// writer puts higher ranks first so that every tensor starts aligned to its element size.
int AlignmentRank(DType dtype) {
  switch (dtype) {
    case DType::kBool:
      return 0;
    case DType::kU8:
      return 1;
    case DType::kI8:
      return 2;
    case DType::kI16:
      return 5;
    case DType::kF16:
      return 7;
    case DType::kBF16:
      return 8;
    case DType::kI32:
      return 9;
    case DType::kF32:
      return 11;
    case DType::kF64:
      return 13;
    case DType::kI64:
      return 14;
    default:
      return -1;  // block-quantized types are rejected before sorting
  }
}

// Strict UTF-8 (no overlong forms, surrogates or code points above U+10FFFF), the same rule as a
// Rust String, so that every name the writer accepts is one the reference reader accepts.
bool IsValidUtf8(const std::string& s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0u) != 0x80u) return false;
      cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10FFFF ||
        (cp >= 0xD800 && cp <= 0xDFFF)) {
      return false;
    }
    i += len;
  }
  return true;
}

// Appends `s` as a JSON string the way serde_json (the reference writer) spells it: only '"', '\\'
// and control characters are escaped, everything else (including non-ASCII UTF-8) is copied.
void AppendJsonString(const std::string& s, std::string* out) {
  out->push_back('"');
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (c < 0x20) {
          absl::StrAppendFormat(out, "\\u%04x", c);
        } else {
          out->push_back(ch);
        }
    }
  }
  out->push_back('"');
}

// A first pass over untrusted JSON that nlohmann's DOM parser cannot do: it rejects duplicate keys
// (the DOM keeps the last silently), caps the nesting depth, and keeps the parser's own message.
class StrictJsonChecker : public nlohmann::json_sax<json> {
 public:
  bool null() override { return true; }
  bool boolean(bool) override { return true; }
  bool number_integer(number_integer_t) override { return true; }
  bool number_unsigned(number_unsigned_t) override { return true; }
  bool number_float(number_float_t, const string_t&) override { return true; }
  bool string(string_t&) override { return true; }
  bool binary(binary_t&) override { return true; }
  bool start_object(std::size_t) override {
    keys_.emplace_back();
    return Enter();
  }
  bool key(string_t& key) override {
    if (!keys_.back().insert(key).second) {
      error_ = absl::StrCat("duplicate key ", Quoted(key),
                            keys_.size() == 1 ? " (a tensor name given twice)" : "");
      return false;
    }
    return true;
  }
  bool end_object() override {
    keys_.pop_back();
    --depth_;
    return true;
  }
  bool start_array(std::size_t) override { return Enter(); }
  bool end_array() override {
    --depth_;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
    error_ = e.what();
    return false;
  }

  const std::string& error() const { return error_; }

 private:
  bool Enter() {
    if (++depth_ > kMaxJsonDepth) {
      error_ = absl::StrCat("JSON nested deeper than ", kMaxJsonDepth, " levels");
      return false;
    }
    return true;
  }
  int depth_ = 0;
  std::vector<std::set<std::string>> keys_;
  std::string error_;
};

// Parses untrusted JSON without exceptions; `what` names the document in messages.
absl::StatusOr<json> ParseStrictJson(const std::string& text, const std::string& path,
                                     const std::string& what) {
  // nlohmann's lexer stops at a NUL byte as if the input ended there, which would accept NUL
  // padding or anything hidden after it; valid JSON never holds a raw NUL.
  if (const size_t nul = text.find('\0'); nul != std::string::npos) {
    return Invalid(path, absl::StrCat(what, " is not valid JSON: NUL byte at offset ", nul));
  }
  StrictJsonChecker checker;
  if (!json::sax_parse(text, &checker) || !checker.error().empty()) {
    const std::string detail = checker.error().empty() ? "unknown error" : checker.error();
    return Invalid(path, absl::StrCat(what, " is not valid JSON: ", detail));
  }
  json parsed = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return Invalid(path, absl::StrCat(what, " is not valid JSON"));
  return parsed;
}

// A parsed, self-consistent header entry (offsets relative to the data section).
struct HeaderEntry {
  std::string name;
  DType dtype = DType::kF32;
  std::vector<int64_t> shape;
  uint64_t begin = 0;
  uint64_t end = 0;
};

absl::StatusOr<HeaderEntry> ParseEntry(const std::string& path, const std::string& name,
                                       const json& value, uint64_t data_size) {
  const std::string label = TensorLabel(name);
  if (!value.is_object()) return Invalid(path, absl::StrCat(label, ": entry is not a JSON object"));
  HeaderEntry entry;
  entry.name = name;

  auto dtype_it = value.find("dtype");
  if (dtype_it == value.end()) return Invalid(path, absl::StrCat(label, ": missing \"dtype\""));
  if (!dtype_it->is_string())
    return Invalid(path, absl::StrCat(label, ": \"dtype\" is not a string"));
  const std::string& dtype_name = dtype_it->get_ref<const std::string&>();
  std::optional<DType> dtype = DTypeFromSafetensorsName(dtype_name);
  if (!dtype) {
    return Invalid(path, absl::StrCat(label, ": unknown dtype ", Quoted(dtype_name)));
  }
  entry.dtype = *dtype;

  auto shape_it = value.find("shape");
  if (shape_it == value.end()) return Invalid(path, absl::StrCat(label, ": missing \"shape\""));
  if (!shape_it->is_array())
    return Invalid(path, absl::StrCat(label, ": \"shape\" is not an array"));
  // Overflow is checked left to right like the reference, so the same files are rejected.
  uint64_t elements = 1;
  bool overflow = false;
  for (const json& dim : *shape_it) {
    // nlohmann parses every non-negative integer literal as unsigned; anything else is not a dim.
    if (!dim.is_number_unsigned()) {
      return Invalid(path, absl::StrCat(label, ": shape ", dim.dump(),
                                        " entry is not a non-negative integer"));
    }
    const uint64_t d = dim.get<uint64_t>();
    if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return Invalid(path, absl::StrCat(label, ": shape dimension ", d, " is too large"));
    }
    entry.shape.push_back(static_cast<int64_t>(d));
    if (!overflow && __builtin_mul_overflow(elements, d, &elements)) overflow = true;
  }
  uint64_t byte_size = 0;
  if (overflow || __builtin_mul_overflow(elements, DTypeSize(entry.dtype), &byte_size)) {
    return Invalid(path, absl::StrCat(label, ": shape ", shape_it->dump(), " of ", dtype_name,
                                      " overflows a 64-bit byte size"));
  }

  auto offsets_it = value.find("data_offsets");
  if (offsets_it == value.end()) {
    return Invalid(path, absl::StrCat(label, ": missing \"data_offsets\""));
  }
  const json& offsets = *offsets_it;
  if (!offsets.is_array() || offsets.size() != 2 || !offsets[0].is_number_unsigned() ||
      !offsets[1].is_number_unsigned()) {
    return Invalid(path, absl::StrCat(label, ": data_offsets ", offsets.dump(),
                                      " is not [begin, end] with non-negative integers"));
  }
  entry.begin = offsets[0].get<uint64_t>();
  entry.end = offsets[1].get<uint64_t>();
  if (entry.begin > entry.end) {
    return Invalid(path,
                   absl::StrCat(label, ": data_offsets ", offsets.dump(), " has begin > end"));
  }
  if (entry.end - entry.begin != byte_size) {
    return Invalid(path, absl::StrCat(label, ": shape ", shape_it->dump(), " of ", dtype_name,
                                      " needs ", byte_size, " bytes but data_offsets ",
                                      offsets.dump(), " hold ", entry.end - entry.begin));
  }
  if (entry.end > data_size) {
    return Invalid(path,
                   absl::StrCat(label, ": data_offsets ", offsets.dump(),
                                " run past the end of the data section (", data_size, " bytes)"));
  }
  return entry;
}

// The reference reader requires the ranges, sorted, to tile the data section exactly: no overlap,
// no gap, nothing after the last tensor. Reporting which of the three failed helps whoever wrote
// the file.
absl::Status CheckCoverage(const std::string& path, std::vector<HeaderEntry*> entries,
                           uint64_t data_size) {
  std::sort(entries.begin(), entries.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
    return std::tie(a->begin, a->end, a->name) < std::tie(b->begin, b->end, b->name);
  });
  uint64_t covered = 0;
  const HeaderEntry* previous = nullptr;
  for (const HeaderEntry* e : entries) {
    if (e->begin < covered) {
      return Invalid(path, absl::StrCat(TensorLabel(e->name), " bytes [", e->begin, ", ", e->end,
                                        ") overlap ", TensorLabel(previous->name), " bytes [",
                                        previous->begin, ", ", previous->end, ")"));
    }
    if (e->begin > covered) {
      return Invalid(path, absl::StrCat("data bytes [", covered, ", ", e->begin,
                                        ") are not covered by any tensor (a gap before ",
                                        TensorLabel(e->name), ")"));
    }
    covered = e->end;
    previous = e;
  }
  if (covered != data_size) {
    return Invalid(path, absl::StrCat("data bytes [", covered, ", ", data_size,
                                      ") after the last tensor are not covered by any tensor"));
  }
  return absl::OkStatus();
}

// Checks one tensor the writer is given and returns its byte size.
absl::StatusOr<uint64_t> ValidateForWrite(const std::string& path, const std::string& name,
                                          const Tensor& tensor) {
  const std::string label = TensorLabel(name);
  if (name == kMetadataKey) {
    return Invalid(path, absl::StrCat("cannot write a tensor named ", kMetadataKey,
                                      " (reserved for the metadata)"));
  }
  if (!IsValidUtf8(name)) return Invalid(path, absl::StrCat(label, ": name is not valid UTF-8"));
  const size_t element_size = DTypeSize(tensor.dtype());
  if (element_size == 0) {
    return Invalid(path, absl::StrCat(label, ": block-quantized dtype ", DTypeName(tensor.dtype()),
                                      " cannot be stored in safetensors"));
  }
  uint64_t elements = 1;
  for (int64_t d : tensor.shape()) {
    if (d < 0) {
      return Invalid(path, absl::StrCat(label, ": negative dimension in shape ",
                                        ShapeToString(tensor.shape())));
    }
    if (__builtin_mul_overflow(elements, static_cast<uint64_t>(d), &elements)) {
      return Invalid(path,
                     absl::StrCat(label, ": shape ", ShapeToString(tensor.shape()), " overflows"));
    }
  }
  uint64_t expected = 0;
  if (__builtin_mul_overflow(elements, static_cast<uint64_t>(element_size), &expected) ||
      expected != tensor.bytes().size()) {
    return Invalid(path, absl::StrCat(label, ": shape ", ShapeToString(tensor.shape()), " of ",
                                      DTypeName(tensor.dtype()), " needs ", expected,
                                      " bytes but the tensor holds ", tensor.bytes().size()));
  }
  return expected;
}

absl::Status ValidateAllForWrite(const std::string& path, const NamedTensors& tensors,
                                 const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  for (const auto& [name, tensor] : tensors) {
    if (!names.insert(name).second) {
      return Invalid(path, absl::StrCat("tensor name ", Quoted(name), " given twice"));
    }
    RETURN_IF_ERROR(ValidateForWrite(path, name, tensor).status());
  }
  for (const auto& [key, value] : metadata) {
    if (!IsValidUtf8(key) || !IsValidUtf8(value)) {
      return Invalid(path, absl::StrCat("metadata entry ", Quoted(key), " is not valid UTF-8"));
    }
  }
  return absl::OkStatus();
}

// Shard files this library names (model-00001-of-00004.safetensors), for cleaning up stale ones.
bool IsShardFileName(const std::string& name) {
  // "model-" 5 digits "-of-" 5 digits ".safetensors"
  constexpr size_t kLength = 6 + 5 + 4 + 5 + 12;
  if (name.size() != kLength || !absl::StartsWith(name, "model-") ||
      !absl::EndsWith(name, ".safetensors") || name.compare(11, 4, "-of-") != 0) {
    return false;
  }
  for (size_t i : {6, 7, 8, 9, 10, 15, 16, 17, 18, 19}) {
    if (name[i] < '0' || name[i] > '9') return false;
  }
  return true;
}

absl::Status RemoveIfPresent(const fs::path& path) {
  std::error_code ec;
  fs::remove(path, ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot remove ", path.string(), ": ", ec.message()));
  return absl::OkStatus();
}

// Removes shard files and index/single files left by an earlier write that the new one replaces,
// so that a reader of the folder never mixes two generations.
absl::Status RemoveStaleFiles(const fs::path& dir, const std::set<std::string>& keep) {
  std::error_code ec;
  std::vector<fs::path> stale;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (keep.count(name)) continue;
    if (IsShardFileName(name) || name == kSingleFileName || name == kIndexFileName) {
      stale.push_back(it->path());
    }
  }
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot list ", dir.string(), ": ", ec.message()));
  for (const fs::path& p : stale) RETURN_IF_ERROR(RemoveIfPresent(p));
  return absl::OkStatus();
}

}  // namespace

// ---- SafetensorsFile
// ------------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  const std::span<const uint8_t> bytes = file->bytes();
  if (bytes.size() < 8) {
    return Invalid(path, absl::StrCat("file is ", bytes.size(),
                                      " bytes, shorter than 8 bytes (the header length)"));
  }
  const uint64_t header_size = LoadLittleEndian64(bytes.data());
  if (header_size > kMaxHeaderBytes) {
    return Invalid(path, absl::StrCat("header length ", header_size, " exceeds the limit of ",
                                      kMaxHeaderBytes, " bytes"));
  }
  if (header_size > bytes.size() - 8) {
    return Invalid(path, absl::StrCat("header length ", header_size,
                                      " runs past the end of the file (", bytes.size(), " bytes)"));
  }
  const std::string text(reinterpret_cast<const char*>(bytes.data()) + 8, header_size);
  ASSIGN_OR_RETURN(json header, ParseStrictJson(text, path, "header"));
  if (!header.is_object()) return Invalid(path, "header is not a JSON object");

  const uint64_t data_start = 8 + header_size;
  const uint64_t data_size = bytes.size() - data_start;
  auto result = std::unique_ptr<SafetensorsFile>(new SafetensorsFile());
  std::vector<HeaderEntry> entries;
  entries.reserve(header.size());
  for (auto it = header.begin(); it != header.end(); ++it) {
    if (it.key() == kMetadataKey) {
      const json& metadata = it.value();
      if (metadata.is_null()) continue;  // the reference reads null as "no metadata"
      if (!metadata.is_object()) return Invalid(path, "__metadata__ is not a JSON object");
      for (auto m = metadata.begin(); m != metadata.end(); ++m) {
        if (!m.value().is_string()) {
          return Invalid(
              path, absl::StrCat("__metadata__ value for ", Quoted(m.key()), " is not a string"));
        }
        result->metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    ASSIGN_OR_RETURN(HeaderEntry entry, ParseEntry(path, it.key(), it.value(), data_size));
    entries.push_back(std::move(entry));
  }
  std::vector<HeaderEntry*> pointers;
  for (HeaderEntry& e : entries) pointers.push_back(&e);
  RETURN_IF_ERROR(CheckCoverage(path, std::move(pointers), data_size));

  for (HeaderEntry& e : entries) {
    Entry entry;
    entry.info.name = e.name;
    entry.info.dtype = e.dtype;
    entry.info.shape = std::move(e.shape);
    entry.begin = data_start + e.begin;
    entry.end = data_start + e.end;
    result->entries_.emplace(e.name, std::move(entry));
  }
  result->file_ = std::move(file);
  return result;
}

std::vector<TensorInfo> SafetensorsFile::List() const {
  std::vector<TensorInfo> out;
  out.reserve(entries_.size());
  for (const auto& [name, entry] : entries_) out.push_back(entry.info);
  return out;
}

bool SafetensorsFile::Contains(const std::string& name) const { return entries_.count(name) > 0; }

absl::StatusOr<Tensor> SafetensorsFile::Get(const std::string& name) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return absl::NotFoundError(absl::StrCat(file_->path(), ": no ", TensorLabel(name)));
  }
  const Entry& entry = it->second;
  const std::span<const uint8_t> bytes =
      file_->bytes().subspan(entry.begin, entry.end - entry.begin);
  const size_t element_size = DTypeSize(entry.info.dtype);
  // Files from writers that do not pad the header can leave data misaligned; Tensor::data<T>()
  // needs alignment, so such a tensor is copied instead of viewed.
  if (reinterpret_cast<uintptr_t>(bytes.data()) % element_size != 0) {
    Tensor copy = Tensor::Allocate(entry.info.dtype, entry.info.shape, bytes.size());
    std::memcpy(copy.MutableBytes().data(), bytes.data(), bytes.size());
    return copy;
  }
  return Tensor::View(entry.info.dtype, entry.info.shape, bytes, file_);
}

absl::StatusOr<std::vector<float>> SafetensorsFile::GetFloats(const std::string& name) const {
  ASSIGN_OR_RETURN(Tensor tensor, Get(name));
  absl::StatusOr<std::vector<float>> floats = tensor.ToFloats();
  if (!floats.ok()) {
    return absl::Status(floats.status().code(), absl::StrCat(file_->path(), ": ", TensorLabel(name),
                                                             ": ", floats.status().message()));
  }
  return floats;
}

// ---- Writer
// ---------------------------------------------------------------------------------------

absl::Status WriteSafetensors(const std::string& path, const NamedTensors& tensors,
                              const std::map<std::string, std::string>& metadata) {
  RETURN_IF_ERROR(ValidateAllForWrite(path, tensors, metadata));

  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int rank_a = AlignmentRank(tensors[a].second.dtype());
    const int rank_b = AlignmentRank(tensors[b].second.dtype());
    if (rank_a != rank_b) return rank_a > rank_b;
    return tensors[a].first < tensors[b].first;  // byte-wise, like Rust's String ordering
  });

  // The reference serializes a HashMap, so with several metadata keys its order is random; sorting
  // keeps lorasweep's output deterministic (identical bytes for zero or one key).
  std::string header = "{";
  bool first = true;
  if (!metadata.empty()) {
    AppendJsonString(kMetadataKey, &header);
    header.append(":{");
    bool first_key = true;
    for (const auto& [key, value] : metadata) {
      if (!first_key) header.push_back(',');
      first_key = false;
      AppendJsonString(key, &header);
      header.push_back(':');
      AppendJsonString(value, &header);
    }
    header.push_back('}');
    first = false;
  }
  uint64_t offset = 0;
  for (size_t i : order) {
    const auto& [name, tensor] = tensors[i];
    if (!first) header.push_back(',');
    first = false;
    AppendJsonString(name, &header);
    header.append(":{\"dtype\":");
    AppendJsonString(DTypeName(tensor.dtype()), &header);
    header.append(",\"shape\":[");
    for (size_t d = 0; d < tensor.shape().size(); ++d) {
      if (d > 0) header.push_back(',');
      absl::StrAppend(&header, tensor.shape()[d]);
    }
    const uint64_t end = offset + tensor.bytes().size();
    absl::StrAppend(&header, "],\"data_offsets\":[", offset, ",", end, "]}");
    offset = end;
  }
  header.push_back('}');
  // Spaces up to a multiple of 8 keep every tensor aligned to its element size once mapped.
  header.append((8 - header.size() % 8) % 8, ' ');

  uint8_t length[8];
  for (int i = 0; i < 8; ++i) length[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  ASSIGN_OR_RETURN(std::unique_ptr<AtomicFileWriter> writer, AtomicFileWriter::Create(path));
  RETURN_IF_ERROR(writer->Append(std::span<const uint8_t>(length, 8)));
  RETURN_IF_ERROR(writer->Append(header));
  for (size_t i : order) RETURN_IF_ERROR(writer->Append(tensors[i].second.bytes()));
  return writer->Commit();
}

// ---- SafetensorsCheckpoint
// ------------------------------------------------------------------------

absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> SafetensorsCheckpoint::Open(
    const std::string& path) {
  std::error_code ec;
  std::string file = path;
  if (fs::is_directory(path, ec)) {
    // transformers prefers the single file when both forms are present.
    const fs::path single = fs::path(path) / kSingleFileName;
    const fs::path index = fs::path(path) / kIndexFileName;
    if (fs::exists(single, ec)) {
      file = single.string();
    } else if (fs::exists(index, ec)) {
      file = index.string();
    } else {
      return absl::NotFoundError(
          absl::StrCat(path, ": no ", kSingleFileName, " or ", kIndexFileName, " in this folder"));
    }
  }
  auto checkpoint = std::unique_ptr<SafetensorsCheckpoint>(new SafetensorsCheckpoint());
  checkpoint->description_ = path;
  if (absl::EndsWith(file, ".json")) {
    ASSIGN_OR_RETURN(std::string text, ReadFileToString(file));
    ASSIGN_OR_RETURN(json index, ParseStrictJson(text, file, "index"));
    if (!index.is_object()) return Invalid(file, "index is not a JSON object");
    auto map_it = index.find("weight_map");
    if (map_it == index.end() || !map_it->is_object()) {
      return Invalid(file, "index has no \"weight_map\" object");
    }
    const fs::path base = fs::path(file).parent_path();
    std::map<std::string, size_t> shard_index;   // shard file name -> index into shards_
    std::map<std::string, std::string> file_of;  // tensor -> shard file name
    for (auto it = map_it->begin(); it != map_it->end(); ++it) {
      if (!it.value().is_string()) {
        return Invalid(file,
                       absl::StrCat("weight_map entry for ", Quoted(it.key()), " is not a string"));
      }
      const std::string shard = it.value().get<std::string>();
      const fs::path relative(shard);
      bool escapes = shard.empty() || relative.is_absolute();
      for (const fs::path& part : relative) escapes = escapes || part == "..";
      if (escapes) {
        return Invalid(file, absl::StrCat("weight_map entry for ", Quoted(it.key()), " names ",
                                          Quoted(shard), ", not a file inside the folder"));
      }
      file_of[it.key()] = shard;
      if (shard_index.count(shard)) continue;
      ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> opened,
                       SafetensorsFile::Open((base / relative).string()));
      shard_index[shard] = checkpoint->shards_.size();
      checkpoint->shards_.push_back(std::move(opened));
    }
    for (const auto& [shard, i] : shard_index) {
      const SafetensorsFile& opened = *checkpoint->shards_[i];
      for (const TensorInfo& info : opened.List()) {
        auto mapped = file_of.find(info.name);
        if (mapped == file_of.end()) {
          return Invalid(file, absl::StrCat("shard ", shard, " holds ", TensorLabel(info.name),
                                            " that the weight_map does not list"));
        }
        if (mapped->second != shard) {
          return Invalid(file, absl::StrCat("shard ", shard, " holds ", TensorLabel(info.name),
                                            " that the weight_map puts in ", mapped->second));
        }
      }
    }
    for (const auto& [name, shard] : file_of) {
      const size_t i = shard_index.at(shard);
      if (!checkpoint->shards_[i]->Contains(name)) {
        return Invalid(file, absl::StrCat("weight_map puts ", TensorLabel(name), " in ", shard,
                                          ", which has no such tensor"));
      }
      checkpoint->shard_of_[name] = i;
    }
    return checkpoint;
  }
  ASSIGN_OR_RETURN(std::unique_ptr<SafetensorsFile> single, SafetensorsFile::Open(file));
  for (const TensorInfo& info : single->List()) checkpoint->shard_of_[info.name] = 0;
  checkpoint->shards_.push_back(std::move(single));
  return checkpoint;
}

std::vector<TensorInfo> SafetensorsCheckpoint::List() const {
  // Open() checked that every tensor of every shard is the one the index maps to that shard.
  std::vector<TensorInfo> out;
  out.reserve(shard_of_.size());
  for (const auto& shard : shards_) {
    for (TensorInfo& info : shard->List()) out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(),
            [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return out;
}

bool SafetensorsCheckpoint::Contains(const std::string& name) const {
  return shard_of_.count(name) > 0;
}

absl::StatusOr<Tensor> SafetensorsCheckpoint::Get(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) {
    return absl::NotFoundError(absl::StrCat(description_, ": no ", TensorLabel(name)));
  }
  return shards_[it->second]->Get(name);
}

absl::StatusOr<std::vector<float>> SafetensorsCheckpoint::GetFloats(const std::string& name) const {
  auto it = shard_of_.find(name);
  if (it == shard_of_.end()) {
    return absl::NotFoundError(absl::StrCat(description_, ": no ", TensorLabel(name)));
  }
  return shards_[it->second]->GetFloats(name);
}

absl::Status WriteSafetensorsCheckpoint(const std::string& dir, const NamedTensors& tensors,
                                        uint64_t max_shard_bytes,
                                        const std::map<std::string, std::string>& metadata) {
  // Everything is checked before the first file is written, so a bad input leaves the folder as is.
  RETURN_IF_ERROR(ValidateAllForWrite(dir, tensors, metadata));
  RETURN_IF_ERROR(MakeDirectories(dir));

  // huggingface_hub's split (what transformers' save_pretrained uses): walk the tensors in order,
  // start a new shard when the next tensor would push the current one over the limit, and give a
  // tensor larger than the limit a shard of its own without closing the current one.
  std::vector<NamedTensors> shards;
  NamedTensors current;
  uint64_t current_size = 0;
  uint64_t total_size = 0;
  for (const auto& named : tensors) {
    const uint64_t size = named.second.bytes().size();
    total_size += size;
    if (size > max_shard_bytes) {
      shards.push_back({named});
      continue;
    }
    if (current_size + size > max_shard_bytes) {
      shards.push_back(std::move(current));
      current.clear();
      current_size = 0;
    }
    current.push_back(named);
    current_size += size;
  }
  if (!current.empty()) shards.push_back(std::move(current));

  const fs::path folder(dir);
  if (shards.size() <= 1) {
    RETURN_IF_ERROR(WriteSafetensors((folder / kSingleFileName).string(),
                                     shards.empty() ? NamedTensors{} : shards[0], metadata));
    return RemoveStaleFiles(folder, {kSingleFileName});
  }

  std::set<std::string> written;
  json weight_map = json::object();
  for (size_t i = 0; i < shards.size(); ++i) {
    const std::string name =
        absl::StrFormat("model-%05d-of-%05d.safetensors", i + 1, shards.size());
    RETURN_IF_ERROR(WriteSafetensors((folder / name).string(), shards[i], metadata));
    for (const auto& named : shards[i]) weight_map[named.first] = name;
    written.insert(name);
  }
  json index = json::object();
  index["metadata"]["total_size"] = total_size;
  index["weight_map"] = std::move(weight_map);
  // transformers writes json.dumps(index, indent=2, sort_keys=True) + "\n"; nlohmann's object keeps
  // keys sorted, and ensure_ascii matches Python's default escaping of non-ASCII names.
  const std::string text =
      index.dump(2, ' ', /*ensure_ascii=*/true, json::error_handler_t::replace) + "\n";
  // The index goes after its shards and stale files go last, so a crash never leaves an index that
  // names missing shards, and a replaced model.safetensors (which readers prefer) stays whole until
  // the new index exists. A crash while overwriting an older sharded set can leave shards of two
  // generations; Open's cross-check of weight_map against the shards reports that.
  RETURN_IF_ERROR(WriteFileAtomically((folder / kIndexFileName).string(), text));
  written.insert(kIndexFileName);
  return RemoveStaleFiles(folder, written);
}

}  // namespace lorasweep

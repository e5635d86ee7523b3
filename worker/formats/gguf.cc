#include "worker/formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "common/dtype.h"
#include "common/parallel_for.h"
#include "common/status_macros.h"

namespace lorasweep {
namespace {

// Values are decoded with memcpy into host integers: GGUF files in the wild are little-endian and
// so is every machine lorasweep targets.
static_assert(std::endian::native == std::endian::little, "the GGUF reader assumes little-endian");

enum GgufValueTypeId : uint32_t {
  kTypeUint8 = 0,
  kTypeInt8 = 1,
  kTypeUint16 = 2,
  kTypeInt16 = 3,
  kTypeUint32 = 4,
  kTypeInt32 = 5,
  kTypeFloat32 = 6,
  kTypeBool = 7,
  kTypeString = 8,
  kTypeArray = 9,
  kTypeUint64 = 10,
  kTypeInt64 = 11,
  kTypeFloat64 = 12,
};

constexpr uint64_t kDefaultAlignment = 32;
constexpr uint32_t kMaxDims = 4;  // GGML_MAX_DIMS
// Nested arrays recurse; a hostile file must not be able to exhaust the stack.
constexpr int kMaxArrayDepth = 8;
// A decoded value takes ~50 bytes of memory while a uint8 element takes 1 byte on disk; this cap
// bounds what a hostile file can make us allocate, with room for the largest tokenizers (a 256k
// vocabulary has about a million token / score / type / merge entries in all).
constexpr uint64_t kMaxMetadataValues = uint64_t{1} << 24;
// Smallest possible encodings, used to reject counts that cannot fit in the bytes that follow
// before anything is allocated for them.
constexpr uint64_t kMinMetadataEntryBytes = 8 + 4 + 1;  // key length, type, 1-byte value
constexpr uint64_t kMinTensorInfoBytes =
    8 + 4 + 8 + 4 + 8;  // name length, n_dims, 1 dim, type, offset

// Encoded size of a value of `type` at least; 0 for unknown types.
uint64_t MinEncodedSize(uint32_t type) {
  switch (type) {
    case kTypeUint8:
    case kTypeInt8:
    case kTypeBool:
      return 1;
    case kTypeUint16:
    case kTypeInt16:
      return 2;
    case kTypeUint32:
    case kTypeInt32:
    case kTypeFloat32:
      return 4;
    case kTypeUint64:
    case kTypeInt64:
    case kTypeFloat64:
    case kTypeString:  // its length field
      return 8;
    case kTypeArray:  // element type + count
      return 12;
    default:
      return 0;
  }
}

struct TypeTraits {
  GgmlType type;
  int64_t block_elements;
  uint64_t block_bytes;
  DType dtype;
};

constexpr TypeTraits kReadableTypes[] = {
    {GgmlType::kF32, 1, 4, DType::kF32},     {GgmlType::kF16, 1, 2, DType::kF16},
    {GgmlType::kBF16, 1, 2, DType::kBF16},   {GgmlType::kQ4_0, 32, 18, DType::kQ4_0},
    {GgmlType::kQ4_1, 32, 20, DType::kQ4_1}, {GgmlType::kQ8_0, 32, 34, DType::kQ8_0},
};

const TypeTraits* FindReadableType(GgmlType type) {
  for (const TypeTraits& traits : kReadableTypes) {
    if (traits.type == type) return &traits;
  }
  return nullptr;
}

std::string ReadableTypeList() {
  std::vector<std::string> names;
  for (const TypeTraits& traits : kReadableTypes) names.push_back(GgmlTypeName(traits.type));
  return absl::StrJoin(names, ", ");
}

std::string TypeDescription(GgmlType type) {
  return absl::StrCat(GgmlTypeName(type), " (", static_cast<uint32_t>(type), ")");
}

template <typename... Args>
absl::Status Invalid(const std::string& path, const Args&... args) {
  return absl::InvalidArgumentError(absl::StrCat("GGUF file ", path, ": ", args...));
}

// Bounds-checked little-endian reads over the mapped file.
class Cursor {
 public:
  Cursor(std::span<const uint8_t> bytes, const std::string& path) : bytes_(bytes), path_(path) {}

  uint64_t pos() const { return pos_; }
  uint64_t remaining() const { return bytes_.size() - pos_; }
  const std::string& path() const { return path_; }

  template <typename T>
  absl::StatusOr<T> Read(absl::string_view what) {
    if (remaining() < sizeof(T)) {
      return Invalid(path_, "truncated: ", what, " at byte ", pos_, " needs ", sizeof(T),
                     " bytes, ", remaining(), " left");
    }
    T value;
    std::memcpy(&value, bytes_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return value;
  }

  absl::StatusOr<std::string> ReadString(absl::string_view what) {
    ASSIGN_OR_RETURN(const uint64_t length, Read<uint64_t>(what));
    if (length > remaining()) {
      return Invalid(path_, what, " at byte ", pos_ - 8, ": string length ", length,
                     " exceeds the ", remaining(), " bytes left");
    }
    std::string s(reinterpret_cast<const char*>(bytes_.data() + pos_), length);
    pos_ += length;
    return s;
  }

 private:
  std::span<const uint8_t> bytes_;
  const std::string& path_;
  uint64_t pos_ = 0;
};

// Reads one metadata value of `type`. `what` names the key for error messages; `budget` counts the
// values still allowed (kMaxMetadataValues over the whole file).
absl::StatusOr<GgufValue> ReadValue(Cursor& cursor, uint32_t type, const std::string& what,
                                    int depth, uint64_t& budget) {
  if (budget == 0) {
    return Invalid(cursor.path(), what, ": the metadata holds more than ", kMaxMetadataValues,
                   " values");
  }
  --budget;
  GgufValue v;
  v.type = type;
  switch (type) {
    case kTypeUint8: {
      ASSIGN_OR_RETURN(const uint8_t x, cursor.Read<uint8_t>(what));
      v.value = uint64_t{x};
      break;
    }
    case kTypeInt8: {
      ASSIGN_OR_RETURN(const int8_t x, cursor.Read<int8_t>(what));
      v.value = int64_t{x};
      break;
    }
    case kTypeUint16: {
      ASSIGN_OR_RETURN(const uint16_t x, cursor.Read<uint16_t>(what));
      v.value = uint64_t{x};
      break;
    }
    case kTypeInt16: {
      ASSIGN_OR_RETURN(const int16_t x, cursor.Read<int16_t>(what));
      v.value = int64_t{x};
      break;
    }
    case kTypeUint32: {
      ASSIGN_OR_RETURN(const uint32_t x, cursor.Read<uint32_t>(what));
      v.value = uint64_t{x};
      break;
    }
    case kTypeInt32: {
      ASSIGN_OR_RETURN(const int32_t x, cursor.Read<int32_t>(what));
      v.value = int64_t{x};
      break;
    }
    case kTypeUint64: {
      ASSIGN_OR_RETURN(const uint64_t x, cursor.Read<uint64_t>(what));
      v.value = x;
      break;
    }
    case kTypeInt64: {
      ASSIGN_OR_RETURN(const int64_t x, cursor.Read<int64_t>(what));
      v.value = x;
      break;
    }
    case kTypeFloat32: {
      ASSIGN_OR_RETURN(const float x, cursor.Read<float>(what));
      v.value = static_cast<double>(x);
      break;
    }
    case kTypeFloat64: {
      ASSIGN_OR_RETURN(const double x, cursor.Read<double>(what));
      v.value = x;
      break;
    }
    case kTypeBool: {
      ASSIGN_OR_RETURN(const uint8_t x, cursor.Read<uint8_t>(what));
      if (x > 1) {
        return Invalid(cursor.path(), what, " at byte ", cursor.pos() - 1, ": bool byte ",
                       static_cast<int>(x), " is neither 0 nor 1");
      }
      v.value = x == 1;
      break;
    }
    case kTypeString: {
      ASSIGN_OR_RETURN(std::string s, cursor.ReadString(what));
      v.value = std::move(s);
      break;
    }
    case kTypeArray: {
      ASSIGN_OR_RETURN(const uint32_t element_type, cursor.Read<uint32_t>(what));
      ASSIGN_OR_RETURN(const uint64_t count, cursor.Read<uint64_t>(what));
      const uint64_t min_size = MinEncodedSize(element_type);
      if (min_size == 0) {
        return Invalid(cursor.path(), what, ": unknown array element type ", element_type);
      }
      if (element_type == kTypeArray && depth + 1 >= kMaxArrayDepth) {
        return Invalid(cursor.path(), what, ": arrays nested more than ", kMaxArrayDepth, " deep");
      }
      if (count > cursor.remaining() / min_size) {
        return Invalid(cursor.path(), what, ": array of ", count, " ",
                       GgufValueTypeName(element_type), " values cannot fit in the ",
                       cursor.remaining(), " bytes left");
      }
      if (count > budget) {
        return Invalid(cursor.path(), what, ": the metadata holds more than ", kMaxMetadataValues,
                       " values");
      }
      v.element_type = element_type;
      auto array = std::make_shared<GgufValue::Array>();
      array->reserve(count);
      for (uint64_t i = 0; i < count; ++i) {
        ASSIGN_OR_RETURN(GgufValue element,
                         ReadValue(cursor, element_type, what, depth + 1, budget));
        array->push_back(std::move(element));
      }
      v.value = std::move(array);
      break;
    }
    default:
      return Invalid(cursor.path(), what, ": unknown value type ", type);
  }
  return v;
}

std::string TypeMismatch(const GgufValue& v, const char* expected) {
  return absl::StrCat("metadata value is ", GgufValueTypeName(v.type), " ", v.ToShortString(),
                      ", expected ", expected);
}

// Cuts `s` to at most `max_bytes` without splitting a UTF-8 sequence.
std::string Abbreviate(const std::string& s, size_t max_bytes) {
  if (s.size() <= max_bytes) return s;
  size_t n = max_bytes;
  while (n > 0 && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return absl::StrCat(s.substr(0, n), "...");
}

uint16_t LoadU16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// One block of 32 weights each; the formulas are in gguf.h. The products and sums are written as
// separate float operations in the order gguf-py's numpy code uses, so the results are bit-equal.
void DequantizeQ4_0Block(const uint8_t* block, float* out) {
  const float d = F16ToFloat(LoadU16(block));
  const uint8_t* qs = block + 2;
  for (int j = 0; j < 16; ++j) {
    out[j] = static_cast<float>((qs[j] & 0x0F) - 8) * d;
    out[j + 16] = static_cast<float>((qs[j] >> 4) - 8) * d;
  }
}

void DequantizeQ4_1Block(const uint8_t* block, float* out) {
  const float d = F16ToFloat(LoadU16(block));
  const float m = F16ToFloat(LoadU16(block + 2));
  const uint8_t* qs = block + 4;
  for (int j = 0; j < 16; ++j) {
    const float lo = static_cast<float>(qs[j] & 0x0F) * d;
    const float hi = static_cast<float>(qs[j] >> 4) * d;
    out[j] = lo + m;
    out[j + 16] = hi + m;
  }
}

void DequantizeQ8_0Block(const uint8_t* block, float* out) {
  const float d = F16ToFloat(LoadU16(block));
  for (int j = 0; j < 32; ++j) {
    out[j] = static_cast<float>(static_cast<int8_t>(block[2 + j])) * d;
  }
}

void DequantizeUnit(GgmlType type, const uint8_t* in, float* out) {
  switch (type) {
    case GgmlType::kF32:
      std::memcpy(out, in, sizeof(float));
      break;
    case GgmlType::kF16:
      *out = F16ToFloat(LoadU16(in));
      break;
    case GgmlType::kBF16:
      *out = Bf16ToFloat(LoadU16(in));
      break;
    case GgmlType::kQ4_0:
      DequantizeQ4_0Block(in, out);
      break;
    case GgmlType::kQ4_1:
      DequantizeQ4_1Block(in, out);
      break;
    case GgmlType::kQ8_0:
      DequantizeQ8_0Block(in, out);
      break;
  }
}

}  // namespace

const char* GgufValueTypeName(uint32_t type) {
  switch (type) {
    case kTypeUint8:
      return "uint8";
    case kTypeInt8:
      return "int8";
    case kTypeUint16:
      return "uint16";
    case kTypeInt16:
      return "int16";
    case kTypeUint32:
      return "uint32";
    case kTypeInt32:
      return "int32";
    case kTypeFloat32:
      return "float32";
    case kTypeBool:
      return "bool";
    case kTypeString:
      return "string";
    case kTypeArray:
      return "array";
    case kTypeUint64:
      return "uint64";
    case kTypeInt64:
      return "int64";
    case kTypeFloat64:
      return "float64";
    default:
      return "unknown";
  }
}

const char* GgmlTypeName(GgmlType type) {
  // ggml.h `enum ggml_type`; ids 4 and 5 (Q4_2, Q4_3) and 31..33, 36..38 are retired.
  switch (static_cast<uint32_t>(type)) {
    case 0:
      return "F32";
    case 1:
      return "F16";
    case 2:
      return "Q4_0";
    case 3:
      return "Q4_1";
    case 6:
      return "Q5_0";
    case 7:
      return "Q5_1";
    case 8:
      return "Q8_0";
    case 9:
      return "Q8_1";
    case 10:
      return "Q2_K";
    case 11:
      return "Q3_K";
    case 12:
      return "Q4_K";
    case 13:
      return "Q5_K";
    case 14:
      return "Q6_K";
    case 15:
      return "Q8_K";
    case 16:
      return "IQ2_XXS";
    case 17:
      return "IQ2_XS";
    case 18:
      return "IQ3_XXS";
    case 19:
      return "IQ1_S";
    case 20:
      return "IQ4_NL";
    case 21:
      return "IQ3_S";
    case 22:
      return "IQ2_S";
    case 23:
      return "IQ4_XS";
    case 24:
      return "I8";
    case 25:
      return "I16";
    case 26:
      return "I32";
    case 27:
      return "I64";
    case 28:
      return "F64";
    case 29:
      return "IQ1_M";
    case 30:
      return "BF16";
    case 34:
      return "TQ1_0";
    case 35:
      return "TQ2_0";
    case 39:
      return "MXFP4";
    default:
      return "unknown";
  }
}

DType GgmlTypeToDType(GgmlType type) {
  const TypeTraits* traits = FindReadableType(type);
  return traits != nullptr ? traits->dtype : DType::kU8;
}

absl::StatusOr<uint64_t> GgmlByteSize(GgmlType type, int64_t count) {
  const TypeTraits* traits = FindReadableType(type);
  if (traits == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("ggml type ", TypeDescription(type),
                     " is not supported (supported: ", ReadableTypeList(), ")"));
  }
  if (count < 0) return absl::InvalidArgumentError(absl::StrCat("negative element count ", count));
  if (count % traits->block_elements != 0) {
    return absl::InvalidArgumentError(absl::StrCat(count, " elements of ", GgmlTypeName(type),
                                                   " do not fill whole blocks of ",
                                                   traits->block_elements));
  }
  // count / block_elements <= 2^63 / 32 and block_bytes <= 34, so the product fits in 64 bits; the
  // check keeps that true should a type with larger blocks be added.
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(static_cast<uint64_t>(count / traits->block_elements),
                             traits->block_bytes, &bytes)) {
    return absl::InvalidArgumentError(
        absl::StrCat(count, " elements of ", GgmlTypeName(type), " overflow a byte size"));
  }
  return bytes;
}

absl::Status DequantizeGgml(GgmlType type, const uint8_t* data, size_t data_size, int64_t count,
                            float* out) {
  ASSIGN_OR_RETURN(const uint64_t needed, GgmlByteSize(type, count));
  if (data_size < needed) {
    return absl::InvalidArgumentError(absl::StrCat(count, " elements of ", GgmlTypeName(type),
                                                   " need ", needed, " bytes, got ", data_size));
  }
  if (count == 0) return absl::OkStatus();
  const TypeTraits& traits = *FindReadableType(type);
  const int64_t units = count / traits.block_elements;
  const int64_t elements = traits.block_elements;
  const uint64_t unit_bytes = traits.block_bytes;
  // Threads pay off only on large tensors (embeddings); small ones run inline.
  constexpr int64_t kMinElementsPerChunk = int64_t{1} << 16;
  ParallelFor(units, std::max<int64_t>(1, kMinElementsPerChunk / elements),
              [&](int64_t begin, int64_t end) {
                for (int64_t u = begin; u < end; ++u) {
                  DequantizeUnit(type, data + static_cast<uint64_t>(u) * unit_bytes,
                                 out + u * elements);
                }
              });
  return absl::OkStatus();
}

// ---- GgufValue ----------------------------------------------------------------------------------

absl::StatusOr<int64_t> GgufValue::AsInt() const {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return absl::InvalidArgumentError(
          absl::StrCat("metadata value ", *u, " does not fit in a signed 64-bit integer"));
    }
    return static_cast<int64_t>(*u);
  }
  if (const auto* i = std::get_if<int64_t>(&value)) return *i;
  return absl::InvalidArgumentError(TypeMismatch(*this, "an integer"));
}

absl::StatusOr<double> GgufValue::AsDouble() const {
  if (const auto* d = std::get_if<double>(&value)) return *d;
  if (const auto* u = std::get_if<uint64_t>(&value)) return static_cast<double>(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return static_cast<double>(*i);
  return absl::InvalidArgumentError(TypeMismatch(*this, "a number"));
}

absl::StatusOr<std::string> GgufValue::AsString() const {
  if (const auto* s = std::get_if<std::string>(&value)) return *s;
  return absl::InvalidArgumentError(TypeMismatch(*this, "a string"));
}

absl::StatusOr<bool> GgufValue::AsBool() const {
  if (const auto* b = std::get_if<bool>(&value)) return *b;
  return absl::InvalidArgumentError(TypeMismatch(*this, "a bool"));
}

namespace {

template <typename T, typename Convert>
absl::StatusOr<std::vector<T>> ConvertArray(const GgufValue& v, const char* expected,
                                            Convert convert) {
  const auto* array = std::get_if<std::shared_ptr<GgufValue::Array>>(&v.value);
  if (array == nullptr) return absl::InvalidArgumentError(TypeMismatch(v, expected));
  std::vector<T> out;
  out.reserve((*array)->size());
  for (const GgufValue& element : **array) {
    auto converted = convert(element);
    if (!converted.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "array element: ", converted.status().message(), " (expected ", expected, ")"));
    }
    out.push_back(*std::move(converted));
  }
  return out;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> GgufValue::AsStringArray() const {
  return ConvertArray<std::string>(*this, "an array of strings",
                                   [](const GgufValue& e) { return e.AsString(); });
}

absl::StatusOr<std::vector<int64_t>> GgufValue::AsIntArray() const {
  return ConvertArray<int64_t>(*this, "an array of integers",
                               [](const GgufValue& e) { return e.AsInt(); });
}

absl::StatusOr<std::vector<double>> GgufValue::AsDoubleArray() const {
  return ConvertArray<double>(*this, "an array of numbers",
                              [](const GgufValue& e) { return e.AsDouble(); });
}

std::string GgufValue::ToShortString() const {
  constexpr size_t kMaxStringBytes = 64;
  constexpr size_t kMaxArrayElements = 8;
  if (const auto* u = std::get_if<uint64_t>(&value)) return absl::StrCat(*u);
  if (const auto* i = std::get_if<int64_t>(&value)) return absl::StrCat(*i);
  if (const auto* d = std::get_if<double>(&value)) return absl::StrCat(*d);
  if (const auto* b = std::get_if<bool>(&value)) return *b ? "true" : "false";
  if (const auto* s = std::get_if<std::string>(&value)) {
    return absl::StrCat("\"", Abbreviate(*s, kMaxStringBytes), "\"");
  }
  const GgufValue::Array& array = *std::get<std::shared_ptr<GgufValue::Array>>(value);
  if (array.size() > kMaxArrayElements) {
    return absl::StrCat("[", array.size(), " ", GgufValueTypeName(element_type), "s]");
  }
  std::vector<std::string> parts;
  for (const GgufValue& element : array) parts.push_back(element.ToShortString());
  return absl::StrCat("[", absl::StrJoin(parts, ", "), "]");
}

// ---- GgufFile -----------------------------------------------------------------------------------

std::vector<int64_t> GgufTensorInfo::Shape() const { return {dims.rbegin(), dims.rend()}; }

absl::StatusOr<std::unique_ptr<GgufFile>> GgufFile::Open(const std::string& path) {
  ASSIGN_OR_RETURN(std::shared_ptr<MappedFile> file, MappedFile::Open(path));
  std::unique_ptr<GgufFile> gguf(new GgufFile());
  gguf->file_ = std::move(file);
  RETURN_IF_ERROR(gguf->Parse());
  return gguf;
}

absl::Status GgufFile::Parse() {
  const std::string& path = file_->path();
  const std::span<const uint8_t> bytes = file_->bytes();
  if (bytes.size() < 4 || std::memcmp(bytes.data(), "GGUF", 4) != 0) {
    return Invalid(path, "not a GGUF file (it does not start with the magic \"GGUF\")");
  }
  Cursor cursor(bytes, path);
  RETURN_IF_ERROR(cursor.Read<uint32_t>("magic").status());
  ASSIGN_OR_RETURN(version_, cursor.Read<uint32_t>("version"));
  if (version_ == 1) {
    return Invalid(path,
                   "GGUF version 1 is not supported (it uses 32-bit counts; lorasweep reads "
                   "versions 2 and 3: re-convert the model with a current llama.cpp)");
  }
  if (version_ != 2 && version_ != 3) {
    const uint32_t swapped = __builtin_bswap32(version_);
    if (swapped >= 1 && swapped <= 3) {
      return Invalid(path, "big-endian GGUF files are not supported (version field ", version_,
                     ")");
    }
    return Invalid(path, "unsupported GGUF version ", version_, " (lorasweep reads 2 and 3)");
  }
  ASSIGN_OR_RETURN(const uint64_t tensor_count, cursor.Read<uint64_t>("tensor count"));
  ASSIGN_OR_RETURN(const uint64_t kv_count, cursor.Read<uint64_t>("metadata count"));
  {
    const uint64_t left = cursor.remaining();
    if (kv_count > left / kMinMetadataEntryBytes || tensor_count > left / kMinTensorInfoBytes ||
        kv_count * kMinMetadataEntryBytes + tensor_count * kMinTensorInfoBytes > left) {
      return Invalid(path, "the header announces ", kv_count, " metadata entries and ",
                     tensor_count, " tensors, which cannot fit in the ", left,
                     " bytes that follow");
    }
  }

  uint64_t budget = kMaxMetadataValues;
  for (uint64_t i = 0; i < kv_count; ++i) {
    ASSIGN_OR_RETURN(std::string key, cursor.ReadString(absl::StrCat("key of metadata entry ", i)));
    const std::string what = absl::StrCat("metadata '", key, "'");
    ASSIGN_OR_RETURN(const uint32_t type, cursor.Read<uint32_t>(what));
    ASSIGN_OR_RETURN(GgufValue value, ReadValue(cursor, type, what, 0, budget));
    if (!metadata_.emplace(key, std::move(value)).second) {
      return Invalid(path, "duplicate metadata key '", key, "'");
    }
  }

  alignment_ = kDefaultAlignment;
  if (auto it = metadata_.find("general.alignment"); it != metadata_.end()) {
    const absl::StatusOr<int64_t> alignment = it->second.AsInt();
    if (!alignment.ok() || *alignment <= 0 ||
        !std::has_single_bit(static_cast<uint64_t>(*alignment))) {
      return Invalid(path, "general.alignment must be a positive power of two, got ",
                     GgufValueTypeName(it->second.type), " ", it->second.ToShortString());
    }
    alignment_ = static_cast<uint64_t>(*alignment);
  }

  tensors_.reserve(tensor_count);
  for (uint64_t i = 0; i < tensor_count; ++i) {
    GgufTensorInfo info;
    ASSIGN_OR_RETURN(info.name, cursor.ReadString(absl::StrCat("name of tensor ", i)));
    const std::string what = absl::StrCat("tensor '", info.name, "'");
    ASSIGN_OR_RETURN(const uint32_t n_dims, cursor.Read<uint32_t>(what));
    if (n_dims == 0 || n_dims > kMaxDims) {
      return Invalid(path, what, " has ", n_dims, " dimensions (1 to ", kMaxDims, " allowed)");
    }
    int64_t elements = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      ASSIGN_OR_RETURN(const uint64_t dim, cursor.Read<uint64_t>(what));
      if (dim == 0 || dim > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Invalid(path, what, " has dimension ", d, " of size ", dim);
      }
      if (elements > std::numeric_limits<int64_t>::max() / static_cast<int64_t>(dim)) {
        return Invalid(path, what, ": the element count overflows 64 bits");
      }
      elements *= static_cast<int64_t>(dim);
      info.dims.push_back(static_cast<int64_t>(dim));
    }
    ASSIGN_OR_RETURN(const uint32_t type_id, cursor.Read<uint32_t>(what));
    info.type = static_cast<GgmlType>(type_id);
    const TypeTraits* traits = FindReadableType(info.type);
    if (traits == nullptr) {
      return Invalid(path, what, " has ggml type ", TypeDescription(info.type),
                     ", which lorasweep cannot read (supported: ", ReadableTypeList(), ")");
    }
    // ggml quantizes each row separately, so every row must consist of whole blocks.
    if (info.dims[0] % traits->block_elements != 0) {
      return Invalid(path, what, " of type ", GgmlTypeName(info.type), ": row length ",
                     info.dims[0], " is not a multiple of the block size ", traits->block_elements);
    }
    absl::StatusOr<uint64_t> byte_size = GgmlByteSize(info.type, elements);
    if (!byte_size.ok()) return Invalid(path, what, ": ", byte_size.status().message());
    info.byte_size = *byte_size;
    ASSIGN_OR_RETURN(info.offset, cursor.Read<uint64_t>(what));
    if (!tensor_index_.emplace(info.name, tensors_.size()).second) {
      return Invalid(path, "duplicate tensor name '", info.name, "'");
    }
    tensors_.push_back(std::move(info));
  }

  // The data section starts at the next multiple of the alignment; a file without tensors may end
  // before it. No overflow: the position is at most the file size and the alignment below 2^63.
  const uint64_t end_of_infos = cursor.pos();
  data_offset_ = end_of_infos + (alignment_ - end_of_infos % alignment_) % alignment_;
  const uint64_t file_size = bytes.size();
  for (const GgufTensorInfo& t : tensors_) {
    if (t.offset % alignment_ != 0) {
      return Invalid(path, "tensor '", t.name, "' offset ", t.offset,
                     " is not a multiple of the alignment ", alignment_);
    }
    if (data_offset_ > file_size || t.offset > file_size - data_offset_ ||
        t.byte_size > file_size - data_offset_ - t.offset) {
      return Invalid(path, "tensor '", t.name, "' (", t.byte_size, " bytes at data offset ",
                     t.offset, ") extends past the end of the file (data section at byte ",
                     data_offset_, ", file size ", file_size, ")");
    }
  }
  std::vector<size_t> order(tensors_.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return tensors_[a].offset < tensors_[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensorInfo& prev = tensors_[order[i - 1]];
    const GgufTensorInfo& cur = tensors_[order[i]];
    // Both ranges lie inside the file (checked above), so the sum cannot overflow.
    if (prev.offset + prev.byte_size > cur.offset) {
      return Invalid(path, "tensors '", prev.name, "' (data offset ", prev.offset, ", ",
                     prev.byte_size, " bytes) and '", cur.name, "' (data offset ", cur.offset,
                     ") overlap");
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<const GgufValue*> GgufFile::Find(const std::string& key) const {
  auto it = metadata_.find(key);
  if (it == metadata_.end()) {
    return absl::NotFoundError(absl::StrCat("GGUF file ", path(), ": no metadata key '", key, "'"));
  }
  return &it->second;
}

absl::StatusOr<const GgufTensorInfo*> GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  if (it == tensor_index_.end()) {
    return absl::NotFoundError(absl::StrCat("GGUF file ", path(), ": no tensor '", name, "'"));
  }
  return &tensors_[it->second];
}

absl::StatusOr<Tensor> GgufFile::GetRaw(const std::string& name) const {
  ASSIGN_OR_RETURN(const GgufTensorInfo* info, FindTensor(name));
  const std::span<const uint8_t> bytes =
      file_->bytes().subspan(data_offset_ + info->offset, info->byte_size);
  return Tensor::View(GgmlTypeToDType(info->type), info->Shape(), bytes, file_);
}

absl::StatusOr<std::vector<float>> GgufFile::GetFloats(const std::string& name) const {
  ASSIGN_OR_RETURN(const GgufTensorInfo* info, FindTensor(name));
  int64_t count = 1;
  for (int64_t d : info->dims) count *= d;  // validated not to overflow when the file was opened
  std::vector<float> out(static_cast<size_t>(count));
  const absl::Status status =
      DequantizeGgml(info->type, file_->bytes().data() + data_offset_ + info->offset,
                     info->byte_size, count, out.data());
  if (!status.ok()) return Invalid(path(), "tensor '", name, "': ", status.message());
  return out;
}

}  // namespace lorasweep

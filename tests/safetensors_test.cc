// Tests of the safetensors reader/writer against files written by the reference Python library
// (tests/python/make_safetensors_fixtures.py) and values that script recorded independently.
#include "worker/formats/safetensors.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/file_util.h"
#include "common/tensor.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

const std::string kDataDir = std::string(LORASWEEP_TEST_DATA_DIR) + "/safetensors";

std::string ReadAll(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : std::string();
}

void WriteAll(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

json LoadJson(const std::string& path) {
  json parsed = json::parse(ReadAll(path), nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << path;
  return parsed;
}

std::string HexToBytes(const std::string& hex) {
  std::string out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

std::string AsString(std::span<const uint8_t> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::string LittleEndian64(uint64_t v) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  return out;
}

// A safetensors file from a header text and a data section, exactly as given (no padding).
std::string MakeFile(const std::string& header, const std::string& data) {
  return LittleEndian64(header.size()) + header + data;
}

// The float the Python script recorded: a number, or "nan" / "inf" / "-inf".
float ExpectedFloat(const json& v) {
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "nan") return std::numeric_limits<float>::quiet_NaN();
    return s == "inf" ? std::numeric_limits<float>::infinity()
                      : -std::numeric_limits<float>::infinity();
  }
  return static_cast<float>(v.get<double>());
}

void ExpectSameFloat(float expected, float actual, const std::string& where) {
  if (std::isnan(expected)) {
    EXPECT_TRUE(std::isnan(actual)) << where;
    return;
  }
  EXPECT_EQ(expected, actual) << where;
  EXPECT_EQ(std::signbit(expected), std::signbit(actual)) << where;
}

// Every tensor `source` holds must match the script's record: dtype, shape, raw bytes, floats.
void ExpectMatchesRecord(const TensorSource& source, const json& record) {
  std::vector<TensorInfo> infos = source.List();
  ASSERT_EQ(infos.size(), record.size());
  auto record_it = record.begin();  // nlohmann sorts keys, as List() does
  for (const TensorInfo& info : infos) {
    SCOPED_TRACE(info.name);
    ASSERT_EQ(info.name, record_it.key());
    const json& want = record_it.value();
    EXPECT_STREQ(DTypeName(info.dtype), want["dtype"].get<std::string>().c_str());
    EXPECT_EQ(info.shape, want["shape"].get<std::vector<int64_t>>());
    EXPECT_TRUE(source.Contains(info.name));
    absl::StatusOr<Tensor> tensor = source.Get(info.name);
    ASSERT_TRUE(tensor.ok()) << tensor.status();
    EXPECT_EQ(tensor->dtype(), info.dtype);
    EXPECT_EQ(tensor->shape(), info.shape);
    EXPECT_EQ(AsString(tensor->bytes()), HexToBytes(want["hex"].get<std::string>()));
    absl::StatusOr<std::vector<float>> floats = source.GetFloats(info.name);
    ASSERT_TRUE(floats.ok()) << floats.status();
    ASSERT_EQ(floats->size(), want["floats"].size());
    for (size_t i = 0; i < floats->size(); ++i) {
      ExpectSameFloat(ExpectedFloat(want["floats"][i]), (*floats)[i],
                      info.name + "[" + std::to_string(i) + "]");
    }
    ++record_it;
  }
}

template <typename T>
Tensor Make(DType dtype, std::vector<int64_t> shape, const std::vector<T>& values) {
  Tensor t = Tensor::Allocate(dtype, std::move(shape));
  EXPECT_EQ(t.bytes().size(), values.size() * sizeof(T));
  if (!values.empty())
    std::memcpy(t.MutableBytes().data(), values.data(), values.size() * sizeof(T));
  return t;
}

Tensor F32(std::vector<int64_t> shape, const std::vector<float>& values) {
  return Tensor::FromFloats(std::move(shape), values);
}

// The tensors of make_safetensors_fixtures.py's byte_identity_tensors(), rebuilt from the same
// arithmetic patterns.
NamedTensors ByteIdentityTensors() {
  std::vector<uint16_t> f16;
  for (int i = 0; i < 5; ++i) f16.push_back(FloatToF16(static_cast<float>(i - 2)));
  return {
      {"b.weight", F32({2, 3}, {0.0f, 0.25f, 0.5f, 0.75f, 1.0f, 1.25f})},
      {"a.weight", Make<uint16_t>(DType::kF16, {5}, f16)},
      {"model.embed", Make<int64_t>(DType::kI64, {2, 2}, {0, 1000, 2000, 3000})},
      {"c.bias", Make<double>(DType::kF64, {2}, {1.5, -2.0})},
      {"ids", Make<int32_t>(DType::kI32, {3}, {-1, 0, 1})},
      {"ids.small", Make<int16_t>(DType::kI16, {3}, {7, 8, 9})},
      {"q", Make<int8_t>(DType::kI8, {2}, {-3, 4})},
      {"mask", Make<uint8_t>(DType::kBool, {3}, {1, 0, 1})},
      {"raw", Make<uint8_t>(DType::kU8, {7}, {0, 1, 2, 3, 4, 5, 6})},
      {"z\xc3\xa9 \"q\"\\\n\x01/", F32({1}, {9.0f})},
      {"scalar", F32({}, {0.5f})},
      {"none", F32({2, 0}, {})},
  };
}

// Tensors from a record of the Python script, in the order it gave them.
NamedTensors TensorsFromRecord(const json& expected) {
  NamedTensors out;
  for (const json& name : expected["order"]) {
    const json& rec = expected["tensors"][name.get<std::string>()];
    const std::string bytes = HexToBytes(rec["hex"].get<std::string>());
    Tensor t = Tensor::Allocate(*DTypeFromSafetensorsName(rec["dtype"].get<std::string>()),
                                rec["shape"].get<std::vector<int64_t>>(), bytes.size());
    std::memcpy(t.MutableBytes().data(), bytes.data(), bytes.size());
    out.emplace_back(name.get<std::string>(), t);
  }
  return out;
}

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "safetensors_test.XXXXXX").string();
    ASSERT_NE(::mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string Path(const std::string& name) const { return (fs::path(dir_) / name).string(); }

  std::set<std::string> Listing(const std::string& dir) const {
    std::set<std::string> names;
    for (const auto& entry : fs::directory_iterator(dir)) names.insert(entry.path().filename());
    return names;
  }

  // Writes `bytes` to a fresh file and opens it.
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> OpenBytes(const std::string& bytes,
                                                             std::string* path) {
    *path = Path("case.safetensors");
    WriteAll(*path, bytes);
    return SafetensorsFile::Open(*path);
  }

  static void ExpectInvalid(const absl::Status& status, const std::string& path,
                            const std::string& problem) {
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << status;
    EXPECT_THAT(std::string(status.message()), HasSubstr(path));
    EXPECT_THAT(std::string(status.message()), HasSubstr(problem));
  }

  std::string dir_;
};

// ---- Reading files written by the reference library
// ----------------------------------------------

TEST_F(SafetensorsTest, ReadsEveryDtypeFromPythonFile) {
  const json expected = LoadJson(kDataDir + "/multi_dtype.expected.json");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(kDataDir + "/multi_dtype.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  ExpectMatchesRecord(**file, expected["tensors"]);
  EXPECT_EQ((*file)->Describe(), kDataDir + "/multi_dtype.safetensors");
}

TEST_F(SafetensorsTest, ReadsMetadataFromPythonFile) {
  const json expected = LoadJson(kDataDir + "/multi_dtype.expected.json");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file =
      SafetensorsFile::Open(kDataDir + "/multi_dtype.safetensors");
  ASSERT_TRUE(file.ok()) << file.status();
  using StringMap = std::map<std::string, std::string>;
  EXPECT_EQ((*file)->metadata(), expected["metadata"].get<StringMap>());
  EXPECT_EQ((*file)->metadata().at("note"), "lorasweep fixture \xc3\xbc \"quoted\"");
}

TEST_F(SafetensorsTest, MissingTensorIsNotFound) {
  const std::string path = kDataDir + "/multi_dtype.safetensors";
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE((*file)->Contains("nope"));
  absl::StatusOr<Tensor> t = (*file)->Get("nope");
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("nope"));
  EXPECT_EQ((*file)->GetFloats("nope").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(SafetensorsTest, TensorViewsOutliveTheFileObject) {
  const std::string copy = Path("copy.safetensors");
  fs::copy_file(kDataDir + "/multi_dtype.safetensors", copy);
  Tensor tensor;
  {
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(copy);
    ASSERT_TRUE(file.ok()) << file.status();
    absl::StatusOr<Tensor> t = (*file)->Get("i32.vec");
    ASSERT_TRUE(t.ok()) << t.status();
    tensor = *t;
  }
  fs::remove(copy);  // the mapping stays valid after unlink and after the reader is gone
  ASSERT_EQ(tensor.data<int32_t>().size(), 5u);
  EXPECT_EQ(tensor.data<int32_t>()[0], std::numeric_limits<int32_t>::min());
  EXPECT_EQ(tensor.data<int32_t>()[4], std::numeric_limits<int32_t>::max());
}

TEST_F(SafetensorsTest, ReadsShardedCheckpointFolder) {
  const json expected = LoadJson(kDataDir + "/sharded.expected.json");
  const std::string folder = kDataDir + "/sharded";
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(folder);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_EQ((*ckpt)->Describe(), folder);
  ExpectMatchesRecord(**ckpt, expected["tensors"]);
  EXPECT_FALSE((*ckpt)->Contains("nope"));
  absl::StatusOr<Tensor> missing = (*ckpt)->Get("nope");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(folder));
}

TEST_F(SafetensorsTest, OpensCheckpointFromIndexFileOrSingleFile) {
  const json sharded = LoadJson(kDataDir + "/sharded.expected.json");
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> by_index =
      SafetensorsCheckpoint::Open(kDataDir + "/sharded/model.safetensors.index.json");
  ASSERT_TRUE(by_index.ok()) << by_index.status();
  ExpectMatchesRecord(**by_index, sharded["tensors"]);

  const json multi = LoadJson(kDataDir + "/multi_dtype.expected.json");
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> single =
      SafetensorsCheckpoint::Open(kDataDir + "/multi_dtype.safetensors");
  ASSERT_TRUE(single.ok()) << single.status();
  ExpectMatchesRecord(**single, multi["tensors"]);

  fs::copy_file(kDataDir + "/multi_dtype.safetensors", Path("model.safetensors"));
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> folder = SafetensorsCheckpoint::Open(dir_);
  ASSERT_TRUE(folder.ok()) << folder.status();
  ExpectMatchesRecord(**folder, multi["tensors"]);
}

// ---- Malformed files: each must fail cleanly with the path and the problem
// -----------------------

TEST_F(SafetensorsTest, RejectsFilesShorterThanTheLengthField) {
  for (size_t size : {0, 1, 7}) {
    std::string path;
    auto file = OpenBytes(std::string(size, '\0'), &path);
    ExpectInvalid(file.status(), path, "shorter than 8 bytes");
  }
}

TEST_F(SafetensorsTest, RejectsHeaderLengthPastTheEnd) {
  std::string bytes = ReadAll(kDataDir + "/multi_dtype.safetensors");
  const uint64_t too_long = bytes.size() - 8 + 1;
  bytes.replace(0, 8, LittleEndian64(too_long));
  std::string path;
  auto file = OpenBytes(bytes, &path);
  ExpectInvalid(file.status(), path, "runs past the end of the file");
}

TEST_F(SafetensorsTest, RejectsAbsurdHeaderLength) {
  for (uint64_t n : {uint64_t{100'000'001}, uint64_t{1} << 63, ~uint64_t{0}}) {
    std::string path;
    auto file = OpenBytes(LittleEndian64(n) + "{}", &path);
    ExpectInvalid(file.status(), path, "exceeds the limit");
  }
}

TEST_F(SafetensorsTest, MissingFileNamesThePath) {
  const std::string path = Path("absent.safetensors");
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path));
}

struct BadHeader {
  std::string name;
  std::string header;
  size_t data_size;
  std::string problem;
};

void PrintTo(const BadHeader& c, std::ostream* os) { *os << c.name; }

class MalformedHeaderTest : public SafetensorsTest,
                            public ::testing::WithParamInterface<BadHeader> {};

TEST_P(MalformedHeaderTest, IsRejectedWithAClearMessage) {
  const BadHeader& c = GetParam();
  std::string path;
  auto file = OpenBytes(MakeFile(c.header, std::string(c.data_size, '\x11')), &path);
  ExpectInvalid(file.status(), path, c.problem);
}

const char kF32x2[] = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";

std::vector<BadHeader> BadHeaders() {
  const std::string t = kF32x2;
  return {
      {"NotJson", R"({"t":)", 0, "header is not valid JSON"},
      {"TrailingGarbage", "{" + t + "}x", 8, "header is not valid JSON"},
      {"NulPadding", "{" + t + std::string("}\0\0\0", 4), 8, "header is not valid JSON"},
      {"InvalidUtf8", "{\"t\xff\":1}", 0, "header is not valid JSON"},
      {"NotAnObject", "[]", 0, "header is not a JSON object"},
      {"EntryNotObject", R"({"t":5})", 0, "tensor \"t\": entry is not a JSON object"},
      {"MissingDtype", R"({"t":{"shape":[2],"data_offsets":[0,8]}})", 8, "missing \"dtype\""},
      {"DtypeNotString", R"({"t":{"dtype":4,"shape":[2],"data_offsets":[0,8]}})", 8,
       "\"dtype\" is not a string"},
      {"UnknownDtype", R"({"t":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}})", 2,
       "unknown dtype \"F8_E4M3\""},
      {"LowercaseDtype", R"({"t":{"dtype":"f32","shape":[2],"data_offsets":[0,8]}})", 8,
       "unknown dtype \"f32\""},
      {"BlockDtype", R"({"t":{"dtype":"Q4_0","shape":[32],"data_offsets":[0,18]}})", 18,
       "unknown dtype \"Q4_0\""},
      {"MissingShape", R"({"t":{"dtype":"F32","data_offsets":[0,8]}})", 8, "missing \"shape\""},
      {"ShapeNotArray", R"({"t":{"dtype":"F32","shape":2,"data_offsets":[0,8]}})", 8,
       "\"shape\" is not an array"},
      {"NegativeDim", R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8,
       "not a non-negative integer"},
      {"FractionalDim", R"({"t":{"dtype":"F32","shape":[2.0],"data_offsets":[0,8]}})", 8,
       "not a non-negative integer"},
      {"StringDim", R"({"t":{"dtype":"F32","shape":["2"],"data_offsets":[0,8]}})", 8,
       "not a non-negative integer"},
      {"HugeDim", R"({"t":{"dtype":"F32","shape":[9223372036854775808,0],"data_offsets":[0,0]}})",
       0, "is too large"},
      {"DimBeyondUint64",
       R"({"t":{"dtype":"F32","shape":[18446744073709551616],"data_offsets":[0,8]}})", 8,
       "not a non-negative integer"},
      {"ShapeOverflow",
       R"({"t":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}})", 8,
       "overflows"},
      {"ElementSizeOverflow",
       R"({"t":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,8]}})", 8,
       "overflows"},
      {"OverflowBeforeZeroDim",
       R"({"t":{"dtype":"U8","shape":[4294967296,4294967296,0],"data_offsets":[0,0]}})", 0,
       "overflows"},
      {"MissingOffsets", R"({"t":{"dtype":"F32","shape":[2]}})", 8, "missing \"data_offsets\""},
      {"OneOffset", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8]}})", 8,
       "is not [begin, end]"},
      {"ThreeOffsets", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8,8]}})", 8,
       "is not [begin, end]"},
      {"NegativeOffset", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[-1,7]}})", 8,
       "is not [begin, end]"},
      {"StringOffset", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":["0",8]}})", 8,
       "is not [begin, end]"},
      {"OffsetsNotArray", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":{"a":0}}})", 8,
       "is not [begin, end]"},
      {"BeginAfterEnd", R"({"t":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8,
       "has begin > end"},
      {"SizeMismatch", R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8,
       "needs 12 bytes but data_offsets [0,8] hold 8"},
      {"PastDataEnd", R"({"t":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8,
       "run past the end of the data section (8 bytes)"},
      {"Overlap",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
       12, "tensor \"b\" bytes [4, 12) overlap tensor \"a\" bytes [0, 8)"},
      {"SameRange",
       R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I32","shape":[2],"data_offsets":[0,8]}})",
       8, "overlap"},
      {"Gap",
       R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
       12, "data bytes [4, 8) are not covered by any tensor (a gap before tensor \"b\")"},
      {"NotFromZero", R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12,
       "data bytes [0, 4) are not covered"},
      {"TrailingData", "{" + t + "}", 12,
       "data bytes [8, 12) after the last tensor are not covered"},
      {"DataWithoutTensors", "{}", 4, "data bytes [0, 4) after the last tensor"},
      {"MetadataNotObject", "{\"__metadata__\":[1]," + t + "}", 8,
       "__metadata__ is not a JSON object"},
      {"MetadataValueNotString", "{\"__metadata__\":{\"k\":1}," + t + "}", 8,
       "__metadata__ value for \"k\" is not a string"},
      {"DuplicateTensor", "{" + t + "," + t + "}", 8,
       "duplicate key \"t\" (a tensor name given twice)"},
      {"DuplicateField", R"({"t":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})",
       8, "duplicate key \"dtype\""},
      {"DuplicateMetadataKey", "{\"__metadata__\":{\"k\":\"a\",\"k\":\"b\"}," + t + "}", 8,
       "duplicate key \"k\""},
      {"TooDeep", "{\"x\":" + std::string(100, '[') + std::string(100, ']') + "}", 0,
       "nested deeper than 64 levels"},
  };
}

INSTANTIATE_TEST_SUITE_P(Cases, MalformedHeaderTest, ::testing::ValuesIn(BadHeaders()),
                         [](const ::testing::TestParamInfo<BadHeader>& info) {
                           return info.param.name;
                         });

TEST_F(SafetensorsTest, AcceptsEdgeCasesTheReferenceAccepts) {
  std::string path;
  // No tensors at all.
  auto empty = OpenBytes(MakeFile("{}", ""), &path);
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_TRUE((*empty)->List().empty());
  // Null metadata, surrounding whitespace, unknown extra fields, zero-size tensors sharing an
  // offset.
  const std::string header =
      R"(  {"__metadata__":null,"z":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},)"
      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":true},)"
      R"("a":{"dtype":"I8","shape":[3,0],"data_offsets":[8,8]}}   )";
  auto edge = OpenBytes(MakeFile(header, std::string(8, '\0')), &path);
  ASSERT_TRUE(edge.ok()) << edge.status();
  EXPECT_TRUE((*edge)->metadata().empty());
  std::vector<TensorInfo> infos = (*edge)->List();
  ASSERT_EQ(infos.size(), 3u);
  EXPECT_EQ(infos[0].name, "a");
  EXPECT_EQ(infos[0].shape, (std::vector<int64_t>{3, 0}));
  absl::StatusOr<std::vector<float>> zeros = (*edge)->GetFloats("b");
  ASSERT_TRUE(zeros.ok()) << zeros.status();
  EXPECT_EQ(*zeros, (std::vector<float>{0.0f, 0.0f}));
}

TEST_F(SafetensorsTest, MisalignedDataIsCopiedNotViewed) {
  // Pad the header so that the data starts one byte past a multiple of 4, misaligned for F32.
  std::string header = R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
  header.append((4 + 1 - (8 + header.size()) % 4) % 4, ' ');
  ASSERT_EQ((8 + header.size()) % 4, 1u);
  const float values[2] = {1.5f, -3.25f};
  std::string data(reinterpret_cast<const char*>(values), sizeof(values));
  std::string bytes = MakeFile(header, data);
  std::string path;
  auto file = OpenBytes(bytes, &path);
  ASSERT_TRUE(file.ok()) << file.status();
  absl::StatusOr<Tensor> t = (*file)->Get("t");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(t->bytes().data()) % alignof(float), 0u);
  ASSERT_EQ(t->data<float>().size(), 2u);
  EXPECT_EQ(t->data<float>()[0], 1.5f);
  EXPECT_EQ(t->data<float>()[1], -3.25f);
}

// Random damage must never crash the reader: every outcome is a tensor set or a clear error.
TEST_F(SafetensorsTest, SurvivesEveryByteFlipAndTruncation) {
  const std::string original = ReadAll(kDataDir + "/multi_dtype.safetensors");
  const std::string path = Path("fuzz.safetensors");
  WriteAll(path, original);
  // Damage the file in place with pwrite/ftruncate: rewriting it each time is slow on ext4.
  const int fd = ::open(path.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  auto put = [&](size_t i, char c) { ASSERT_EQ(::pwrite(fd, &c, 1, static_cast<off_t>(i)), 1); };
  int rejected = 0;
  for (size_t i = 0; i < original.size(); ++i) {
    for (uint8_t flip : {0x01, 0x20, 0x80, 0xFF}) {
      put(i, static_cast<char>(original[i] ^ flip));
      absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
      if (file.ok()) {
        for (const TensorInfo& info : (*file)->List()) {
          ASSERT_TRUE((*file)->Get(info.name).ok());
          ASSERT_TRUE((*file)->GetFloats(info.name).ok());
        }
      } else {
        ++rejected;
        ASSERT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument)
            << "byte " << i << ": " << file.status();
        ASSERT_THAT(std::string(file.status().message()), HasSubstr(path));
      }
    }
    put(i, original[i]);
  }
  EXPECT_GT(rejected, 100);
  for (size_t size = original.size(); size-- > 0;) {
    ASSERT_EQ(::ftruncate(fd, static_cast<off_t>(size)), 0);
    absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
    ASSERT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << "size " << size;
  }
  ::close(fd);
}

// ---- Writer -------------------------------------------------------------------------------------

TEST_F(SafetensorsTest, WriterMatchesPythonSaveFileByteForByte) {
  const NamedTensors tensors = ByteIdentityTensors();
  const std::string with_metadata = Path("with.safetensors");
  ASSERT_TRUE(WriteSafetensors(with_metadata, tensors, {{"format", "np"}}).ok());
  EXPECT_EQ(ReadAll(with_metadata), ReadAll(kDataDir + "/numpy_save_file.safetensors"));

  const std::string without = Path("without.safetensors");
  ASSERT_TRUE(WriteSafetensors(without, tensors).ok());
  EXPECT_EQ(ReadAll(without), ReadAll(kDataDir + "/numpy_save_file_no_metadata.safetensors"));

  // The layout depends on names and dtypes only, not on the order the caller gives.
  NamedTensors reversed(tensors.rbegin(), tensors.rend());
  const std::string shuffled = Path("reversed.safetensors");
  ASSERT_TRUE(WriteSafetensors(shuffled, reversed, {{"format", "np"}}).ok());
  EXPECT_EQ(ReadAll(shuffled), ReadAll(kDataDir + "/numpy_save_file.safetensors"));
}

TEST_F(SafetensorsTest, WriterRoundTripsEveryDtypeAndMetadata) {
  std::vector<uint16_t> bf16 = {FloatToBf16(1.0f), FloatToBf16(-2.5f), FloatToBf16(1e-20f)};
  const NamedTensors tensors = {
      {"bf16", Make<uint16_t>(DType::kBF16, {3}, bf16)},
      {"f32", F32({2, 2}, {1.0f, -0.0f, 3.5f, 1e30f})},
      {"i64", Make<int64_t>(DType::kI64, {1}, {-(int64_t{1} << 40)})},
      {"u8", Make<uint8_t>(DType::kU8, {2}, {0, 255})},
  };
  const std::map<std::string, std::string> metadata = {
      {"z", "last"}, {"format", "pt"}, {"quote\"and\\slash", "line\nbreak \xe2\x82\xac"}};
  const std::string path = Path("round.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, tensors, metadata).ok());
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  ASSERT_EQ((*file)->List().size(), tensors.size());
  for (const auto& [name, tensor] : tensors) {
    absl::StatusOr<Tensor> got = (*file)->Get(name);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(got->dtype(), tensor.dtype()) << name;
    EXPECT_EQ(got->shape(), tensor.shape()) << name;
    EXPECT_EQ(AsString(got->bytes()), AsString(tensor.bytes())) << name;
    // Every tensor starts aligned to its element size in the file.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got->bytes().data()) % DTypeSize(tensor.dtype()), 0u);
  }
  absl::StatusOr<std::vector<float>> floats = (*file)->GetFloats("bf16");
  ASSERT_TRUE(floats.ok());
  EXPECT_EQ((*floats)[1], -2.5f);

  // Several metadata keys come out sorted, so repeated writes are identical.
  const std::string bytes = ReadAll(path);
  EXPECT_THAT(bytes,
              HasSubstr(R"({"__metadata__":{"format":"pt","quote\"and\\slash":"line\nbreak )"));
  ASSERT_TRUE(WriteSafetensors(Path("again.safetensors"), tensors, metadata).ok());
  EXPECT_EQ(ReadAll(Path("again.safetensors")), bytes);
}

TEST_F(SafetensorsTest, WriterRejectsBadInputs) {
  const std::string path = Path("bad.safetensors");
  struct Case {
    NamedTensors tensors;
    std::string problem;
  };
  Tensor short_bytes = Tensor::Allocate(DType::kF32, {3}, 8);
  Tensor q4 = Tensor::Allocate(DType::kQ4_0, {32}, 18);
  Tensor negative = Tensor::Allocate(DType::kF32, {-1}, 0);
  const std::vector<Case> cases = {
      {{{"a", F32({1}, {1})}, {"a", F32({1}, {2})}}, "tensor name \"a\" given twice"},
      {{{"a", short_bytes}}, "needs 12 bytes but the tensor holds 8"},
      {{{"q", q4}}, "block-quantized dtype Q4_0"},
      {{{"n", negative}}, "negative dimension"},
      {{{"__metadata__", F32({1}, {1})}}, "reserved for the metadata"},
      {{{"bad\xff", F32({1}, {1})}}, "name is not valid UTF-8"},
  };
  for (const Case& c : cases) {
    absl::Status status = WriteSafetensors(path, c.tensors);
    ExpectInvalid(status, path, c.problem);
    EXPECT_FALSE(fs::exists(path));
  }
  ExpectInvalid(WriteSafetensors(path, {{"a", F32({1}, {1})}}, {{"k", "\xc0\x80"}}), path,
                "metadata entry \"k\" is not valid UTF-8");
  EXPECT_TRUE(Listing(dir_).empty());
}

TEST_F(SafetensorsTest, AtomicWriteLeavesNoTempFilesAndFailuresKeepTheOldFile) {
  const std::string path = Path("model.safetensors");
  ASSERT_TRUE(WriteSafetensors(path, {{"w", F32({2}, {1, 2})}}).ok());
  EXPECT_EQ(Listing(dir_), (std::set<std::string>{"model.safetensors"}));
  const std::string old_bytes = ReadAll(path);

  // Rejected input: nothing is written.
  EXPECT_FALSE(WriteSafetensors(path, {{"w", F32({1}, {1})}, {"w", F32({1}, {1})}}).ok());
  EXPECT_EQ(ReadAll(path), old_bytes);
  EXPECT_EQ(Listing(dir_), (std::set<std::string>{"model.safetensors"}));

  // A failure after the temporary file exists (rename onto a non-empty folder) removes it.
  const std::string blocked = Path("blocked.safetensors");
  fs::create_directories(fs::path(blocked) / "inside");
  EXPECT_FALSE(WriteSafetensors(blocked, {{"w", F32({1}, {1})}}).ok());
  EXPECT_EQ(Listing(dir_), (std::set<std::string>{"model.safetensors", "blocked.safetensors"}));

  // Writing into a missing folder fails and creates nothing.
  EXPECT_FALSE(WriteSafetensors(Path("missing/x.safetensors"), {{"w", F32({1}, {1})}}).ok());
  EXPECT_FALSE(fs::exists(Path("missing")));

  // A successful overwrite replaces the bytes.
  ASSERT_TRUE(WriteSafetensors(path, {{"w", F32({2}, {3, 4})}}).ok());
  EXPECT_NE(ReadAll(path), old_bytes);
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok());
  EXPECT_EQ(*(*file)->GetFloats("w"), (std::vector<float>{3, 4}));
}

// ---- Checkpoints --------------------------------------------------------------------------------

TEST_F(SafetensorsTest, ShardedWriteMatchesTransformersByteForByte) {
  const json expected = LoadJson(kDataDir + "/sharded.expected.json");
  const std::string out = Path("ckpt");
  ASSERT_TRUE(WriteSafetensorsCheckpoint(out, TensorsFromRecord(expected),
                                         expected["max_shard_size"].get<uint64_t>())
                  .ok());
  const std::string reference = kDataDir + "/sharded";
  EXPECT_EQ(Listing(out), Listing(reference));
  for (const std::string& name : Listing(reference)) {
    EXPECT_EQ(ReadAll(out + "/" + name), ReadAll(reference + "/" + name)) << name;
  }
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(out);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ExpectMatchesRecord(**ckpt, expected["tensors"]);
}

TEST_F(SafetensorsTest, CheckpointWriteSwitchesBetweenSingleAndShardedCleanly) {
  const json expected = LoadJson(kDataDir + "/sharded.expected.json");
  const NamedTensors tensors = TensorsFromRecord(expected);
  const std::string out = Path("ckpt");
  fs::create_directories(out);
  WriteAll(out + "/config.json", "{}");

  ASSERT_TRUE(WriteSafetensorsCheckpoint(out, tensors, 256).ok());
  EXPECT_EQ(Listing(out).size(), 6u);  // 4 shards, index, config

  ASSERT_TRUE(WriteSafetensorsCheckpoint(out, tensors).ok());  // fits the default limit
  EXPECT_EQ(Listing(out), (std::set<std::string>{"config.json", "model.safetensors"}));
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> single =
      SafetensorsFile::Open(out + "/model.safetensors");
  ASSERT_TRUE(single.ok()) << single.status();
  EXPECT_EQ((*single)->metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(out);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ExpectMatchesRecord(**ckpt, expected["tensors"]);

  // Back to shards, two this time: the single file goes.
  ASSERT_TRUE(WriteSafetensorsCheckpoint(out, tensors, 700).ok());
  EXPECT_EQ(Listing(out), (std::set<std::string>{"config.json", "model-00001-of-00002.safetensors",
                                                 "model-00002-of-00002.safetensors",
                                                 "model.safetensors.index.json"}));
  ckpt = SafetensorsCheckpoint::Open(out);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  ExpectMatchesRecord(**ckpt, expected["tensors"]);
  const json index = LoadJson(out + "/model.safetensors.index.json");
  EXPECT_EQ(index["metadata"]["total_size"].get<uint64_t>(), 1048u);

  // Invalid input leaves the folder untouched.
  NamedTensors duplicated = tensors;
  duplicated.push_back(tensors[0]);
  ExpectInvalid(WriteSafetensorsCheckpoint(out, duplicated, 256), out, "given twice");
  EXPECT_EQ(Listing(out).size(), 4u);
}

TEST_F(SafetensorsTest, EmptyCheckpointIsASingleEmptyFile) {
  ASSERT_TRUE(WriteSafetensorsCheckpoint(Path("empty"), {}).ok());
  EXPECT_EQ(Listing(Path("empty")), (std::set<std::string>{"model.safetensors"}));
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
      SafetensorsCheckpoint::Open(Path("empty"));
  ASSERT_TRUE(ckpt.ok()) << ckpt.status();
  EXPECT_TRUE((*ckpt)->List().empty());
}

class BadIndexTest : public SafetensorsTest {
 protected:
  // A copy of the sharded fixture whose index the test then replaces.
  std::string CopyFixture() {
    const std::string out = Path("ckpt");
    fs::copy(kDataDir + "/sharded", out);
    return out;
  }
  void ExpectIndexInvalid(const std::string& folder, const std::string& index_text,
                          const std::string& problem) {
    const std::string index = folder + "/model.safetensors.index.json";
    WriteAll(index, index_text);
    absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt =
        SafetensorsCheckpoint::Open(folder);
    ExpectInvalid(ckpt.status(), index, problem);
  }
};

TEST_F(BadIndexTest, RejectsInconsistentIndexes) {
  const std::string folder = CopyFixture();
  json index = LoadJson(folder + "/model.safetensors.index.json");
  ExpectIndexInvalid(folder, "{\"weight_map\":", "index is not valid JSON");
  ExpectIndexInvalid(folder, "[]", "index is not a JSON object");
  ExpectIndexInvalid(folder, R"({"metadata":{}})", "no \"weight_map\" object");
  ExpectIndexInvalid(folder, R"({"weight_map":{"a":"x","a":"y"}})", "duplicate key \"a\"");
  ExpectIndexInvalid(folder, R"({"weight_map":{"a":1}})",
                     "weight_map entry for \"a\" is not a string");
  ExpectIndexInvalid(folder, R"({"weight_map":{"a":"../model-00001-of-00004.safetensors"}})",
                     "not a file inside the folder");
  ExpectIndexInvalid(folder, R"({"weight_map":{"a":"/etc/passwd"}})",
                     "not a file inside the folder");

  json missing_entry = index;
  missing_entry["weight_map"].erase("model.rotary.inv_freq_steps");
  ExpectIndexInvalid(folder, missing_entry.dump(),
                     "shard model-00003-of-00004.safetensors holds tensor "
                     "\"model.rotary.inv_freq_steps\" that the weight_map does not list");

  json wrong_shard = index;
  wrong_shard["weight_map"]["model.norm.weight"] = "model-00003-of-00004.safetensors";
  ExpectIndexInvalid(folder, wrong_shard.dump(),
                     "weight_map puts tensor \"model.norm.weight\" in "
                     "model-00003-of-00004.safetensors, which has no such tensor");

  json moved = index;
  moved["weight_map"]["model.embed_tokens.weight"] = "model-00001-of-00004.safetensors";
  ExpectIndexInvalid(folder, moved.dump(), "that the weight_map puts in model-00001-of-00004");
}

TEST_F(BadIndexTest, MissingOrCorruptShardNamesTheShard) {
  const std::string folder = CopyFixture();
  const std::string shard = folder + "/model-00002-of-00004.safetensors";
  std::string bytes = ReadAll(shard);
  WriteAll(shard, bytes.substr(0, bytes.size() - 1));
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(folder);
  ExpectInvalid(ckpt.status(), shard, "run past the end of the data section");

  fs::remove(shard);
  ckpt = SafetensorsCheckpoint::Open(folder);
  ASSERT_FALSE(ckpt.ok());
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(shard));
}

TEST_F(SafetensorsTest, FolderWithoutWeightsIsNotFound) {
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ckpt = SafetensorsCheckpoint::Open(dir_);
  EXPECT_EQ(ckpt.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr(dir_));
  EXPECT_THAT(std::string(ckpt.status().message()), HasSubstr("model.safetensors.index.json"));
}

}  // namespace
}  // namespace lorasweep

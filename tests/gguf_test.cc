// GGUF reader and GgufModel: fixtures written by llama.cpp's gguf-py
// (tests/python/make_gguf_fixtures.py) with expected values from gguf.quants.dequantize, hand-built
// blocks and files, every truncation of a valid file, crafted malformed headers, and the published
// SmolLM2-135M-Instruct Q4_1 file when it has been downloaded into models/.
#include "worker/formats/gguf.h"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/dtype.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/formats/gguf_model.h"

namespace lorasweep {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string DataPath(const std::string& name) {
  return absl::StrCat(LORASWEEP_TEST_DATA_DIR, "/gguf/", name);
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::vector<float> ReadExpected(const std::string& name) {
  const std::string bytes = ReadBytes(DataPath(absl::StrCat("expected/", name, ".f32")));
  std::vector<float> values(bytes.size() / sizeof(float));
  std::memcpy(values.data(), bytes.data(), values.size() * sizeof(float));
  return values;
}

// Bit equality, so that -0.0, infinities and NaN payloads count too.
void ExpectBitEqual(const std::vector<float>& actual, const std::vector<float>& expected,
                    const std::string& what) {
  ASSERT_EQ(actual.size(), expected.size()) << what;
  ASSERT_FALSE(expected.empty()) << what;
  for (size_t i = 0; i < actual.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(actual[i]), std::bit_cast<uint32_t>(expected[i]))
        << what << " element " << i << ": " << actual[i] << " vs " << expected[i];
  }
}

// The pid keeps concurrent runs (ctest -j, a second build folder) apart.
std::string TempPath(const std::string& name) {
  return absl::StrCat(::testing::TempDir(), "gguf_test_", getpid(), "_", name);
}

std::string WriteTemp(const std::string& name, const std::string& bytes) {
  const std::string path = TempPath(name);
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  return path;
}

// ---- A byte-level GGUF writer for hand-made (and deliberately broken) files ---------------------

class Builder {
 public:
  template <typename T>
  Builder& Put(T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T));
    bytes_.append(raw, sizeof(T));
    return *this;
  }
  Builder& U32(uint32_t v) { return Put(v); }
  Builder& U64(uint64_t v) { return Put(v); }
  Builder& Str(const std::string& s) {
    U64(s.size());
    bytes_ += s;
    return *this;
  }
  Builder& Header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    bytes_ += "GGUF";
    return U32(version).U64(tensors).U64(kvs);
  }
  Builder& KvU32(const std::string& key, uint32_t v) { return Str(key).U32(4).U32(v); }
  Builder& KvString(const std::string& key, const std::string& v) { return Str(key).U32(8).Str(v); }
  Builder& Tensor(const std::string& name, const std::vector<uint64_t>& dims, uint32_t type,
                  uint64_t offset) {
    Str(name).U32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) U64(d);
    return U32(type).U64(offset);
  }
  Builder& PadTo(size_t alignment) {
    while (bytes_.size() % alignment != 0) bytes_ += '\0';
    return *this;
  }
  Builder& Zeros(size_t n) {
    bytes_.append(n, '\0');
    return *this;
  }
  const std::string& bytes() const { return bytes_; }

 private:
  std::string bytes_;
};

constexpr uint32_t kF32 = 0;
constexpr uint32_t kQ8_0 = 8;

// A valid file: one metadata entry and one [2, 32] F32 tensor.
Builder ValidPrefix(uint32_t version = 3) {
  Builder b;
  b.Header(version, 1, 1).KvString("general.architecture", "llama");
  return b;
}

Builder ValidFile() {
  Builder b = ValidPrefix();
  b.Tensor("w", {32, 2}, kF32, 0).PadTo(32).Zeros(256);
  return b;
}

// Opens `bytes` as a file and expects an InvalidArgument error naming the file and `problem`.
void ExpectInvalid(const std::string& name, const std::string& bytes, const std::string& problem) {
  SCOPED_TRACE(name);
  const std::string path = WriteTemp(name, bytes);
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  ASSERT_FALSE(file.ok());
  EXPECT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(file.status().message()), HasSubstr(problem));
  std::filesystem::remove(path);
}

// ---- Fixtures written by gguf-py
// -----------------------------------------------------------------

TEST(GgufFileTest, ReadsMetadataOfEveryValueType) {
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(DataPath("types.gguf"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const GgufFile& file = **opened;
  EXPECT_EQ(file.version(), 3u);
  EXPECT_EQ(file.alignment(), 32u);

  auto find = [&](const std::string& key) -> const GgufValue& {
    absl::StatusOr<const GgufValue*> v = file.Find(key);
    EXPECT_TRUE(v.ok()) << v.status();
    static const GgufValue kMissing;
    return v.ok() ? **v : kMissing;
  };
  EXPECT_EQ(*find("general.architecture").AsString(), "lorasweep_test");
  EXPECT_EQ(*find("test.u8").AsInt(), 200);
  EXPECT_EQ(find("test.u8").type, 0u);
  EXPECT_EQ(*find("test.i8").AsInt(), -100);
  EXPECT_EQ(find("test.i8").type, 1u);
  EXPECT_EQ(*find("test.u16").AsInt(), 60000);
  EXPECT_EQ(*find("test.i16").AsInt(), -30000);
  EXPECT_EQ(*find("test.u32").AsInt(), 4000000000);
  EXPECT_EQ(find("test.u32").type, 4u);
  EXPECT_EQ(*find("test.i32").AsInt(), -2000000000);
  EXPECT_EQ(*find("test.f32").AsDouble(), 0.5);
  EXPECT_EQ(find("test.f32").type, 6u);
  EXPECT_EQ(*find("test.f64").AsDouble(), -1.25e300);
  EXPECT_EQ(find("test.f64").type, 12u);
  EXPECT_TRUE(*find("test.bool_true").AsBool());
  EXPECT_FALSE(*find("test.bool_false").AsBool());
  EXPECT_EQ(*find("test.string").AsString(), "h\xc3\xa9llo \xe2\x9c\x93");
  EXPECT_EQ(*find("test.empty_string").AsString(), "");
  EXPECT_EQ(*find("test.u64").AsInt(), 1234567890123);
  EXPECT_EQ(find("test.u64").type, 10u);
  EXPECT_FALSE(find("test.u64_max").AsInt().ok());
  EXPECT_EQ(*find("test.u64_max").AsDouble(), 18446744073709551615.0);
  EXPECT_EQ(*find("test.i64_min").AsInt(), INT64_MIN);
  EXPECT_EQ(find("test.i64_min").type, 11u);

  EXPECT_THAT(*find("test.arr_i32").AsIntArray(), ElementsAre(1, -2, 3));
  EXPECT_EQ(find("test.arr_i32").type, 9u);
  EXPECT_EQ(find("test.arr_i32").element_type, 5u);
  EXPECT_THAT(*find("test.arr_str").AsStringArray(), ElementsAre("a", "bc", ""));
  EXPECT_THAT(*find("test.arr_f32").AsDoubleArray(), ElementsAre(0.5, 1.5));
  EXPECT_EQ(find("test.arr_bool").element_type, 7u);
  EXPECT_EQ(find("test.arr_bool").ToShortString(), "[true, false, true]");
  EXPECT_THAT(*find("test.arr_u8").AsIntArray(), ElementsAre(7, 8, 255));
  EXPECT_EQ(find("test.arr_u8").element_type, 0u);
  EXPECT_THAT(*find("test.arr_f64").AsDoubleArray(), ElementsAre(0.25, -2.0));
  EXPECT_EQ(find("test.arr_f64").element_type, 12u);

  const GgufValue& nested = find("test.arr_nested");
  EXPECT_EQ(nested.element_type, 9u);
  const auto& outer = *std::get<std::shared_ptr<GgufValue::Array>>(nested.value);
  ASSERT_EQ(outer.size(), 3u);
  EXPECT_THAT(*outer[0].AsIntArray(), ElementsAre(1, 2));
  EXPECT_THAT(*outer[1].AsIntArray(), ElementsAre(3));
  EXPECT_THAT(*outer[2].AsIntArray(), ElementsAre(4, 5, 6));
  EXPECT_EQ(nested.ToShortString(), "[[1, 2], [3], [4, 5, 6]]");
  EXPECT_FALSE(nested.AsIntArray().ok());

  EXPECT_EQ(find("test.arr_long").ToShortString(), "[100 strings]");
  EXPECT_EQ((*find("test.arr_long").AsStringArray())[99], "tok99");

  // Type mismatches are errors, not conversions.
  EXPECT_FALSE(find("test.string").AsInt().ok());
  EXPECT_FALSE(find("test.u8").AsString().ok());
  EXPECT_FALSE(find("test.f32").AsInt().ok());
  EXPECT_FALSE(find("test.u8").AsBool().ok());
  EXPECT_FALSE(find("test.arr_i32").AsStringArray().ok());

  absl::StatusOr<const GgufValue*> missing = file.Find("no.such.key");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(DataPath("types.gguf")));
}

TEST(GgufFileTest, ReadsTensorInfos) {
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(DataPath("types.gguf"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const GgufFile& file = **opened;
  struct Want {
    std::vector<int64_t> dims;
    GgmlType type;
    uint64_t bytes;
  };
  const std::map<std::string, Want> want = {
      {"t_f32", {{5, 3}, GgmlType::kF32, 60}},     {"t_f16", {{7, 2}, GgmlType::kF16, 28}},
      {"t_bf16", {{3, 4}, GgmlType::kBF16, 24}},   {"t_q8_0", {{64, 3}, GgmlType::kQ8_0, 204}},
      {"t_q4_0", {{96, 2}, GgmlType::kQ4_0, 108}}, {"t_q4_1", {{32, 4}, GgmlType::kQ4_1, 80}},
      {"t_1d", {{7}, GgmlType::kF32, 28}},         {"t_3d", {{4, 3, 2}, GgmlType::kF32, 96}},
  };
  ASSERT_EQ(file.tensors().size(), want.size());
  EXPECT_EQ(file.data_offset() % 32, 0u);
  for (const GgufTensorInfo& t : file.tensors()) {
    SCOPED_TRACE(t.name);
    ASSERT_EQ(want.count(t.name), 1u);
    const Want& w = want.at(t.name);
    EXPECT_EQ(t.dims, w.dims);
    EXPECT_EQ(t.type, w.type);
    EXPECT_EQ(t.byte_size, w.bytes);
    EXPECT_EQ(t.offset % 32, 0u);
    EXPECT_EQ(t.Shape(), std::vector<int64_t>(w.dims.rbegin(), w.dims.rend()));
  }
  EXPECT_EQ(file.FindTensor("nope").status().code(), absl::StatusCode::kNotFound);
}

class GgufVersionTest : public ::testing::TestWithParam<std::pair<std::string, uint32_t>> {};

TEST_P(GgufVersionTest, DequantizesBitEqualToGgufPy) {
  const auto& [name, version] = GetParam();
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(DataPath(name));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->version(), version);
  for (const char* tensor :
       {"t_f32", "t_f16", "t_bf16", "t_q8_0", "t_q4_0", "t_q4_1", "t_1d", "t_3d"}) {
    absl::StatusOr<std::vector<float>> values = (*opened)->GetFloats(tensor);
    ASSERT_TRUE(values.ok()) << values.status();
    ExpectBitEqual(*values, ReadExpected(absl::StrCat("types.", tensor)), tensor);
  }
}

INSTANTIATE_TEST_SUITE_P(V2AndV3, GgufVersionTest,
                         ::testing::Values(std::make_pair(std::string("types.gguf"), 3u),
                                           std::make_pair(std::string("types_v2.gguf"), 2u)));

TEST(GgufFileTest, GetRawViewsTheMappedBytes) {
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(DataPath("types.gguf"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const std::string bytes = ReadBytes(DataPath("types.gguf"));
  for (const GgufTensorInfo& t : (*opened)->tensors()) {
    SCOPED_TRACE(t.name);
    absl::StatusOr<Tensor> raw = (*opened)->GetRaw(t.name);
    ASSERT_TRUE(raw.ok()) << raw.status();
    EXPECT_EQ(raw->dtype(), GgmlTypeToDType(t.type));
    EXPECT_EQ(raw->shape(), t.Shape());
    ASSERT_EQ(raw->bytes().size(), t.byte_size);
    EXPECT_EQ(std::memcmp(raw->bytes().data(), bytes.data() + (*opened)->data_offset() + t.offset,
                          t.byte_size),
              0);
  }
  EXPECT_EQ((*opened)->GetRaw("t_q4_1")->dtype(), DType::kQ4_1);
  EXPECT_EQ((*opened)->GetRaw("t_bf16")->dtype(), DType::kBF16);
  // Plain types convert through Tensor::ToFloats too; the views outlive the GgufFile.
  Tensor f16 = *(*opened)->GetRaw("t_f16");
  opened->reset();
  ExpectBitEqual(*f16.ToFloats(), ReadExpected("types.t_f16"), "t_f16 via ToFloats");
}

TEST(GgufFileTest, HonoursCustomAlignment) {
  absl::StatusOr<std::unique_ptr<GgufFile>> opened = GgufFile::Open(DataPath("align64.gguf"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ((*opened)->alignment(), 64u);
  EXPECT_EQ((*opened)->data_offset() % 64, 0u);
  for (const GgufTensorInfo& t : (*opened)->tensors()) {
    EXPECT_EQ(t.offset % 64, 0u) << t.name;
    ExpectBitEqual(*(*opened)->GetFloats(t.name), ReadExpected(absl::StrCat("align64.", t.name)),
                   t.name);
  }
}

// ---- Block formats on hand-built blocks ---------------------------------------------------------

TEST(DequantizeGgmlTest, Q4_0FollowsTheBlockFormula) {
  // d = 0.5 (f16 0x3800); byte j holds low nibble j and high nibble 15 - j.
  std::vector<uint8_t> block = {0x00, 0x38};
  for (int j = 0; j < 16; ++j) block.push_back(static_cast<uint8_t>(j | ((15 - j) << 4)));
  std::vector<float> out(32);
  ASSERT_TRUE(DequantizeGgml(GgmlType::kQ4_0, block.data(), block.size(), 32, out.data()).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j - 8) * 0.5f) << j;
    EXPECT_EQ(out[j + 16], (15 - j - 8) * 0.5f) << j;
  }
}

TEST(DequantizeGgmlTest, Q4_1FollowsTheBlockFormula) {
  // d = 0.25 (0x3400), m = -1.0 (0xBC00); two blocks, the second with d = 2 (0x4000), m = 0.5
  // (0x3800).
  std::vector<uint8_t> data = {0x00, 0x34, 0x00, 0xBC};
  for (int j = 0; j < 16; ++j) data.push_back(static_cast<uint8_t>((j * 7 % 16) | (j << 4)));
  data.insert(data.end(), {0x00, 0x40, 0x00, 0x38});
  for (int j = 0; j < 16; ++j) data.push_back(static_cast<uint8_t>(15 | ((j % 3) << 4)));
  std::vector<float> out(64);
  ASSERT_TRUE(DequantizeGgml(GgmlType::kQ4_1, data.data(), data.size(), 64, out.data()).ok());
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(out[j], (j * 7 % 16) * 0.25f - 1.0f) << j;
    EXPECT_EQ(out[j + 16], j * 0.25f - 1.0f) << j;
    EXPECT_EQ(out[32 + j], 15 * 2.0f + 0.5f) << j;
    EXPECT_EQ(out[48 + j], (j % 3) * 2.0f + 0.5f) << j;
  }
}

TEST(DequantizeGgmlTest, Q8_0FollowsTheBlockFormula) {
  // d = -1.5 (0xBE00); q = -128, -127, ..., -97 then the block again with d = 2^-24 (0x0001).
  std::vector<uint8_t> data = {0x00, 0xBE};
  for (int j = 0; j < 32; ++j) data.push_back(static_cast<uint8_t>(static_cast<int8_t>(-128 + j)));
  data.insert(data.end(), {0x01, 0x00});
  for (int j = 0; j < 32; ++j) data.push_back(static_cast<uint8_t>(static_cast<int8_t>(127 - j)));
  std::vector<float> out(64);
  ASSERT_TRUE(DequantizeGgml(GgmlType::kQ8_0, data.data(), data.size(), 64, out.data()).ok());
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(out[j], (-128 + j) * -1.5f) << j;
    EXPECT_EQ(out[32 + j], std::ldexp(static_cast<float>(127 - j), -24)) << j;
  }
}

TEST(DequantizeGgmlTest, PlainTypes) {
  const uint8_t f16[] = {0x00, 0x3C, 0x00, 0xC0, 0x00, 0x7C, 0x01, 0x00};  // 1, -2, inf, 2^-24
  std::vector<float> out(4);
  ASSERT_TRUE(DequantizeGgml(GgmlType::kF16, f16, sizeof(f16), 4, out.data()).ok());
  EXPECT_THAT(out, ElementsAre(1.0f, -2.0f, INFINITY, std::ldexp(1.0f, -24)));
  const uint8_t bf16[] = {0x80, 0x3F, 0x49, 0x40};  // 1.0, 3.140625
  ASSERT_TRUE(DequantizeGgml(GgmlType::kBF16, bf16, sizeof(bf16), 2, out.data()).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 3.140625f);
  const float f32[] = {1.5f, -0.0f};
  ASSERT_TRUE(DequantizeGgml(GgmlType::kF32, reinterpret_cast<const uint8_t*>(f32), sizeof(f32), 2,
                             out.data())
                  .ok());
  EXPECT_EQ(out[0], 1.5f);
  EXPECT_TRUE(std::signbit(out[1]));
}

TEST(DequantizeGgmlTest, RejectsBadArguments) {
  std::vector<uint8_t> data(68);
  std::vector<float> out(64);
  EXPECT_FALSE(DequantizeGgml(GgmlType::kQ8_0, data.data(), data.size(), 33, out.data()).ok());
  EXPECT_FALSE(DequantizeGgml(GgmlType::kQ8_0, data.data(), 67, 64, out.data()).ok());
  EXPECT_FALSE(DequantizeGgml(GgmlType::kF32, data.data(), data.size(), -1, out.data()).ok());
  EXPECT_FALSE(
      DequantizeGgml(static_cast<GgmlType>(14), data.data(), data.size(), 32, out.data()).ok());
  EXPECT_TRUE(DequantizeGgml(GgmlType::kQ8_0, data.data(), data.size(), 0, out.data()).ok());
}

TEST(GgmlTypesTest, ByteSizesAndNames) {
  EXPECT_EQ(*GgmlByteSize(GgmlType::kF32, 3), 12u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kF16, 3), 6u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kBF16, 5), 10u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kQ4_0, 64), 36u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kQ4_1, 32), 20u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kQ8_0, 96), 102u);
  EXPECT_EQ(*GgmlByteSize(GgmlType::kQ8_0, INT64_C(1) << 62), (uint64_t{1} << 57) * 34);
  EXPECT_FALSE(GgmlByteSize(GgmlType::kQ4_0, 33).ok());
  EXPECT_FALSE(GgmlByteSize(GgmlType::kF32, -1).ok());
  EXPECT_THAT(std::string(GgmlByteSize(static_cast<GgmlType>(14), 256).status().message()),
              HasSubstr("Q6_K"));
  EXPECT_STREQ(GgmlTypeName(GgmlType::kQ4_1), "Q4_1");
  EXPECT_STREQ(GgmlTypeName(GgmlType::kBF16), "BF16");
  EXPECT_STREQ(GgmlTypeName(static_cast<GgmlType>(12)), "Q4_K");
  EXPECT_STREQ(GgmlTypeName(static_cast<GgmlType>(4)), "unknown");
  EXPECT_STREQ(GgmlTypeName(static_cast<GgmlType>(100000)), "unknown");
  EXPECT_EQ(GgmlTypeToDType(GgmlType::kQ8_0), DType::kQ8_0);
  EXPECT_EQ(GgmlTypeToDType(GgmlType::kF16), DType::kF16);
  EXPECT_STREQ(GgufValueTypeName(8), "string");
  EXPECT_STREQ(GgufValueTypeName(13), "unknown");
}

// ---- Rotary permutation
// ---------------------------------------------------------------------------

TEST(RotaryPermutationTest, HandBuiltExample) {
  // n_head 2, head_dim 4, 3 columns; HF row r holds {10r, 10r + 1, 10r + 2}.
  std::vector<float> hf(8 * 3);
  for (int r = 0; r < 8; ++r) {
    for (int c = 0; c < 3; ++c) hf[r * 3 + c] = static_cast<float>(10 * r + c);
  }
  // The converter's reshape(2, 2, 2, 3).swapaxes(1, 2) stores, per head, the rows of the two
  // rotary halves interleaved: HF rows 0, 2, 1, 3 then 4, 6, 5, 7.
  const std::vector<float> gguf = {0,  1,  2,  20, 21, 22, 10, 11, 12, 30, 31, 32,
                                   40, 41, 42, 60, 61, 62, 50, 51, 52, 70, 71, 72};
  std::vector<float> out(hf.size());
  ASSERT_TRUE(PermuteRotaryRows(hf.data(), out.data(), 2, 8, 3).ok());
  EXPECT_EQ(out, gguf);
  ASSERT_TRUE(UnpermuteRotaryRows(gguf.data(), out.data(), 2, 8, 3).ok());
  EXPECT_EQ(out, hf);
}

TEST(RotaryPermutationTest, PermuteThenUnpermuteIsIdentity) {
  for (const auto& [n_head, head_dim, cols] :
       std::vector<std::tuple<int, int, int>>{{1, 2, 1}, {3, 8, 5}, {9, 64, 7}, {4, 6, 1}}) {
    const int rows = n_head * head_dim;
    std::vector<float> w(static_cast<size_t>(rows * cols));
    for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<float>(i);
    std::vector<float> permuted(w.size()), back(w.size());
    ASSERT_TRUE(PermuteRotaryRows(w.data(), permuted.data(), n_head, rows, cols).ok());
    ASSERT_TRUE(UnpermuteRotaryRows(permuted.data(), back.data(), n_head, rows, cols).ok());
    EXPECT_EQ(back, w) << n_head << " heads of " << head_dim;
    if (head_dim > 2) {
      EXPECT_NE(permuted, w);
    }
  }
  std::vector<float> w(12), out(12);
  EXPECT_FALSE(UnpermuteRotaryRows(w.data(), out.data(), 4, 12, 1).ok());  // head_dim 3 is odd
  EXPECT_FALSE(PermuteRotaryRows(w.data(), out.data(), 0, 12, 1).ok());
}

// ---- GgufModel
// -----------------------------------------------------------------------------------

TEST(GgufToHfNameTest, MapsLlamaCppNames) {
  const std::map<std::string, std::string> want = {
      {"token_embd.weight", "model.embed_tokens.weight"},
      {"output_norm.weight", "model.norm.weight"},
      {"output.weight", "lm_head.weight"},
      {"blk.0.attn_norm.weight", "model.layers.0.input_layernorm.weight"},
      {"blk.12.ffn_norm.weight", "model.layers.12.post_attention_layernorm.weight"},
      {"blk.3.attn_q.weight", "model.layers.3.self_attn.q_proj.weight"},
      {"blk.3.attn_k.weight", "model.layers.3.self_attn.k_proj.weight"},
      {"blk.3.attn_v.weight", "model.layers.3.self_attn.v_proj.weight"},
      {"blk.3.attn_output.weight", "model.layers.3.self_attn.o_proj.weight"},
      {"blk.3.attn_q.bias", "model.layers.3.self_attn.q_proj.bias"},
      {"blk.3.attn_k.bias", "model.layers.3.self_attn.k_proj.bias"},
      {"blk.3.attn_v.bias", "model.layers.3.self_attn.v_proj.bias"},
      {"blk.29.ffn_gate.weight", "model.layers.29.mlp.gate_proj.weight"},
      {"blk.29.ffn_up.weight", "model.layers.29.mlp.up_proj.weight"},
      {"blk.29.ffn_down.weight", "model.layers.29.mlp.down_proj.weight"},
  };
  for (const auto& [gguf, hf] : want) {
    absl::StatusOr<std::string> mapped = GgufToHfName(gguf);
    ASSERT_TRUE(mapped.ok()) << gguf << ": " << mapped.status();
    EXPECT_EQ(*mapped, hf);
  }
  for (const char* other :
       {"rope_freqs.weight", "blk.0.attn_q.scale", "blk.x.attn_q.weight", "blk.01.attn_q.weight",
        "blk..attn_q.weight", "blk.0", "blk.-1.attn_q.weight", "token_embd.weight.extra", ""}) {
    EXPECT_EQ(GgufToHfName(other).status().code(), absl::StatusCode::kNotFound) << other;
  }
}

TEST(GgufModelTest, PresentsLlamaTinyInHfNamesAndLayout) {
  const std::string path = DataPath("llama_tiny.gguf");
  absl::StatusOr<std::unique_ptr<GgufModel>> opened = GgufModel::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  const GgufModel& model = **opened;
  EXPECT_EQ(model.Describe(), path);

  std::map<std::string, TensorInfo> listed;
  std::vector<std::string> order;
  for (const TensorInfo& info : model.List()) {
    order.push_back(info.name);
    listed[info.name] = info;
  }
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  struct Want {
    std::vector<int64_t> shape;
    DType dtype;
  };
  const std::map<std::string, Want> want = {
      {"model.embed_tokens.weight", {{16, 32}, DType::kF16}},
      {"model.norm.weight", {{32}, DType::kF32}},
      {"lm_head.weight", {{16, 32}, DType::kQ8_0}},
      {"model.layers.0.input_layernorm.weight", {{32}, DType::kF32}},
      {"model.layers.0.post_attention_layernorm.weight", {{32}, DType::kF32}},
      {"model.layers.0.self_attn.q_proj.weight", {{32, 32}, DType::kQ8_0}},
      {"model.layers.0.self_attn.q_proj.bias", {{32}, DType::kF32}},
      {"model.layers.0.self_attn.k_proj.weight", {{16, 32}, DType::kF32}},
      {"model.layers.0.self_attn.v_proj.weight", {{16, 32}, DType::kBF16}},
      {"model.layers.0.self_attn.o_proj.weight", {{32, 32}, DType::kQ4_1}},
      {"model.layers.0.mlp.gate_proj.weight", {{64, 32}, DType::kF16}},
      {"model.layers.0.mlp.up_proj.weight", {{64, 32}, DType::kQ4_0}},
      {"model.layers.0.mlp.down_proj.weight", {{32, 64}, DType::kF32}},
  };
  ASSERT_EQ(listed.size(), want.size());  // rope_freqs.weight is skipped
  for (const auto& [name, w] : want) {
    SCOPED_TRACE(name);
    ASSERT_EQ(listed.count(name), 1u);
    EXPECT_EQ(listed[name].shape, w.shape);
    EXPECT_EQ(listed[name].dtype, w.dtype);
    EXPECT_TRUE(model.Contains(name));
    absl::StatusOr<Tensor> raw = model.Get(name);
    ASSERT_TRUE(raw.ok()) << raw.status();
    EXPECT_EQ(raw->shape(), w.shape);
    EXPECT_EQ(raw->dtype(), w.dtype);
  }
  EXPECT_FALSE(model.Contains("rope_freqs.weight"));

  // q / k come back in HF row order: the script permuted HF weights like convert_hf_to_gguf.py.
  ExpectBitEqual(*model.GetFloats("model.layers.0.self_attn.q_proj.weight"),
                 ReadExpected("llama_tiny.q_proj"), "q_proj");
  ExpectBitEqual(*model.GetFloats("model.layers.0.self_attn.k_proj.weight"),
                 ReadExpected("llama_tiny.k_proj"), "k_proj");
  ExpectBitEqual(*model.GetFloats("model.layers.0.self_attn.q_proj.bias"),
                 ReadExpected("llama_tiny.q_bias"), "q_proj.bias");
  // ... and differ from the stored order.
  EXPECT_NE(*model.GetFloats("model.layers.0.self_attn.k_proj.weight"),
            *model.gguf().GetFloats("blk.0.attn_k.weight"));
  // Everything else is the stored data, dequantized.
  ExpectBitEqual(*model.GetFloats("model.layers.0.self_attn.v_proj.weight"),
                 *model.gguf().GetFloats("blk.0.attn_v.weight"), "v_proj");
  ExpectBitEqual(*model.GetFloats("lm_head.weight"), *model.gguf().GetFloats("output.weight"),
                 "lm_head");

  absl::StatusOr<std::vector<float>> missing = model.GetFloats("model.layers.1.mlp.up_proj.weight");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.status().message()), HasSubstr(path));
  EXPECT_EQ(model.Get("blk.0.attn_q.weight").status().code(), absl::StatusCode::kNotFound);
}

TEST(GgufModelTest, Qwen2KeepsStoredRowOrder) {
  absl::StatusOr<std::unique_ptr<GgufModel>> opened = GgufModel::Open(DataPath("qwen2_tiny.gguf"));
  ASSERT_TRUE(opened.ok()) << opened.status();
  const GgufModel& model = **opened;
  EXPECT_EQ(model.List().size(), 5u);
  for (const auto& [hf, gguf] : std::vector<std::pair<std::string, std::string>>{
           {"model.layers.0.self_attn.q_proj.weight", "blk.0.attn_q.weight"},
           {"model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"},
           {"model.layers.0.self_attn.k_proj.weight", "blk.0.attn_k.weight"},
           {"model.layers.0.self_attn.k_proj.bias", "blk.0.attn_k.bias"},
           {"model.layers.0.self_attn.v_proj.bias", "blk.0.attn_v.bias"}}) {
    ExpectBitEqual(*model.GetFloats(hf), *model.gguf().GetFloats(gguf), hf);
  }
}

TEST(GgufModelTest, RejectsWhatItCannotPresent) {
  // Unknown architecture: its q/k layout is unknown.
  absl::StatusOr<std::unique_ptr<GgufModel>> opened = GgufModel::Open(DataPath("types.gguf"));
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr(DataPath("types.gguf")));
  EXPECT_THAT(std::string(opened.status().message()), HasSubstr("lorasweep_test"));

  auto open_error = [](const std::string& name, const Builder& b) {
    const std::string path = WriteTemp(name, b.bytes());
    absl::StatusOr<std::unique_ptr<GgufModel>> model = GgufModel::Open(path);
    EXPECT_FALSE(model.ok()) << name;
    EXPECT_EQ(model.status().code(), absl::StatusCode::kInvalidArgument) << model.status();
    EXPECT_THAT(std::string(model.status().message()), HasSubstr(path));
    std::filesystem::remove(path);
    return std::string(model.status().message());
  };
  {
    Builder b;
    b.Header(3, 0, 0);
    EXPECT_THAT(open_error("model_no_arch", b), HasSubstr("general.architecture"));
  }
  {
    Builder b;
    b.Header(3, 0, 1).KvString("general.architecture", "llama");
    EXPECT_THAT(open_error("model_no_heads", b), HasSubstr("llama.attention.head_count"));
  }
  {
    Builder b;
    b.Header(3, 0, 2).KvString("general.architecture", "llama");
    b.Str("llama.attention.head_count").U32(8).Str("nine");
    EXPECT_THAT(open_error("model_string_heads", b), HasSubstr("head_count"));
  }
  {
    // 3 heads cannot split 32 rows into rotary halves.
    Builder b;
    b.Header(3, 1, 2).KvString("general.architecture", "llama");
    b.KvU32("llama.attention.head_count", 3);
    b.Tensor("blk.0.attn_q.weight", {32, 32}, kF32, 0).PadTo(32).Zeros(32 * 32 * 4);
    EXPECT_THAT(open_error("model_bad_heads", b), HasSubstr("blk.0.attn_q.weight"));
  }
  {
    // No head_count_kv: k uses the query head count (4 heads of 4 rows split 16 rows fine).
    Builder b;
    b.Header(3, 1, 2).KvString("general.architecture", "llama");
    b.KvU32("llama.attention.head_count", 4);
    b.Tensor("blk.0.attn_k.weight", {32, 16}, kF32, 0).PadTo(32).Zeros(16 * 32 * 4);
    const std::string path = WriteTemp("model_default_kv", b.bytes());
    absl::StatusOr<std::unique_ptr<GgufModel>> model = GgufModel::Open(path);
    std::filesystem::remove(path);  // the mapping stays valid
    ASSERT_TRUE(model.ok()) << model.status();
    EXPECT_TRUE((*model)->GetFloats("model.layers.0.self_attn.k_proj.weight").ok());
  }
}

// ---- Malformed files
// -----------------------------------------------------------------------------

TEST(GgufMalformedTest, EveryTruncationIsAnErrorNeverACrash) {
  for (const char* name : {"types.gguf", "align64.gguf", "llama_tiny.gguf"}) {
    SCOPED_TRACE(name);
    const std::string bytes = ReadBytes(DataPath(name));
    absl::StatusOr<std::unique_ptr<GgufFile>> full = GgufFile::Open(DataPath(name));
    ASSERT_TRUE(full.ok()) << full.status();
    // The writer pads the file after the last tensor: cuts inside that padding still leave every
    // tensor whole.
    uint64_t needed = (*full)->data_offset();
    for (const GgufTensorInfo& t : (*full)->tensors()) {
      needed = std::max(needed, (*full)->data_offset() + t.offset + t.byte_size);
    }
    ASSERT_LE(needed, bytes.size());
    // Shrinking one file in place (longest prefix first) is far cheaper than rewriting it.
    const std::string path = WriteTemp(absl::StrCat("prefix_", name), bytes);
    for (size_t length = bytes.size(); length-- > 0;) {
      std::filesystem::resize_file(path, length);
      absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
      if (length >= needed) {
        EXPECT_TRUE(file.ok()) << length << ": " << file.status();
        continue;
      }
      ASSERT_FALSE(file.ok()) << "prefix of " << length << " bytes opened";
      ASSERT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
      ASSERT_THAT(std::string(file.status().message()), HasSubstr(path)) << length;
    }
    std::filesystem::remove(path);
  }
}

TEST(GgufMalformedTest, HandBuiltValidFileOpens) {
  const std::string path = WriteTemp("valid", ValidFile().bytes());
  absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->tensors().size(), 1u);
  EXPECT_EQ((*file)->GetFloats("w")->size(), 64u);
}

TEST(GgufMalformedTest, HeaderErrors) {
  ExpectInvalid("empty", "", "magic");
  ExpectInvalid("bad_magic", "GGUX" + ValidFile().bytes().substr(4), "magic");
  ExpectInvalid("ggml_magic", "lmgg" + ValidFile().bytes().substr(4), "magic");
  ExpectInvalid("version1", ValidPrefix(1).bytes(), "version 1 is not supported");
  ExpectInvalid("version0", ValidPrefix(0).bytes(), "unsupported GGUF version 0");
  ExpectInvalid("version4", ValidPrefix(4).bytes(), "unsupported GGUF version 4");
  ExpectInvalid("big_endian", ValidPrefix(0x03000000).bytes(), "big-endian");

  // Counts that cannot fit in the bytes that follow are refused before anything is allocated.
  Builder huge_tensors;
  huge_tensors.Header(3, uint64_t{1} << 62, 0).Zeros(64);
  ExpectInvalid("huge_tensor_count", huge_tensors.bytes(), "cannot fit");
  Builder huge_kvs;
  huge_kvs.Header(3, 0, ~uint64_t{0}).Zeros(64);
  ExpectInvalid("huge_kv_count", huge_kvs.bytes(), "cannot fit");
  Builder both;
  both.Header(3, 2, 4).Zeros(100);  // each fits alone, not together
  ExpectInvalid("counts_together", both.bytes(), "cannot fit");
}

TEST(GgufMalformedTest, MetadataErrors) {
  auto with_kv = [](auto&& add) {
    Builder b;
    b.Header(3, 0, 1);
    add(b);
    return b.bytes();
  };
  ExpectInvalid("huge_key", with_kv([](Builder& b) { b.U64(uint64_t{1} << 40).Zeros(16); }),
                "string length");
  ExpectInvalid("huge_string",
                with_kv([](Builder& b) { b.Str("k").U32(8).U64(~uint64_t{0}).Zeros(16); }),
                "string length");
  ExpectInvalid("huge_array", with_kv([](Builder& b) {
                  b.Str("k").U32(9).U32(4).U64(uint64_t{1} << 60).Zeros(64);
                }),
                "cannot fit");
  ExpectInvalid("huge_string_array",
                with_kv([](Builder& b) { b.Str("k").U32(9).U32(8).U64(1000).Zeros(7999); }),
                "cannot fit");
  ExpectInvalid("unknown_value_type", with_kv([](Builder& b) { b.Str("k").U32(13).U32(0); }),
                "unknown value type 13");
  ExpectInvalid("unknown_element_type",
                with_kv([](Builder& b) { b.Str("k").U32(9).U32(77).U64(1).Zeros(8); }),
                "unknown array element type 77");
  ExpectInvalid("bad_bool", with_kv([](Builder& b) { b.Str("k").U32(7).Put<uint8_t>(2); }),
                "neither 0 nor 1");
  ExpectInvalid("truncated_value", with_kv([](Builder& b) { b.Str("k").U32(10).U32(0); }),
                "truncated");
  ExpectInvalid("deep_nesting", with_kv([](Builder& b) {
                  b.Str("k").U32(9);
                  for (int i = 0; i < 20; ++i) b.U32(9).U64(1);
                  b.U32(4).U64(1).U32(0);
                }),
                "nested");
  Builder dup;
  dup.Header(3, 0, 2).KvU32("a.b", 1).KvU32("a.b", 2);
  ExpectInvalid("duplicate_key", dup.bytes(), "duplicate metadata key 'a.b'");
}

TEST(GgufMalformedTest, AlignmentErrors) {
  for (const auto& [name, value] : std::vector<std::pair<std::string, uint32_t>>{
           {"align0", 0}, {"align48", 48}, {"align3", 3}}) {
    Builder b;
    b.Header(3, 0, 1).KvU32("general.alignment", value);
    ExpectInvalid(name, b.bytes(), "general.alignment must be a positive power of two");
  }
  Builder s;
  s.Header(3, 0, 1).KvString("general.alignment", "32");
  ExpectInvalid("align_string", s.bytes(), "general.alignment");
  Builder neg;
  neg.Header(3, 0, 1).Str("general.alignment").U32(5).Put<int32_t>(-32);
  ExpectInvalid("align_negative", neg.bytes(), "general.alignment");
}

TEST(GgufMalformedTest, TensorInfoErrors) {
  auto with_tensor = [](const std::vector<uint64_t>& dims, uint32_t type, uint64_t offset) {
    Builder b = ValidPrefix();
    b.Tensor("w", dims, type, offset).PadTo(32).Zeros(4096);
    return b.bytes();
  };
  ExpectInvalid("zero_dims", with_tensor({}, kF32, 0), "has 0 dimensions");
  ExpectInvalid("five_dims", with_tensor({1, 1, 1, 1, 1}, kF32, 0), "has 5 dimensions");
  ExpectInvalid("dim_zero", with_tensor({4, 0}, kF32, 0), "dimension 1 of size 0");
  ExpectInvalid("dim_negative", with_tensor({~uint64_t{0}}, kF32, 0), "dimension 0 of size");
  ExpectInvalid("overflow", with_tensor({uint64_t{1} << 40, uint64_t{1} << 40}, kF32, 0),
                "overflows");
  ExpectInvalid("unknown_type", with_tensor({32}, 1000, 0), "unknown (1000)");
  ExpectInvalid("unsupported_type", with_tensor({256}, 14, 0), "Q6_K (14)");
  ExpectInvalid("partial_block", with_tensor({31, 2}, kQ8_0, 0),
                "row length 31 is not a multiple of the block size 32");
  ExpectInvalid("misaligned", with_tensor({4}, kF32, 4), "not a multiple of the alignment 32");
  ExpectInvalid("past_end", with_tensor({32}, kF32, 4096), "extends past the end");
  ExpectInvalid("too_big", with_tensor({2048}, kF32, 0), "extends past the end");
  ExpectInvalid("offset_wraps", with_tensor({8}, kF32, ~uint64_t{31}), "extends past the end");
  ExpectInvalid("huge_f32", with_tensor({uint64_t{1} << 61}, kF32, 0), "extends past the end");

  Builder no_data = ValidPrefix();
  no_data.Tensor("w", {8}, kF32, 0);
  ExpectInvalid("no_data_section", no_data.bytes(), "extends past the end");

  Builder overlap;
  overlap.Header(3, 2, 0)
      .Tensor("a", {16}, kF32, 0)
      .Tensor("b", {8}, kF32, 32)
      .PadTo(32)
      .Zeros(128);
  ExpectInvalid("overlap", overlap.bytes(), "'a' (data offset 0, 64 bytes) and 'b'");
  Builder same;
  same.Header(3, 2, 0).Tensor("a", {8}, kF32, 0).Tensor("b", {8}, kF32, 0).PadTo(32).Zeros(64);
  ExpectInvalid("same_offset", same.bytes(), "overlap");
  Builder dup;
  dup.Header(3, 2, 0).Tensor("a", {8}, kF32, 0).Tensor("a", {8}, kF32, 32).PadTo(32).Zeros(64);
  ExpectInvalid("duplicate_tensor", dup.bytes(), "duplicate tensor name 'a'");

  Builder huge_name = ValidPrefix();
  huge_name.U64(uint64_t{1} << 50).Zeros(64);
  ExpectInvalid("huge_name", huge_name.bytes(), "string length");
}

TEST(GgufMalformedTest, RandomCorruptionNeverCrashes) {
  // Overwrite single header bytes of a real file with every value class that tends to matter.
  const std::string bytes = ReadBytes(DataPath("llama_tiny.gguf"));
  absl::StatusOr<std::unique_ptr<GgufFile>> full = GgufFile::Open(DataPath("llama_tiny.gguf"));
  ASSERT_TRUE(full.ok());
  const size_t header_end = (*full)->data_offset();
  const std::string path = TempPath("corrupt");
  int errors = 0;
  for (size_t pos = 0; pos < header_end; pos += 3) {
    for (uint8_t value : {uint8_t{0x00}, uint8_t{0x01}, uint8_t{0x7F}, uint8_t{0xFF}}) {
      std::string corrupt = bytes;
      corrupt[pos] = static_cast<char>(value);
      WriteTemp("corrupt", corrupt);
      absl::StatusOr<std::unique_ptr<GgufFile>> file = GgufFile::Open(path);
      if (file.ok()) {
        for (const GgufTensorInfo& t : (*file)->tensors()) {
          ASSERT_TRUE((*file)->GetFloats(t.name).ok());
        }
      } else {
        ++errors;
        ASSERT_EQ(file.status().code(), absl::StatusCode::kInvalidArgument) << file.status();
        ASSERT_THAT(std::string(file.status().message()), HasSubstr(path));
      }
    }
  }
  std::filesystem::remove(path);
  EXPECT_GT(errors, 0);
}

// ---- The published SmolLM2-135M-Instruct Q4_1 file
// ------------------------------------------------

std::string SmolLmPath() {
  const std::filesystem::path dir =
      std::filesystem::path(LORASWEEP_SOURCE_DIR) / "models" / "smollm2-135m-instruct";
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return "";
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    if (entry.path().extension() == ".gguf") return entry.path().string();
  }
  return "";
}

TEST(SmolLm2Test, LoadsWithPublishedShapes) {
  const std::string path = SmolLmPath();
  if (path.empty()) GTEST_SKIP() << "models/smollm2-135m-instruct/*.gguf not downloaded";
  absl::StatusOr<std::unique_ptr<GgufModel>> opened = GgufModel::Open(path);
  ASSERT_TRUE(opened.ok()) << opened.status();
  const GgufModel& model = **opened;
  const GgufFile& file = model.gguf();

  EXPECT_EQ(*(*file.Find("general.architecture"))->AsString(), "llama");
  EXPECT_EQ(*(*file.Find("llama.embedding_length"))->AsInt(), 576);
  EXPECT_EQ(*(*file.Find("llama.block_count"))->AsInt(), 30);
  EXPECT_EQ(*(*file.Find("llama.attention.head_count"))->AsInt(), 9);
  EXPECT_EQ(*(*file.Find("llama.attention.head_count_kv"))->AsInt(), 3);
  EXPECT_EQ(*(*file.Find("llama.feed_forward_length"))->AsInt(), 1536);
  EXPECT_EQ(*(*file.Find("llama.rope.dimension_count"))->AsInt(), 64);
  EXPECT_EQ(*(*file.Find("tokenizer.ggml.model"))->AsString(), "gpt2");
  absl::StatusOr<std::vector<std::string>> tokens =
      (*file.Find("tokenizer.ggml.tokens"))->AsStringArray();
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->size(), 49152u);
  absl::StatusOr<std::vector<std::string>> merges =
      (*file.Find("tokenizer.ggml.merges"))->AsStringArray();
  ASSERT_TRUE(merges.ok()) << merges.status();
  EXPECT_GT(merges->size(), 40000u);
  EXPECT_EQ((*file.Find("tokenizer.ggml.tokens"))->ToShortString(), "[49152 strings]");

  std::map<std::string, std::vector<int64_t>> shapes;
  for (const TensorInfo& info : model.List()) shapes[info.name] = info.shape;
  EXPECT_EQ(shapes.size(), 2u + 30u * 9u);
  EXPECT_EQ(shapes["model.embed_tokens.weight"], (std::vector<int64_t>{49152, 576}));
  EXPECT_EQ(shapes["model.norm.weight"], (std::vector<int64_t>{576}));
  EXPECT_EQ(shapes.count("lm_head.weight"), 0u);  // tied embeddings
  for (int layer = 0; layer < 30; ++layer) {
    const std::string p = absl::StrCat("model.layers.", layer, ".");
    EXPECT_EQ(shapes[p + "self_attn.q_proj.weight"], (std::vector<int64_t>{576, 576})) << layer;
    EXPECT_EQ(shapes[p + "self_attn.k_proj.weight"], (std::vector<int64_t>{192, 576})) << layer;
    EXPECT_EQ(shapes[p + "self_attn.v_proj.weight"], (std::vector<int64_t>{192, 576})) << layer;
    EXPECT_EQ(shapes[p + "self_attn.o_proj.weight"], (std::vector<int64_t>{576, 576})) << layer;
    EXPECT_EQ(shapes[p + "mlp.gate_proj.weight"], (std::vector<int64_t>{1536, 576})) << layer;
    EXPECT_EQ(shapes[p + "mlp.up_proj.weight"], (std::vector<int64_t>{1536, 576})) << layer;
    EXPECT_EQ(shapes[p + "mlp.down_proj.weight"], (std::vector<int64_t>{576, 1536})) << layer;
    EXPECT_EQ(shapes[p + "input_layernorm.weight"], (std::vector<int64_t>{576})) << layer;
    EXPECT_EQ(shapes[p + "post_attention_layernorm.weight"], (std::vector<int64_t>{576})) << layer;
  }

  std::map<std::string, int> type_counts;
  for (const GgufTensorInfo& t : file.tensors()) ++type_counts[GgmlTypeName(t.type)];
  EXPECT_EQ(type_counts, (std::map<std::string, int>{{"F32", 61}, {"Q4_1", 210}, {"Q8_0", 1}}));

  for (const TensorInfo& info : model.List()) {
    absl::StatusOr<std::vector<float>> values = model.GetFloats(info.name);
    ASSERT_TRUE(values.ok()) << info.name << ": " << values.status();
    ASSERT_EQ(static_cast<int64_t>(values->size()), NumElements(info.shape)) << info.name;
    for (float v : *values) ASSERT_TRUE(std::isfinite(v)) << info.name;
  }
}

}  // namespace
}  // namespace lorasweep

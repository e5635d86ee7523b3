// Tests of PEFT LoRA adapter folders: write / read round trip, the safetensors header and
// adapter_config.json checked independently (plain JSON, not through the reader), atomic
// replacement of an existing folder, and errors on bad folders that name the file and the key. When
// the project's Python (.venv) has `safetensors`, the written folder is also loaded by it.
#include "worker/train/peft_adapter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/file_util.h"
#include "common/subprocess.h"
#include "common/tensor.h"
#include "worker/formats/safetensors.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using ::testing::HasSubstr;

class TempDir {
 public:
  explicit TempDir(const std::string& name)
      : path_(::testing::TempDir() + "peft_adapter_test_" + std::to_string(getpid()) + "_" + name) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A small adapter: 2 layers of q_proj [8 -> 8], k_proj [8 -> 4] and down_proj [12 -> 8], rank 4,
// with distinct values everywhere.
PeftAdapter MakeAdapter(int rank = 4, float offset = 0.0f) {
  PeftAdapter adapter;
  adapter.base_model_name_or_path = "models/tiny.gguf";
  adapter.rank = rank;
  adapter.alpha = 8.0;
  adapter.dropout = 0.05;
  adapter.rslora = false;
  adapter.target_modules = {"q_proj", "k_proj", "down_proj"};
  adapter.trained_quantization = "nf4";
  adapter.blocksize = 64;
  adapter.double_quant = true;
  struct Shape {
    const char* module;
    int64_t in, out;
  };
  int counter = 0;
  for (int layer = 0; layer < 2; ++layer) {
    for (const Shape& s :
         {Shape{"q_proj", 8, 8}, Shape{"k_proj", 8, 4}, Shape{"down_proj", 12, 8}}) {
      LoraTensor t;
      t.layer = layer;
      t.module = s.module;
      t.in_features = s.in;
      t.out_features = s.out;
      for (int64_t i = 0; i < rank * s.in; ++i)
        t.a.push_back(offset + 0.001f * static_cast<float>(++counter));
      for (int64_t i = 0; i < s.out * rank; ++i)
        t.b.push_back(offset - 0.002f * static_cast<float>(++counter));
      adapter.tensors.push_back(std::move(t));
    }
  }
  return adapter;
}

std::string ReadText(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  EXPECT_TRUE(text.ok()) << text.status();
  return text.ok() ? *text : "";
}

void ExpectSameAdapter(const PeftAdapter& a, const PeftAdapter& b) {
  EXPECT_EQ(a.base_model_name_or_path, b.base_model_name_or_path);
  EXPECT_EQ(a.rank, b.rank);
  EXPECT_EQ(a.alpha, b.alpha);
  EXPECT_EQ(a.dropout, b.dropout);
  EXPECT_EQ(a.rslora, b.rslora);
  EXPECT_EQ(a.target_modules, b.target_modules);
  EXPECT_EQ(a.trained_quantization, b.trained_quantization);
  EXPECT_EQ(a.blocksize, b.blocksize);
  EXPECT_EQ(a.double_quant, b.double_quant);
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (size_t i = 0; i < a.tensors.size(); ++i) {
    const LoraTensor& x = a.tensors[i];
    const LoraTensor& y = b.tensors[i];
    EXPECT_EQ(x.layer, y.layer) << i;
    EXPECT_EQ(x.module, y.module) << i;
    EXPECT_EQ(x.in_features, y.in_features) << i;
    EXPECT_EQ(x.out_features, y.out_features) << i;
    EXPECT_EQ(x.a, y.a) << i;  // bit-exact: F32 round trip
    EXPECT_EQ(x.b, y.b) << i;
  }
}

TEST(PeftAdapterTest, KeysFollowPeftNaming) {
  EXPECT_EQ(PeftTensorKey(0, "q_proj", 'A'),
            "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight");
  EXPECT_EQ(PeftTensorKey(12, "o_proj", 'B'),
            "base_model.model.model.layers.12.self_attn.o_proj.lora_B.weight");
  EXPECT_EQ(PeftTensorKey(3, "gate_proj", 'A'),
            "base_model.model.model.layers.3.mlp.gate_proj.lora_A.weight");
  EXPECT_EQ(PeftTensorKey(29, "down_proj", 'B'),
            "base_model.model.model.layers.29.mlp.down_proj.lora_B.weight");
}

TEST(PeftAdapterTest, RoundTrip) {
  TempDir tmp("roundtrip");
  const std::string dir = tmp.path() + "/adapter";
  const PeftAdapter adapter = MakeAdapter();
  ASSERT_TRUE(WritePeftAdapter(adapter, dir).ok());
  absl::StatusOr<PeftAdapter> read = ReadPeftAdapter(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  // MakeAdapter lists tensors layer by layer in q, k, ..., down order: the order the reader
  // returns.
  ExpectSameAdapter(adapter, *read);
  // Nothing but the three files, and no staging folder left beside it.
  std::set<std::string> files;
  for (const auto& entry : fs::directory_iterator(dir)) files.insert(entry.path().filename());
  EXPECT_EQ(files, (std::set<std::string>{"adapter_config.json", "adapter_model.safetensors",
                                          "lorasweep_training.json"}));
  std::set<std::string> siblings;
  for (const auto& entry : fs::directory_iterator(tmp.path()))
    siblings.insert(entry.path().filename());
  EXPECT_EQ(siblings, std::set<std::string>{"adapter"});
}

TEST(PeftAdapterTest, SafetensorsHeaderParsedIndependently) {
  TempDir tmp("header");
  const std::string dir = tmp.path() + "/adapter";
  const PeftAdapter adapter = MakeAdapter();
  ASSERT_TRUE(WritePeftAdapter(adapter, dir).ok());
  const std::string bytes = ReadText(dir + "/adapter_model.safetensors");
  ASSERT_GE(bytes.size(), 8u);
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | static_cast<uint8_t>(bytes[i]);
  ASSERT_LE(8 + header_len, bytes.size());
  EXPECT_EQ(header_len % 8, 0u);
  const json header = json::parse(bytes.substr(8, header_len));
  const std::string data = bytes.substr(8 + header_len);

  std::set<std::string> expected_keys = {"__metadata__"};
  for (const LoraTensor& t : adapter.tensors) {
    const std::string block = (t.module == "down_proj") ? "mlp" : "self_attn";
    const std::string base =
        "base_model.model.model.layers." + std::to_string(t.layer) + "." + block + "." + t.module;
    for (const char which : {'A', 'B'}) {
      const std::string key = base + ".lora_" + std::string(1, which) + ".weight";
      expected_keys.insert(key);
      ASSERT_TRUE(header.contains(key)) << key;
      const json& entry = header[key];
      EXPECT_EQ(entry["dtype"], "F32") << key;
      const std::vector<int64_t> shape = entry["shape"];
      const std::vector<int64_t> want = which == 'A'
                                            ? std::vector<int64_t>{adapter.rank, t.in_features}
                                            : std::vector<int64_t>{t.out_features, adapter.rank};
      EXPECT_EQ(shape, want) << key;
      const uint64_t begin = entry["data_offsets"][0], end = entry["data_offsets"][1];
      const std::vector<float>& values = which == 'A' ? t.a : t.b;
      ASSERT_EQ(end - begin, values.size() * 4) << key;
      ASSERT_LE(end, data.size());
      std::vector<float> stored(values.size());
      std::memcpy(stored.data(), data.data() + begin, end - begin);  // little-endian host
      EXPECT_EQ(stored, values) << key;
    }
  }
  std::set<std::string> keys;
  for (const auto& [key, value] : header.items()) keys.insert(key);
  EXPECT_EQ(keys, expected_keys);
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
}

TEST(PeftAdapterTest, ConfigJsonHasThePeftFields) {
  TempDir tmp("config");
  const std::string dir = tmp.path() + "/adapter";
  PeftAdapter adapter = MakeAdapter();
  adapter.rslora = true;
  ASSERT_TRUE(WritePeftAdapter(adapter, dir).ok());
  const json config = json::parse(ReadText(dir + "/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["task_type"], "CAUSAL_LM");
  EXPECT_EQ(config["base_model_name_or_path"], "models/tiny.gguf");
  EXPECT_EQ(config["r"], 4);
  EXPECT_TRUE(config["r"].is_number_integer());
  EXPECT_EQ(config["lora_alpha"], 8);
  EXPECT_TRUE(config["lora_alpha"].is_number_integer());  // whole alphas as PEFT writes them
  EXPECT_EQ(config["lora_dropout"], 0.05);
  EXPECT_EQ(config["target_modules"], json::array({"q_proj", "k_proj", "down_proj"}));
  EXPECT_EQ(config["bias"], "none");
  EXPECT_EQ(config["use_rslora"], true);
  EXPECT_EQ(config["use_dora"], false);
  EXPECT_EQ(config["init_lora_weights"], true);
  EXPECT_EQ(config["fan_in_fan_out"], false);
  EXPECT_TRUE(config["modules_to_save"].is_null());
  EXPECT_EQ(config["inference_mode"], true);
  EXPECT_EQ(config["rank_pattern"], json::object());
  EXPECT_EQ(config["alpha_pattern"], json::object());
  EXPECT_TRUE(config.contains("layers_to_transform"));
  EXPECT_TRUE(config["layers_to_transform"].is_null());
  EXPECT_TRUE(config.contains("revision"));
  EXPECT_TRUE(config["revision"].is_null());

  const json training = json::parse(ReadText(dir + "/lorasweep_training.json"));
  EXPECT_EQ(training["quantization"]["type"], "nf4");
  EXPECT_EQ(training["quantization"]["blocksize"], 64);
  EXPECT_EQ(training["quantization"]["double_quant"], true);

  adapter.alpha = 12.5;
  ASSERT_TRUE(WritePeftAdapter(adapter, dir).ok());
  EXPECT_EQ(json::parse(ReadText(dir + "/adapter_config.json"))["lora_alpha"], 12.5);
  absl::StatusOr<PeftAdapter> read = ReadPeftAdapter(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  EXPECT_EQ(read->alpha, 12.5);
  EXPECT_TRUE(read->rslora);
}

TEST(PeftAdapterTest, ReplacesAnExistingFolderWhole) {
  TempDir tmp("replace");
  const std::string dir = tmp.path() + "/out/adapter";  // parents are created
  ASSERT_TRUE(WritePeftAdapter(MakeAdapter(4, 0.0f), dir).ok());
  { std::ofstream(dir + "/stale.txt") << "from before"; }
  const PeftAdapter second = MakeAdapter(2, 1.0f);
  ASSERT_TRUE(WritePeftAdapter(second, dir + "/").ok());  // a trailing slash is fine
  EXPECT_FALSE(fs::exists(dir + "/stale.txt"));
  absl::StatusOr<PeftAdapter> read = ReadPeftAdapter(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  ExpectSameAdapter(second, *read);
  std::set<std::string> siblings;
  for (const auto& entry : fs::directory_iterator(tmp.path() + "/out")) {
    siblings.insert(entry.path().filename());
  }
  EXPECT_EQ(siblings, std::set<std::string>{"adapter"});
}

TEST(PeftAdapterTest, WriteChecksTheAdapter) {
  TempDir tmp("write_errors");
  const std::string dir = tmp.path() + "/adapter";
  PeftAdapter bad = MakeAdapter();
  bad.tensors[1].a.pop_back();
  absl::Status status = WritePeftAdapter(bad, dir);
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(status.message()), HasSubstr("layer 0 k_proj: lora_A has 31 values"));
  EXPECT_FALSE(fs::exists(dir));

  bad = MakeAdapter();
  bad.tensors[2].b.push_back(0.0f);
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()),
              HasSubstr("layer 0 down_proj: lora_B has 33 values"));
  bad = MakeAdapter();
  bad.tensors[3].module = "qkv_proj";
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()), HasSubstr("unknown module"));
  bad = MakeAdapter();
  bad.tensors[3].module = "v_proj";
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()),
              HasSubstr("not in target_modules"));
  bad = MakeAdapter();
  bad.tensors[3] = bad.tensors[0];
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()),
              HasSubstr("layer 0 q_proj appears twice"));
  bad = MakeAdapter();
  bad.rank = 0;
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()), HasSubstr("rank must be >= 1"));
  bad = MakeAdapter();
  bad.trained_quantization = "int8";
  EXPECT_THAT(std::string(WritePeftAdapter(bad, dir).message()), HasSubstr("'int8'"));
  EXPECT_FALSE(fs::exists(dir));
  std::set<std::string> siblings;
  for (const auto& entry : fs::directory_iterator(tmp.path()))
    siblings.insert(entry.path().filename());
  EXPECT_TRUE(siblings.empty());
}

// Writes a folder with the given config and tensors directly (not through WritePeftAdapter).
void WriteRawAdapter(const std::string& dir, const json& config, const NamedTensors& tensors) {
  fs::create_directories(dir);
  ASSERT_TRUE(WriteFileAtomically(dir + "/adapter_config.json", config.dump()).ok());
  ASSERT_TRUE(WriteSafetensors(dir + "/adapter_model.safetensors", tensors).ok());
}

json RawConfig(int r = 2) {
  return {{"peft_type", "LORA"},
          {"r", r},
          {"lora_alpha", 16},
          {"lora_dropout", 0.0},
          {"target_modules", {"q_proj", "v_proj", "up_proj"}},
          {"bias", "none"}};
}

Tensor Filled(std::vector<int64_t> shape, float value) {
  std::vector<float> values(NumElements(shape), value);
  return Tensor::FromFloats(std::move(shape), values);
}

std::string ReadError(const std::string& dir) {
  absl::StatusOr<PeftAdapter> read = ReadPeftAdapter(dir);
  EXPECT_FALSE(read.ok());
  return read.ok() ? "" : std::string(read.status().message());
}

TEST(PeftAdapterTest, ReadsHalfPrecisionTensorsAndFoldersWithoutTrainingInfo) {
  TempDir tmp("half");
  const std::string dir = tmp.path() + "/a";
  Tensor a_f16 = Tensor::Allocate(DType::kF16, {2, 3});
  for (uint16_t& v : a_f16.mutable_data<uint16_t>()) v = FloatToF16(0.5f);
  Tensor b_bf16 = Tensor::Allocate(DType::kBF16, {5, 2});
  for (uint16_t& v : b_bf16.mutable_data<uint16_t>()) v = FloatToBf16(-0.25f);
  json config = RawConfig();
  config["target_modules"] = "all-linear";  // PEFT also writes a single string
  WriteRawAdapter(dir, config,
                  {{"base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight", a_f16},
                   {"base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight", b_bf16}});
  absl::StatusOr<PeftAdapter> read = ReadPeftAdapter(dir);
  ASSERT_TRUE(read.ok()) << read.status();
  ASSERT_EQ(read->tensors.size(), 1u);
  EXPECT_EQ(read->tensors[0].layer, 1);
  EXPECT_EQ(read->tensors[0].module, "q_proj");
  EXPECT_EQ(read->tensors[0].in_features, 3);
  EXPECT_EQ(read->tensors[0].out_features, 5);
  EXPECT_EQ(read->tensors[0].a, std::vector<float>(6, 0.5f));
  EXPECT_EQ(read->tensors[0].b, std::vector<float>(10, -0.25f));
  EXPECT_EQ(read->target_modules, std::vector<std::string>{"all-linear"});
  EXPECT_EQ(read->trained_quantization, "none");  // no lorasweep_training.json
  EXPECT_EQ(read->alpha, 16.0);
  EXPECT_EQ(read->rank, 2);
}

TEST(PeftAdapterTest, BadFoldersNameTheFileAndKey) {
  TempDir tmp("bad");
  const std::string qa = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";
  const std::string qb = "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight";

  EXPECT_THAT(ReadError(tmp.path() + "/missing"), HasSubstr("/missing does not exist"));

  {  // no adapter_config.json
    const std::string dir = tmp.path() + "/no_config";
    fs::create_directories(dir);
    ASSERT_TRUE(WriteSafetensors(dir + "/adapter_model.safetensors",
                                 {{qa, Filled({2, 4}, 1)}, {qb, Filled({4, 2}, 0)}})
                    .ok());
    EXPECT_THAT(ReadError(dir), HasSubstr("missing adapter_config.json"));
  }
  {  // no weights
    const std::string dir = tmp.path() + "/no_weights";
    fs::create_directories(dir);
    ASSERT_TRUE(WriteFileAtomically(dir + "/adapter_config.json", RawConfig().dump()).ok());
    EXPECT_THAT(ReadError(dir), HasSubstr("missing adapter_model.safetensors"));
  }
  {  // lora_A without lora_B
    const std::string dir = tmp.path() + "/unpaired";
    WriteRawAdapter(dir, RawConfig(), {{qa, Filled({2, 4}, 1)}});
    const std::string error = ReadError(dir);
    EXPECT_THAT(error, HasSubstr(dir + "/adapter_model.safetensors"));
    EXPECT_THAT(error, HasSubstr("key '" + qa + "' has no partner '" + qb + "'"));
  }
  {  // shape does not match r
    const std::string dir = tmp.path() + "/shape";
    WriteRawAdapter(dir, RawConfig(2), {{qa, Filled({3, 4}, 1)}, {qb, Filled({4, 3}, 0)}});
    const std::string error = ReadError(dir);
    EXPECT_THAT(error, HasSubstr("key '" + qa + "'"));
    EXPECT_THAT(error, HasSubstr("shape [3, 4] does not match r = 2"));
  }
  {  // B's rank dimension
    const std::string dir = tmp.path() + "/shape_b";
    WriteRawAdapter(dir, RawConfig(2), {{qa, Filled({2, 4}, 1)}, {qb, Filled({4, 3}, 0)}});
    EXPECT_THAT(ReadError(dir), HasSubstr("key '" + qb + "': shape [4, 3] does not match r = 2"));
  }
  {  // unknown key
    const std::string dir = tmp.path() + "/unknown";
    const std::string odd = "base_model.model.lm_head.lora_A.weight";
    WriteRawAdapter(dir, RawConfig(),
                    {{qa, Filled({2, 4}, 1)}, {qb, Filled({4, 2}, 0)}, {odd, Filled({2, 4}, 1)}});
    const std::string error = ReadError(dir);
    EXPECT_THAT(error, HasSubstr("key '" + odd + "': unknown key"));
  }
  for (const auto& [name, key, why] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"block", "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight",
            "puts q_proj under 'mlp'"},
           {"module", "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight",
            "names module 'qkv_proj'"},
           {"layer", "base_model.model.model.layers.x1.self_attn.q_proj.lora_A.weight",
            "layer index 'x1'"},
           {"leading_zero", "base_model.model.model.layers.01.self_attn.q_proj.lora_A.weight",
            "layer index '01'"},
           {"default", "base_model.model.model.layers.0.self_attn.q_proj.lora_A.default.weight",
            "is not '{self_attn|mlp}.{module}.lora_A.weight'"},
       }) {
    const std::string dir = tmp.path() + "/key_" + name;
    WriteRawAdapter(dir, RawConfig(), {{key, Filled({2, 4}, 1)}});
    const std::string error = ReadError(dir);
    EXPECT_THAT(error, HasSubstr("key '" + key + "': unknown key")) << name;
    EXPECT_THAT(error, HasSubstr(why)) << name;
  }
  {  // a module the config does not target
    const std::string dir = tmp.path() + "/untargeted";
    const std::string ka = "base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight";
    WriteRawAdapter(dir, RawConfig(), {{ka, Filled({2, 4}, 1)}});
    EXPECT_THAT(ReadError(dir),
                HasSubstr("key '" + ka + "': module k_proj is not in target_modules"));
  }
  {  // integer tensor
    const std::string dir = tmp.path() + "/dtype";
    WriteRawAdapter(dir, RawConfig(), {{qa, Tensor::Allocate(DType::kI32, {2, 4})}});
    EXPECT_THAT(ReadError(dir),
                HasSubstr("key '" + qa + "': dtype I32 (expected F32, F16 or BF16)"));
  }
  {  // no tensors at all
    const std::string dir = tmp.path() + "/empty";
    WriteRawAdapter(dir, RawConfig(), {});
    EXPECT_THAT(ReadError(dir), HasSubstr("holds no LoRA tensors"));
  }
  const NamedTensors good = {{qa, Filled({2, 4}, 1)}, {qb, Filled({4, 2}, 0)}};
  struct ConfigCase {
    std::string name;
    std::function<void(json*)> mutate;
    std::string expected;
  };
  for (const ConfigCase& c : std::vector<ConfigCase>{
           {"no_r", [](json* j) { j->erase("r"); },
            "adapter_config.json: r: expected an integer >= 1, got nothing"},
           {"r0", [](json* j) { (*j)["r"] = 0; }, "r: expected an integer >= 1, got 0"},
           {"r_str", [](json* j) { (*j)["r"] = "8"; }, "r: expected an integer >= 1, got \"8\""},
           {"alpha", [](json* j) { (*j)["lora_alpha"] = -1; }, "lora_alpha: expected a number > 0"},
           {"dropout", [](json* j) { (*j)["lora_dropout"] = 1.5; },
            "lora_dropout: expected a number in [0, 1)"},
           {"peft_type", [](json* j) { (*j)["peft_type"] = "IA3"; },
            "peft_type: expected \"LORA\""},
           {"dora", [](json* j) { (*j)["use_dora"] = true; },
            "use_dora: DoRA adapters are not supported"},
           {"bias", [](json* j) { (*j)["bias"] = "all"; }, "bias: only \"none\" is supported"},
           {"save", [](json* j) { (*j)["modules_to_save"] = {"lm_head"}; }, "modules_to_save"},
           {"pattern",
            [](json* j) {
              (*j)["rank_pattern"] = {{"q_proj", 8}};
            },
            "rank_pattern"},
           {"targets",
            [](json* j) {
              (*j)["target_modules"] = {"q_proj", "lm_head"};
            },
            "target_modules: unknown module 'lm_head'"},
           {"no_targets", [](json* j) { j->erase("target_modules"); }, "target_modules: missing"},
       }) {
    const std::string dir = tmp.path() + "/config_" + c.name;
    json config = RawConfig();
    c.mutate(&config);
    WriteRawAdapter(dir, config, good);
    const std::string error = ReadError(dir);
    EXPECT_THAT(error, HasSubstr(dir + "/adapter_config.json")) << c.name;
    EXPECT_THAT(error, HasSubstr(c.expected)) << c.name;
  }
  {  // broken JSON
    const std::string dir = tmp.path() + "/config_syntax";
    WriteRawAdapter(dir, RawConfig(), good);
    ASSERT_TRUE(WriteFileAtomically(dir + "/adapter_config.json", std::string("{\"r\": ")).ok());
    EXPECT_THAT(ReadError(dir), HasSubstr("adapter_config.json: invalid JSON"));
  }
  {  // bad training info
    const std::string dir = tmp.path() + "/training";
    WriteRawAdapter(dir, RawConfig(), good);
    ASSERT_TRUE(
        WriteFileAtomically(dir + "/lorasweep_training.json",
                            std::string(R"({"quantization": {"type": "int3", "blocksize": 64,
                                    "double_quant": false}})"))
            .ok());
    EXPECT_THAT(ReadError(dir), HasSubstr("lorasweep_training.json: quantization: trained "
                                          "quantization must be nf4, fp4 or none, got 'int3'"));
  }
}

TEST(PeftAdapterTest, LoraScaling) {
  EXPECT_EQ(LoraScaling(16, 16, false), 1.0);
  EXPECT_EQ(LoraScaling(16, 8, false), 2.0);
  EXPECT_EQ(LoraScaling(16, 16, true), 4.0);
  EXPECT_DOUBLE_EQ(LoraScaling(8, 2, true), 8 / std::sqrt(2.0));
}

// The reference `safetensors` library (and PEFT's LoraConfig when installed) reads the folder.
TEST(PeftAdapterTest, LoadsWithPythonSafetensors) {
  const std::string python = std::string(LORASWEEP_SOURCE_DIR) + "/.venv/bin/python";
  const std::string script =
      std::string(LORASWEEP_SOURCE_DIR) + "/tests/python/check_peft_adapter.py";
  if (!fs::exists(python)) GTEST_SKIP() << "no " << python;
  TempDir tmp("python");
  const std::string dir = tmp.path() + "/adapter";
  const PeftAdapter adapter = MakeAdapter();
  ASSERT_TRUE(WritePeftAdapter(adapter, dir).ok());
  json expected;
  for (const LoraTensor& t : adapter.tensors) {
    for (const char which : {'A', 'B'}) {
      const std::vector<float>& values = which == 'A' ? t.a : t.b;
      double sum = 0;
      for (float v : values) sum += v;
      expected["tensors"][PeftTensorKey(t.layer, t.module, which)] = {
          {"shape", which == 'A' ? std::vector<int64_t>{adapter.rank, t.in_features}
                                 : std::vector<int64_t>{t.out_features, adapter.rank}},
          {"sum", sum}};
    }
  }
  expected["config"] = {
      {"r", adapter.rank},   {"lora_alpha", 8},          {"target_modules", adapter.target_modules},
      {"peft_type", "LORA"}, {"task_type", "CAUSAL_LM"}, {"use_rslora", false}};
  ASSERT_TRUE(WriteFileAtomically(tmp.path() + "/expected.json", expected.dump()).ok());
  absl::StatusOr<ProcessResult> result =
      RunProcess({python, script, dir, tmp.path() + "/expected.json"});
  ASSERT_TRUE(result.ok()) << result.status();
  if (result->exit_code == 77) GTEST_SKIP() << result->output;
  EXPECT_EQ(result->exit_code, 0) << result->output;
}

}  // namespace
}  // namespace lorasweep

// `lorasweep quantize` end to end on a Llama folder written by another tool (tests/data/tiny_llama,
// made by numpy + the reference safetensors library), and the bitsandbytes serialization details.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>

#include "common/dtype.h"
#include "common/file_util.h"
#include "common/subprocess.h"
#include "gtest/gtest.h"
#include "kernels/quantize_4bit.h"
#include "nlohmann/json.hpp"
#include "worker/formats/bnb_checkpoint.h"
#include "worker/formats/hf_config.h"
#include "worker/formats/model_files.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kTinyLlama = std::string(LORASWEEP_TEST_DATA_DIR) + "/tiny_llama";

std::string TempDir(const std::string& name) {
  const std::string dir = ::testing::TempDir() + "lorasweep_" + name;
  fs::remove_all(dir);
  return dir;
}

ProcessResult RunLorasweep(std::vector<std::string> args) {
  args.insert(args.begin(), LORASWEEP_BINARY);
  absl::StatusOr<ProcessResult> r = RunProcess(args);
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : ProcessResult{-1, ""};
}

json LastJsonLine(const std::string& output) {
  std::string text = output;
  while (!text.empty() && text.back() == '\n') text.pop_back();
  const size_t pos = text.rfind('\n');
  return json::parse(pos == std::string::npos ? text : text.substr(pos + 1));
}

// Expected bits per quantized parameter from the storage layout, computed independently of the code:
// packed codes (ceil(n/2) bytes), one absmax per block (1 byte with DQ, 4 without), with DQ one f32
// nested absmax per 256 blocks and the f32 offset.
double ExpectedBits(const std::vector<int64_t>& sizes, int64_t blocksize, bool dq) {
  double bits = 0, params = 0;
  for (int64_t n : sizes) {
    const int64_t blocks = (n + blocksize - 1) / blocksize;
    bits += 8.0 * ((n + 1) / 2);
    bits += dq ? 8.0 * blocks + 32.0 * ((blocks + 255) / 256) + 32.0 : 32.0 * blocks;
    params += static_cast<double>(n);
  }
  return bits / params;
}

// Largest half-gap between adjacent code values: the worst rounding error per unit absmax.
double MaxHalfGap(QuantType type) {
  std::vector<float> code(CodeTable(type).begin(), CodeTable(type).end());
  std::sort(code.begin(), code.end());
  double gap = 0;
  for (size_t i = 1; i < code.size(); ++i) gap = std::max(gap, static_cast<double>(code[i] - code[i - 1]));
  return gap / 2;
}

TEST(PythonFloatReprTest, MatchesPythonRepr) {
  // Right-hand sides printed by CPython 3.11 `repr(float)` (which json.dumps uses).
  EXPECT_EQ(PythonFloatRepr(0.1), "0.1");
  EXPECT_EQ(PythonFloatRepr(1e-5), "1e-05");
  EXPECT_EQ(PythonFloatRepr(0.0001), "0.0001");
  EXPECT_EQ(PythonFloatRepr(1.5e16), "1.5e+16");
  EXPECT_EQ(PythonFloatRepr(1e16), "1e+16");
  EXPECT_EQ(PythonFloatRepr(123456789.125), "123456789.125");
  EXPECT_EQ(PythonFloatRepr(-0.000123), "-0.000123");
  EXPECT_EQ(PythonFloatRepr(1.0 / 3.0), "0.3333333333333333");
  EXPECT_EQ(PythonFloatRepr(2.5e-7), "2.5e-07");
  EXPECT_EQ(PythonFloatRepr(100.0), "100.0");
  EXPECT_EQ(PythonFloatRepr(1e22), "1e+22");
  EXPECT_EQ(PythonFloatRepr(static_cast<double>(0.0123456f)), "0.012345599941909313");
}

TEST(BnbCheckpointTest, QuantStateJsonIsWhatBitsandbytesWrites) {
  Quantized4bit q;
  q.type = QuantType::kNF4;
  q.blocksize = 64;
  q.shape = {20, 40};
  q.double_quant = true;
  q.nested_offset = 0.0123456f;
  // json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": (20, 40),
  //             "nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": <f32>.item()})
  EXPECT_EQ(BnbQuantStateJson(q, "bfloat16"),
            "{\"quant_type\": \"nf4\", \"blocksize\": 64, \"dtype\": \"bfloat16\", \"shape\": [20, "
            "40], \"nested_blocksize\": 256, \"nested_dtype\": \"float32\", \"nested_offset\": "
            "0.012345599941909313}");
  q.double_quant = false;
  q.type = QuantType::kFP4;
  EXPECT_EQ(BnbQuantStateJson(q, "float16"),
            "{\"quant_type\": \"fp4\", \"blocksize\": 64, \"dtype\": \"float16\", \"shape\": [20, "
            "40]}");
}

struct ExportCase {
  std::string quant;
  int64_t blocksize;
  bool double_quant;
};

class QuantizeCommandTest : public ::testing::TestWithParam<ExportCase> {};

TEST_P(QuantizeCommandTest, WritesBitsandbytesFolder) {
  const ExportCase c = GetParam();
  const std::string out = TempDir("quantize_" + c.quant + std::to_string(c.blocksize) +
                                  (c.double_quant ? "_dq" : ""));
  ProcessResult r = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out, "--quant", c.quant,
                         "--blocksize", std::to_string(c.blocksize), "--double-quant",
                         c.double_quant ? "true" : "false", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = LastJsonLine(r.output);

  absl::StatusOr<ModelFiles> source = OpenModelFiles(kTinyLlama);
  ASSERT_TRUE(source.ok()) << source.status();
  absl::StatusOr<ModelFiles> written = OpenModelFiles(out);
  ASSERT_TRUE(written.ok()) << written.status();
  const QuantType type = c.quant == "nf4" ? QuantType::kNF4 : QuantType::kFP4;

  // config.json: the source's fields plus transformers' quantization_config.
  json config = json::parse(*ReadFileToString(out + "/config.json"));
  const json& qc = config["quantization_config"];
  EXPECT_EQ(qc["quant_method"], "bitsandbytes");
  EXPECT_EQ(qc["load_in_4bit"], true);
  EXPECT_EQ(qc["bnb_4bit_quant_type"], c.quant);
  EXPECT_EQ(qc["bnb_4bit_use_double_quant"], c.double_quant);
  EXPECT_EQ(qc["bnb_4bit_quant_storage"], "uint8");
  EXPECT_EQ(qc["bnb_4bit_compute_dtype"], "bfloat16");
  EXPECT_EQ(config["initializer_range"], 0.02);  // a field lorasweep does not model survives
  EXPECT_TRUE(fs::exists(out + "/generation_config.json"));

  std::vector<int64_t> sizes;
  double worst_ratio = 0;
  for (const TensorInfo& info : source->tensors->List()) {
    const std::optional<std::string> prefix = DecoderLinearPrefix(info.name);
    if (!prefix) {
      // Unquantized tensors are carried over bit for bit.
      absl::StatusOr<Tensor> a = source->tensors->Get(info.name);
      absl::StatusOr<Tensor> b = written->tensors->Get(info.name);
      ASSERT_TRUE(a.ok() && b.ok()) << info.name;
      EXPECT_EQ(a->dtype(), b->dtype());
      EXPECT_EQ(a->shape(), b->shape());
      EXPECT_TRUE(std::equal(a->bytes().begin(), a->bytes().end(), b->bytes().begin(), b->bytes().end()))
          << info.name;
      continue;
    }
    const int64_t n = NumElements(info.shape);
    sizes.push_back(n);
    const int64_t blocks = (n + c.blocksize - 1) / c.blocksize;
    // The bitsandbytes key set with its dtypes and shapes (../shared/notes/formats.md).
    auto expect = [&](const std::string& suffix, DType dtype, std::vector<int64_t> shape) {
      absl::StatusOr<Tensor> t = written->tensors->Get(*prefix + ".weight" + suffix);
      ASSERT_TRUE(t.ok()) << *prefix << suffix << ": " << t.status();
      EXPECT_EQ(t->dtype(), dtype) << suffix;
      EXPECT_EQ(t->shape(), shape) << suffix;
    };
    expect("", DType::kU8, {(n + 1) / 2, 1});
    expect(".absmax", c.double_quant ? DType::kU8 : DType::kF32, {blocks});
    expect(".quant_map", DType::kF32, {16});
    if (c.double_quant) {
      expect(".nested_absmax", DType::kF32, {(blocks + 255) / 256});
      expect(".nested_quant_map", DType::kF32, {256});
    } else {
      EXPECT_FALSE(written->tensors->Contains(*prefix + ".weight.nested_absmax"));
    }
    absl::StatusOr<Tensor> state =
        written->tensors->Get(*prefix + ".weight.quant_state.bitsandbytes__" + c.quant);
    ASSERT_TRUE(state.ok());
    json state_json = json::parse(std::string(state->bytes().begin(), state->bytes().end()));
    EXPECT_EQ(state_json["shape"], json(info.shape));
    EXPECT_EQ(state_json["dtype"], "bfloat16");
    EXPECT_EQ(state_json["blocksize"], c.blocksize);

    // Dequantized weights are within the rounding bound of the original, block by block.
    absl::StatusOr<Quantized4bit> q = ReadBnb4bitWeight(*written->tensors, *prefix);
    ASSERT_TRUE(q.ok()) << q.status();
    std::vector<float> restored(static_cast<size_t>(n));
    ASSERT_TRUE(Dequantize4bit(*q, restored).ok());
    std::vector<float> original = *source->tensors->GetFloats(info.name);
    const std::vector<float> stored_absmax = DequantizeAbsmax(*q);
    for (int64_t b = 0; b < blocks; ++b) {
      double absmax = 0;
      const int64_t end = std::min(n, (b + 1) * c.blocksize);
      for (int64_t i = b * c.blocksize; i < end; ++i) absmax = std::max(absmax, std::fabs(double(original[i])));
      const double absmax_error = std::fabs(stored_absmax[b] - absmax);
      for (int64_t i = b * c.blocksize; i < end; ++i) {
        const double err = std::fabs(double(restored[i]) - original[i]);
        const double bound = MaxHalfGap(type) * absmax + absmax_error + 1e-6 * absmax;
        ASSERT_LE(err, bound) << info.name << " element " << i;
        worst_ratio = std::max(worst_ratio, err / absmax);
      }
    }
  }
  EXPECT_GT(worst_ratio, 0.0);  // quantization did lose information: the comparison is not vacuous
  int64_t total = 0;
  for (int64_t n : sizes) total += n;
  EXPECT_EQ(sizes.size(), 14u);  // 2 layers x 7 linears
  EXPECT_EQ(report["quantized_params"], total);
  EXPECT_NEAR(report["bits_per_param"].get<double>(), ExpectedBits(sizes, c.blocksize, c.double_quant),
              1e-9);
  EXPECT_GT(report["rmse"].get<double>(), 0.0);
  fs::remove_all(out);
}

INSTANTIATE_TEST_SUITE_P(Variants, QuantizeCommandTest,
                         ::testing::Values(ExportCase{"nf4", 64, true}, ExportCase{"nf4", 64, false},
                                           ExportCase{"fp4", 64, true}, ExportCase{"nf4", 128, true},
                                           ExportCase{"nf4", 32, false}));

TEST(QuantizeCliTest, InspectReportsTheQuantizedFolder) {
  const std::string out = TempDir("quantize_inspect");
  ASSERT_EQ(RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out}).exit_code, 0);
  ProcessResult r = RunLorasweep({"inspect", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json j = LastJsonLine(r.output);
  EXPECT_EQ(j["kind"], "hf-folder");
  EXPECT_EQ(j["config"]["hidden_size"], 40);
  EXPECT_EQ(j["config"]["num_key_value_heads"], 2);
  EXPECT_EQ(j["quantization"]["bitsandbytes"]["quantized_modules"], 14);
  EXPECT_EQ(j["quantization"]["bitsandbytes"]["quant_type"], "nf4");
  EXPECT_EQ(j["quantization"]["bitsandbytes"]["double_quant"], true);
  fs::remove_all(out);
}

TEST(QuantizeCliTest, ShardsLargeOutputs) {
  const std::string out = TempDir("quantize_sharded");
  // The tiny model is ~60 KB: 20 KB shards force several files plus the index, as transformers writes.
  ProcessResult r = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out, "--max-shard-size", "20KB"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(out + "/model.safetensors.index.json"));
  EXPECT_FALSE(fs::exists(out + "/model.safetensors"));
  absl::StatusOr<ModelFiles> sharded = OpenModelFiles(out);
  ASSERT_TRUE(sharded.ok()) << sharded.status();
  absl::StatusOr<Quantized4bit> q =
      ReadBnb4bitWeight(*sharded->tensors, "model.layers.1.mlp.down_proj");
  EXPECT_TRUE(q.ok()) << q.status();
  ProcessResult bad = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out + "x", "--max-shard-size", "5XB"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("max-shard-size"), std::string::npos) << bad.output;
  fs::remove_all(out);
}

TEST(QuantizeCliTest, ClearErrorsAndNothingHalfWritten) {
  const std::string out = TempDir("quantize_errors");
  ProcessResult missing = RunLorasweep({"quantize", "--model", "/nonexistent/model", "--out", out});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.output.find("/nonexistent/model"), std::string::npos) << missing.output;
  EXPECT_FALSE(fs::exists(out));

  ProcessResult no_model = RunLorasweep({"quantize", "--out", out});
  EXPECT_NE(no_model.exit_code, 0);
  EXPECT_NE(no_model.output.find("--model"), std::string::npos);

  ProcessResult bad_blocksize = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out, "--blocksize", "48"});
  EXPECT_NE(bad_blocksize.exit_code, 0);
  EXPECT_NE(bad_blocksize.output.find("blocksize"), std::string::npos) << bad_blocksize.output;
  EXPECT_FALSE(fs::exists(out));
  for (const auto& entry : fs::directory_iterator(fs::path(out).parent_path())) {
    EXPECT_EQ(entry.path().string().find(out + ".partial"), std::string::npos) << entry.path();
  }

  ProcessResult bad_quant = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out, "--quant", "int4"});
  EXPECT_NE(bad_quant.exit_code, 0);
  EXPECT_NE(bad_quant.output.find("int4"), std::string::npos) << bad_quant.output;

  ProcessResult unknown_flag = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out, "--rank", "3"});
  EXPECT_EQ(unknown_flag.exit_code, 2);
  EXPECT_NE(unknown_flag.output.find("--rank"), std::string::npos);

  // An existing, non-empty output folder is never overwritten.
  fs::create_directories(out);
  ASSERT_TRUE(WriteFileAtomically(out + "/keep.txt", std::string("mine")).ok());
  ProcessResult exists = RunLorasweep({"quantize", "--model", kTinyLlama, "--out", out});
  EXPECT_NE(exists.exit_code, 0);
  EXPECT_EQ(*ReadFileToString(out + "/keep.txt"), "mine");
  fs::remove_all(out);
}

TEST(HfConfigTest, RejectsUnsupportedArchitecturesByField) {
  absl::StatusOr<LlamaConfig> gpt2 = ParseHfConfig(R"({"model_type": "gpt2", "n_embd": 768})", "x/config.json");
  ASSERT_FALSE(gpt2.ok());
  EXPECT_NE(std::string(gpt2.status().message()).find("x/config.json"), std::string::npos);
  EXPECT_NE(std::string(gpt2.status().message()).find("model_type"), std::string::npos);

  const std::string base = R"("model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100)";
  EXPECT_TRUE(ParseHfConfig("{" + base + "}", "c").ok());
  for (const std::string& bad : {std::string(R"(, "num_key_value_heads": 3)"),
                                 std::string(R"(, "hidden_act": "gelu")"),
                                 std::string(R"(, "mlp_bias": true)"),
                                 std::string(R"(, "rope_scaling": {"rope_type": "longrope", "factor": 2})"),
                                 std::string(R"(, "head_dim": 15)")}) {
    absl::StatusOr<LlamaConfig> c = ParseHfConfig("{" + base + bad + "}", "c");
    EXPECT_FALSE(c.ok()) << bad;
  }
  absl::StatusOr<LlamaConfig> missing = ParseHfConfig(R"({"model_type": "llama"})", "c");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(std::string(missing.status().message()).find("hidden_size"), std::string::npos);

  absl::StatusOr<LlamaConfig> llama3 = ParseHfConfig(
      "{" + base +
          R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
             "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}, "num_key_value_heads": 2})",
      "c");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_EQ(llama3->rope_scaling.type, "llama3");
  EXPECT_EQ(llama3->num_key_value_heads, 2);
  EXPECT_EQ(llama3->head_dim, 16);
  // Round trip through config.json text.
  absl::StatusOr<LlamaConfig> again = ParseHfConfig(HfConfigToJson(*llama3), "c2");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->rope_scaling.original_max_position_embeddings, 8192);
  EXPECT_EQ(again->NumParameters(), llama3->NumParameters());
}

TEST(HfConfigTest, NumParametersOfSmolLM2) {
  LlamaConfig c;
  c.hidden_size = 576;
  c.intermediate_size = 1536;
  c.num_hidden_layers = 30;
  c.num_attention_heads = 9;
  c.num_key_value_heads = 3;
  c.head_dim = 64;
  c.vocab_size = 49152;
  c.tie_word_embeddings = true;
  // The published size of SmolLM2-135M: 134,515,008 parameters.
  EXPECT_EQ(c.NumParameters(), 134515008);
}

}  // namespace
}  // namespace lorasweep

namespace lorasweep {
namespace {

// The real model (fetched by `lorasweep fetch-model smollm2-135m-instruct --out models/smollm2-135m-instruct`),
// when present: NF4 + DQ at blocksize 64 costs 4.127 bits per quantized parameter.
TEST(QuantizeCliTest, SmolLM2GgufTo4127Bits) {
  const std::string gguf =
      std::string(LORASWEEP_SOURCE_DIR) + "/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
  if (!fs::exists(gguf)) GTEST_SKIP() << "SmolLM2 GGUF not fetched";
  const std::string out = TempDir("quantize_smollm2");
  ProcessResult r = RunLorasweep({"quantize", "--model", gguf, "--out", out, "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const json report = LastJsonLine(r.output);
  // 30 layers x (q 576x576 + k,v 192x576 + o 576x576 + gate,up 1536x576 + down 576x1536).
  EXPECT_EQ(report["quantized_params"], 30 * (576 * 576 * 2 + 192 * 576 * 2 + 1536 * 576 * 3));
  EXPECT_EQ(report["quantized_tensors"], 210);
  EXPECT_NEAR(report["bits_per_param"].get<double>(), 4.127, 0.0005);
  absl::StatusOr<ModelFiles> written = OpenModelFiles(out);
  ASSERT_TRUE(written.ok()) << written.status();
  EXPECT_EQ(written->config->num_hidden_layers, 30);
  EXPECT_TRUE(written->config->tie_word_embeddings);
  fs::remove_all(out);
}

}  // namespace
}  // namespace lorasweep

namespace lorasweep {
namespace {

TEST(HfConfigTest, DecoderLinearPrefix) {
  EXPECT_EQ(DecoderLinearPrefix("model.layers.12.self_attn.q_proj.weight"), "model.layers.12.self_attn.q_proj");
  EXPECT_EQ(DecoderLinearPrefix("model.layers.0.mlp.down_proj.weight"), "model.layers.0.mlp.down_proj");
  EXPECT_EQ(DecoderLinearPrefix("model.layers.0.mlp.q_proj.weight"), std::nullopt);
  EXPECT_EQ(DecoderLinearPrefix("model.layers.0.self_attn.q_proj.bias"), std::nullopt);
  EXPECT_EQ(DecoderLinearPrefix("model.layers.x.mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(DecoderLinearPrefix("model.layers..mlp.up_proj.weight"), std::nullopt);
  EXPECT_EQ(DecoderLinearPrefix("model.embed_tokens.weight"), std::nullopt);
  EXPECT_EQ(DecoderLinearPrefix("lm_head.weight"), std::nullopt);
}

}  // namespace
}  // namespace lorasweep

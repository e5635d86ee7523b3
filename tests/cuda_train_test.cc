// The CUDA worker end to end against the CPU reference: the same trial (a random Llama with
// head_dim 32, NF4 + double quantization, LoRA on all linears with dropout) trained for 10 steps
// by `lorasweep train` with device: cpu and with device: cuda. Every step's loss and gradient norm,
// the eval loss and the final adapter must agree within bf16 tolerances. Also checks the
// out-of-memory path. Built with the CUDA backend; skips without a GPU.
#include <cmath>
#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/train_test_util.h"
#include "worker/cuda/cuda_status.h"
#include "worker/cuda/device_buffer.h"
#include "worker/formats/hf_config.h"
#include "worker/formats/safetensors.h"
#include "worker/model/random_llama.h"

namespace lorasweep {
namespace {

// A random Llama written as a Hugging Face folder (float32 safetensors + config.json).
std::string WriteRandomModel(const std::string& name, const LlamaConfig& c) {
  const std::string dir = NewDir(name);
  BaseQuantization none;
  none.type = std::nullopt;
  absl::StatusOr<LlamaWeights> w = RandomLlamaWeights(c, none, 7);
  EXPECT_TRUE(w.ok()) << w.status();
  NamedTensors tensors;
  auto add = [&](const std::string& tensor, std::vector<int64_t> shape, const float* values) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    tensors.emplace_back(tensor, Tensor::FromFloats(shape, std::span<const float>(values, n)));
  };
  const int64_t H = c.hidden_size, V = c.vocab_size;
  add("model.embed_tokens.weight", {V, H}, w->embed_tokens.data());
  add("lm_head.weight", {V, H}, w->lm_head.data());
  add("model.norm.weight", {H}, w->final_norm.data());
  std::vector<float> scratch;
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LlamaLayerWeights& layer = w->layers[l];
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {H}, layer.input_norm.data());
    add(p + "post_attention_layernorm.weight", {H}, layer.post_attention_norm.data());
    for (int m = 0; m < kNumLinearModules; ++m) {
      const FrozenLinear& f = layer.linears[m];
      add(LinearModulePrefix(l, LinearModuleName(m)) + ".weight",
          {f.out_features(), f.in_features()}, f.Weight(&scratch));
    }
  }
  EXPECT_TRUE(WriteSafetensorsCheckpoint(dir, tensors).ok());
  std::ofstream(dir + "/config.json") << HfConfigToJson(c);
  return dir;
}

LlamaConfig SmallConfig() {
  LlamaConfig c;
  c.hidden_size = 128;
  c.intermediate_size = 320;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 32;
  c.vocab_size = 96;
  c.max_position_embeddings = 256;
  c.rms_norm_eps = 1e-5;
  return c;
}

std::string TrialYaml(const std::string& model, const std::string& data,
                      const std::string& device) {
  return "model: " + model + "\n" + "device: " + device + "\n" +
         "quantization: {type: nf4, blocksize: 64, double_quant: true}\n"
         "lora: {rank: 8, alpha: 16, dropout: 0.05, target_modules: all-linear}\n"
         "data: {path: " +
         data +
         "}\n"
         "train: {steps: 10, micro_batch: 4, grad_accum: 2, learning_rate: 1.0e-3, warmup_steps: 2,"
         " eval_every: 5, eval_batches: 2, seed: 3, threads: 1, activation_checkpointing: true}\n";
}

std::vector<float> AdapterValues(const std::string& dir) {
  absl::StatusOr<std::unique_ptr<SafetensorsFile>> f =
      SafetensorsFile::Open(dir + "/adapter/adapter_model.safetensors");
  EXPECT_TRUE(f.ok()) << f.status();
  std::vector<float> all;
  if (!f.ok()) return all;
  for (const TensorInfo& info : (*f)->List()) {
    absl::StatusOr<std::vector<float>> v = (*f)->GetFloats(info.name);
    EXPECT_TRUE(v.ok()) << info.name;
    if (v.ok()) all.insert(all.end(), v->begin(), v->end());
  }
  return all;
}

TEST(CudaTrainTest, TenStepsMatchTheCpuBackend) {
  if (CudaDeviceCount() == 0) {
    GTEST_SKIP() << "no CUDA device visible";
  }
  const std::string model = WriteRandomModel("cuda_e2e_model", SmallConfig());
  const std::string data = MakeDataset("cuda_e2e_data", 64, 16);
  std::map<std::string, std::vector<nlohmann::json>> metrics;
  std::map<std::string, std::vector<float>> adapters;
  for (const std::string device : {"cpu", "cuda"}) {
    const std::string dir = NewDir("cuda_e2e_" + device);
    std::ofstream(dir + "/config.yaml") << TrialYaml(model, data, device);
    const ProcessResult r =
        RunLorasweep({"train", "--config", dir + "/config.yaml", "--out", dir + "/run"});
    ASSERT_EQ(r.exit_code, 0) << r.output;
    if (device == "cuda") {
      EXPECT_THAT(r.output, testing::HasSubstr("device cuda:"));
    }
    metrics[device] = ReadMetrics(dir + "/run");
    adapters[device] = AdapterValues(dir + "/run");
  }
  const auto& cpu = metrics["cpu"];
  const auto& gpu = metrics["cuda"];
  ASSERT_EQ(cpu.size(), gpu.size());
  int losses = 0;
  for (size_t i = 0; i < cpu.size(); ++i) {
    for (const char* key : {"loss", "eval_loss", "grad_norm"}) {
      if (!cpu[i].contains(key)) continue;
      ASSERT_TRUE(gpu[i].contains(key)) << i << " " << key;
      const double a = cpu[i][key], b = gpu[i][key];
      // bf16 operands (8-bit mantissa) through 2 layers: a few 1e-3 relative on the loss.
      const double tolerance = std::string(key) == "grad_norm" ? 5e-2 : 1e-2;
      EXPECT_NEAR(b, a, tolerance * std::abs(a)) << "line " << i << " " << key;
      losses += std::string(key) == "loss";
    }
    if (gpu[i].contains("loss")) {
      EXPECT_GT(gpu[i]["peak_gpu_bytes"].get<int64_t>(), 0);
    }
  }
  EXPECT_EQ(losses, 10);
  const std::vector<float>& a = adapters["cpu"];
  const std::vector<float>& b = adapters["cuda"];
  ASSERT_EQ(a.size(), b.size());
  ASSERT_FALSE(a.empty());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
    norm += static_cast<double>(a[i]) * a[i];
  }
  EXPECT_LT(std::sqrt(diff / norm), 2e-2);
}

// Every device allocation of the worker goes through DeviceAllocate: a request beyond the GPU is a
// kResourceExhausted Status naming what was asked and what is free (the trainer returns it, the
// sweep records the trial as failed with that message), not an abort.
TEST(CudaTrainTest, OutOfMemoryIsAnErrorNamingRequestedAndFreeBytes) {
  if (CudaDeviceCount() == 0) {
    GTEST_SKIP() << "no CUDA device visible";
  }
  absl::StatusOr<void*> p = DeviceAllocate(int64_t{1} << 40, "test buffer");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(p.status().message(), testing::HasSubstr("requested 1024.00 GiB, free"));
  // The device is still usable afterwards.
  absl::StatusOr<void*> small = DeviceAllocate(1 << 20, "test buffer");
  ASSERT_TRUE(small.ok()) << small.status();
  cudaFree(*small);
}

}  // namespace
}  // namespace lorasweep

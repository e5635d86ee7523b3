// `lorasweep merge` on the tiny Llama (tests/data/tiny_llama): the merged folder, loaded as a bare
// model, computes what base + adapter computes; its tensors equal W + s * B @ A computed here in
// double; the NF4 re-quantization stays within the bitsandbytes per-element bound and a stated loss
// bound.
#include <cmath>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/quantize_4bit.h"
#include "nlohmann/json.hpp"
#include "tests/train_test_util.h"
#include "worker/adapters/merge.h"
#include "worker/formats/bnb_checkpoint.h"
#include "worker/formats/hf_config.h"
#include "worker/formats/model_files.h"
#include "worker/formats/safetensors.h"
#include "worker/model/generator.h"
#include "worker/model/llama_model.h"
#include "worker/train/adapter_params.h"
#include "worker/train/peft_adapter.h"

namespace lorasweep {
namespace {

// [out, in] of each module of the tiny model (hidden 40, 4 heads x 10, 2 KV heads, FFN 100).
std::pair<int64_t, int64_t> TinyShape(const std::string& module) {
  if (module == "k_proj" || module == "v_proj") return {20, 40};
  if (module == "gate_proj" || module == "up_proj") return {100, 40};
  if (module == "down_proj") return {40, 100};
  return {40, 40};
}

PeftAdapter RandomAdapter(int rank, double alpha, const std::vector<std::string>& modules,
                          uint32_t seed, float b_scale) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  PeftAdapter a;
  a.base_model_name_or_path = kTinyModel;
  a.rank = rank;
  a.alpha = alpha;
  a.target_modules = modules;
  for (int layer = 0; layer < 2; ++layer) {
    for (const std::string& m : modules) {
      LoraTensor t;
      t.layer = layer;
      t.module = m;
      std::tie(t.out_features, t.in_features) = TinyShape(m);
      for (int64_t i = 0; i < rank * t.in_features; ++i) t.a.push_back(u(rng) / 6.0f);
      for (int64_t i = 0; i < t.out_features * rank; ++i) t.b.push_back(u(rng) * b_scale);
      a.tensors.push_back(std::move(t));
    }
  }
  return a;
}

struct Loaded {
  std::unique_ptr<LlamaWeights> weights;
  std::unique_ptr<LoraLayout> layout;
  std::unique_ptr<LlamaModel> model;
  std::vector<float> params;
};

Loaded Load(const std::string& path, const BaseQuantization& quant, const PeftAdapter* adapter) {
  Loaded l;
  absl::StatusOr<LlamaWeights> w = LoadLlamaWeights(path, quant);
  EXPECT_TRUE(w.ok()) << w.status();
  l.weights = std::make_unique<LlamaWeights>(*std::move(w));
  LoraOptions options;
  if (adapter) options = LoraOptionsFromAdapter(*adapter);
  else options.target_modules = {};
  absl::StatusOr<LoraLayout> layout = LoraLayout::Create(*l.weights, options);
  EXPECT_TRUE(layout.ok()) << layout.status();
  l.layout = std::make_unique<LoraLayout>(*std::move(layout));
  if (adapter) {
    absl::StatusOr<std::vector<float>> p = ParamsFromAdapter(*adapter, *l.layout);
    EXPECT_TRUE(p.ok()) << p.status();
    l.params = *std::move(p);
  }
  l.model = std::make_unique<LlamaModel>(*l.weights, *l.layout);
  return l;
}

BaseQuantization NoQuant() {
  BaseQuantization q;
  q.type = std::nullopt;
  return q;
}

// Logits after every prefix of a fixed 24-token sequence, and the mean loss of the sequence.
std::vector<float> Logits(Loaded& l) {
  Generator gen(*l.model, l.params.empty() ? nullptr : l.params.data());
  std::vector<float> all;
  for (int32_t t = 0; t < 24; ++t) {
    const int32_t token = (7 * t + 3) % 64;
    const std::vector<float> logits = gen.Feed(std::span<const int32_t>(&token, 1));
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

double Loss(Loaded& l) {
  std::vector<int32_t> ids(2 * 32);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>((i * 5 + i / 7) % 64);
  MicroBatch batch{2, 32, ids.data(), nullptr};
  RunOptions options;
  const RunResult r = l.model->Run(batch, l.params.empty() ? nullptr : l.params.data(), nullptr,
                                   options);
  return r.loss_sum / static_cast<double>(r.num_targets);
}

nlohmann::json LastJson(const std::string& output) {
  return nlohmann::json::parse(output.substr(output.rfind('{')));
}

std::map<std::string, std::vector<float>> ReadAll(const std::string& path) {
  absl::StatusOr<ModelFiles> m = OpenModelFiles(path);
  EXPECT_TRUE(m.ok()) << m.status();
  std::map<std::string, std::vector<float>> out;
  for (const TensorInfo& info : m->tensors->List()) out[info.name] = *m->tensors->GetFloats(info.name);
  return out;
}

TEST(MergeTest, UnquantizedMergeMatchesBasePlusAdapter) {
  const std::string dir = NewDir("merge_plain");
  const PeftAdapter adapter =
      RandomAdapter(4, 8, {"q_proj", "v_proj", "o_proj", "gate_proj", "down_proj"}, 1, 0.05f);
  ASSERT_TRUE(WritePeftAdapter(adapter, dir + "/adapter").ok());
  const ProcessResult r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter",
                                        dir + "/adapter", "--out", dir + "/merged", "--dtype",
                                        "f32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = LastJson(r.output);
  EXPECT_EQ(j["merged_modules"], 10);
  EXPECT_EQ(j["base"], "original");
  EXPECT_GT(j["delta_rms"].get<double>(), 1e-3);  // the adapter really changes the weights
  for (const char* f : {"config.json", "generation_config.json", "model.safetensors"}) {
    EXPECT_TRUE(std::filesystem::exists(dir + "/merged/" + f)) << f;
  }

  Loaded merged = Load(dir + "/merged", NoQuant(), nullptr);
  Loaded with = Load(kTinyModel, NoQuant(), &adapter);
  Loaded base = Load(kTinyModel, NoQuant(), nullptr);
  const std::vector<float> lm = Logits(merged), la = Logits(with), lb = Logits(base);
  ASSERT_EQ(lm.size(), la.size());
  double max_diff = 0, max_base_diff = 0;
  for (size_t i = 0; i < lm.size(); ++i) {
    max_diff = std::max(max_diff, std::fabs(static_cast<double>(lm[i]) - la[i]));
    max_base_diff = std::max(max_base_diff, std::fabs(static_cast<double>(lb[i]) - la[i]));
  }
  EXPECT_LT(max_diff, 2e-5) << "merged vs base+adapter logits";
  EXPECT_GT(max_base_diff, 100 * max_diff) << "the adapter must matter for the check to mean anything";
  EXPECT_NEAR(Loss(merged), Loss(with), 1e-5);

  // Every merged tensor against W + s * B @ A computed here in double, loop order (k outermost)
  // different from the library's; the rest byte for byte the base.
  const auto base_t = ReadAll(kTinyModel), merged_t = ReadAll(dir + "/merged");
  ASSERT_EQ(base_t.size(), merged_t.size());
  const double s = 8.0 / 4.0;
  std::map<std::string, const LoraTensor*> by_name;
  for (const LoraTensor& t : adapter.tensors) {
    by_name[LinearModulePrefix(t.layer, t.module) + ".weight"] = &t;
  }
  int checked = 0;
  for (const auto& [name, values] : base_t) {
    ASSERT_TRUE(merged_t.count(name)) << name;
    const std::vector<float>& got = merged_t.at(name);
    auto it = by_name.find(name);
    if (it == by_name.end()) {
      EXPECT_EQ(got, values) << name;
      continue;
    }
    const LoraTensor& t = *it->second;
    std::vector<double> ref(values.begin(), values.end());
    std::vector<double> delta(values.size(), 0.0);
    for (int k = 0; k < 4; ++k) {
      for (int64_t o = 0; o < t.out_features; ++o) {
        for (int64_t i = 0; i < t.in_features; ++i) {
          delta[o * t.in_features + i] +=
              static_cast<double>(t.b[o * 4 + k]) * t.a[k * t.in_features + i];
        }
      }
    }
    for (size_t e = 0; e < ref.size(); ++e) {
      ref[e] += s * delta[e];
      ASSERT_NEAR(got[e], ref[e], 1e-7 + 1e-6 * std::fabs(ref[e])) << name << " element " << e;
    }
    ++checked;
  }
  EXPECT_EQ(checked, 10);
}

TEST(MergeTest, Bf16OutputAndErrors) {
  const std::string dir = NewDir("merge_bf16");
  const PeftAdapter adapter = RandomAdapter(2, 4, {"q_proj", "k_proj", "v_proj"}, 2, 0.05f);
  ASSERT_TRUE(WritePeftAdapter(adapter, dir + "/adapter").ok());
  ProcessResult r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", dir + "/adapter",
                                  "--out", dir + "/merged", "--dtype", "bf16", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = LastJson(r.output);
  EXPECT_GT(j["storage_max_abs_error"].get<double>(), 0.0);
  const nlohmann::json config =
      nlohmann::json::parse(ReadBytes(dir + "/merged/config.json"));
  EXPECT_EQ(config["torch_dtype"], "bfloat16");
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> ck =
      SafetensorsCheckpoint::Open(dir + "/merged");
  ASSERT_TRUE(ck.ok());
  for (const TensorInfo& info : (*ck)->List()) EXPECT_EQ(info.dtype, DType::kBF16) << info.name;

  // Merging again replaces the folder as a whole.
  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", dir + "/adapter", "--out",
                    dir + "/merged", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  absl::StatusOr<std::unique_ptr<SafetensorsCheckpoint>> again =
      SafetensorsCheckpoint::Open(dir + "/merged");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->List()[0].dtype, DType::kF32);

  // An adapter of another base: the shape mismatch names the adapter and the tensor.
  PeftAdapter wrong = adapter;
  for (LoraTensor& t : wrong.tensors) {
    t.in_features = 30;
    t.a.resize(2 * 30);
  }
  ASSERT_TRUE(WritePeftAdapter(wrong, dir + "/wrong").ok());
  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", dir + "/wrong", "--out",
                    dir + "/merged_wrong"});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find(dir + "/wrong"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("model.layers.0.self_attn.q_proj.weight"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir + "/merged_wrong"));
  // The base model's own folder is refused as --out.
  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", dir + "/adapter", "--out",
                    kTinyModel});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("base model's own folder"), std::string::npos) << r.output;
}

// An adapter trained against the NF4 base: merging into that base (the default) reproduces its
// eval loss; re-quantizing the merged model to NF4 adds a bounded error.
TEST(MergeTest, TrainedNf4AdapterAndRequantization) {
  const std::string data = MakeDataset("merge_nf4_data", 16, 4);
  const std::string dir = NewDir("merge_nf4");
  const std::string config = WriteConfig(
      dir, data, "lora: {rank: 8, alpha: 16, dropout: 0.0, target_modules: all-linear}\n",
      "steps: 60, micro_batch: 4, learning_rate: 2.0e-2, schedule: constant, warmup_steps: 0, "
      "max_grad_norm: 1.0, eval_every: 60, threads: 1");
  ProcessResult r = RunLorasweep({"train", "--config", config, "--out", dir + "/run"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string adapter = dir + "/run/adapter";
  auto eval = [&](const std::vector<std::string>& extra) {
    std::vector<std::string> args = {"eval", "--data", data, "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    const ProcessResult e = RunLorasweep(args);
    EXPECT_EQ(e.exit_code, 0) << e.output;
    return e.exit_code == 0 ? LastJson(e.output)["loss"].get<double>() : 0.0;
  };
  const double adapter_loss = eval({"--model", kTinyModel, "--adapter", adapter});
  const double nf4_base_loss = eval({"--model", kTinyModel, "--quant", "nf4"});
  ASSERT_LT(adapter_loss, nf4_base_loss - 1.0) << "the adapter must have learned something";

  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", adapter, "--out",
                    dir + "/merged", "--dtype", "f32", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(LastJson(r.output)["base"], "nf4 (blocksize 64, double quant)");
  const double merged_loss = eval({"--model", dir + "/merged"});
  EXPECT_NEAR(merged_loss, adapter_loss, 1e-5);

  // A bitsandbytes checkpoint of the base (`lorasweep quantize`, the same NF4 settings) is
  // dequantized, not quantized again: the merge is byte for byte the same.
  r = RunLorasweep({"quantize", "--model", kTinyModel, "--out", dir + "/base_nf4"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = RunLorasweep({"merge", "--model", dir + "/base_nf4", "--adapter", adapter, "--out",
                    dir + "/merged_from_bnb", "--dtype", "f32"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(ReadBytes(dir + "/merged_from_bnb/model.safetensors"),
            ReadBytes(dir + "/merged/model.safetensors"));
  EXPECT_EQ(nlohmann::json::parse(ReadBytes(dir + "/merged_from_bnb/config.json"))
                .count("quantization_config"), 0u);

  // Into the original (unquantized) weights: a different model, as close as the base's own NF4
  // error allows.
  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", adapter, "--out",
                    dir + "/merged_orig", "--dtype", "f32", "--merge-into", "original"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double orig_loss = eval({"--model", dir + "/merged_orig"});
  EXPECT_GT(std::fabs(orig_loss - adapter_loss), 1e-4);

  // NF4 re-quantization of the merged model.
  r = RunLorasweep({"merge", "--model", kTinyModel, "--adapter", adapter, "--out",
                    dir + "/merged_nf4", "--quant", "nf4", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = LastJson(r.output);
  EXPECT_NEAR(j["bits_per_param"].get<double>(), 4.127, 0.05);
  const nlohmann::json qconfig = nlohmann::json::parse(ReadBytes(dir + "/merged_nf4/config.json"));
  EXPECT_EQ(qconfig["quantization_config"]["bnb_4bit_quant_type"], "nf4");

  // Dequantize it here, check every element against bitsandbytes' bound
  // |x - code * absmax'| <= (half the widest NF4 code gap) * absmax + |absmax' - absmax|, recompute the
  // reported rmse, and write the dequantized weights as an f32 folder to evaluate.
  const auto merged_t = ReadAll(dir + "/merged");
  absl::StatusOr<ModelFiles> qfiles = OpenModelFiles(dir + "/merged_nf4");
  ASSERT_TRUE(qfiles.ok()) << qfiles.status();
  // The widest gap of the NF4 code table is between -1 and -0.6961928.
  const double half_gap = (1.0 - 0.6961928009986877) / 2;
  NamedTensors dequantized;
  double squares = 0;
  int64_t count = 0;
  for (const auto& [name, values] : merged_t) {
    const std::optional<std::string> prefix = DecoderLinearPrefix(name);
    if (!prefix) {
      dequantized.emplace_back(name, *(*qfiles->tensors).Get(name));
      continue;
    }
    absl::StatusOr<Quantized4bit> q = ReadBnb4bitWeight(*qfiles->tensors, *prefix);
    ASSERT_TRUE(q.ok()) << q.status();
    std::vector<float> restored(values.size());
    ASSERT_TRUE(Dequantize4bit(*q, restored).ok());
    const std::vector<float> absmax = DequantizeAbsmax(*q);
    for (size_t e = 0; e < values.size(); ++e) {
      const int64_t block = static_cast<int64_t>(e) / 64;
      double true_absmax = 0;
      for (int64_t k = block * 64; k < std::min<int64_t>((block + 1) * 64, values.size()); ++k) {
        true_absmax = std::max(true_absmax, std::fabs(static_cast<double>(values[k])));
      }
      const double err = std::fabs(static_cast<double>(restored[e]) - values[e]);
      ASSERT_LE(err, half_gap * true_absmax + std::fabs(absmax[block] - true_absmax) + 1e-7)
          << name << " element " << e;
      squares += err * err;
      ++count;
    }
    dequantized.emplace_back(name, Tensor::FromFloats(q->shape, restored));
  }
  EXPECT_NEAR(j["quant_rmse"].get<double>(), std::sqrt(squares / count),
              1e-6 * j["quant_rmse"].get<double>());
  const std::string deq_dir = dir + "/merged_nf4_dequantized";
  ASSERT_TRUE(WriteSafetensorsCheckpoint(deq_dir, dequantized).ok());
  nlohmann::json plain = qconfig;
  plain.erase("quantization_config");
  ASSERT_TRUE(WriteFileAtomically(deq_dir + "/config.json", plain.dump()).ok());
  const double requantized_loss = eval({"--model", deq_dir});
  // The stated bound (docs/adapters.md): on this model, re-quantizing the merged model to NF4
  // gives back at most 5% of what the adapter gained over the NF4 base (measured: ~1.4%).
  const double f32_base_loss = eval({"--model", kTinyModel, "--quant", "none"});
  const double bound = 0.05 * (nf4_base_loss - adapter_loss);
  std::printf("tiny model: adapter %.6f merged %.6f merged-original %.6f re-quantized %.6f; "
              "base f32 %.6f nf4 %.6f; quant rmse %.4g max %.4g\n",
              adapter_loss, merged_loss, orig_loss, requantized_loss, f32_base_loss, nf4_base_loss,
              j["quant_rmse"].get<double>(), j["quant_max_abs_error"].get<double>());
  EXPECT_LE(std::fabs(requantized_loss - adapter_loss), bound);
}

}  // namespace
}  // namespace lorasweep

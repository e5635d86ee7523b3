#include "worker/train/trial_config.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/message.h"
#include "google/protobuf/util/json_util.h"
#include "yaml-cpp/yaml.h"

namespace lorasweep {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// "FILE:LINE" when the node knows where it came from, else "FILE".
std::string Where(const std::string& source, const YAML::Mark& mark) {
  if (mark.is_null() || mark.line < 0) return source;
  return absl::StrCat(source, ":", mark.line + 1);
}

std::string JoinPath(const std::string& prefix, const std::string& key) {
  return prefix.empty() ? key : absl::StrCat(prefix, ".", key);
}

bool IsQuoted(const YAML::Node& node) { return node.Tag() == "!"; }

// What a node is, for "got ..." in error messages.
std::string Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Null:
      return "no value (null)";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Scalar:
      if (IsQuoted(node)) return absl::StrCat("the string \"", node.Scalar(), "\"");
      return absl::StrCat("'", node.Scalar(), "'");
    default:
      return "nothing";
  }
}

std::string Expected(const FieldDescriptor* field) {
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64:
      return "an integer";
    case FieldDescriptor::CPPTYPE_UINT32:
    case FieldDescriptor::CPPTYPE_UINT64:
      return "a non-negative integer";
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT:
      return "a number";
    case FieldDescriptor::CPPTYPE_BOOL:
      return "true or false";
    case FieldDescriptor::CPPTYPE_STRING:
      return "a string";
    case FieldDescriptor::CPPTYPE_ENUM:
      return "one of the names of " + field->enum_type()->name();
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return "a map";
  }
  return "a value";
}

absl::Status TypeError(const std::string& source, const YAML::Node& node, const std::string& path,
                       const std::string& expected) {
  return absl::InvalidArgumentError(absl::StrCat(Where(source, node.Mark()), ": '", path,
                                                 "' expects ", expected, ", got ", Describe(node)));
}

// A plain YAML integer: optional sign and decimal digits.
bool LooksLikeInteger(const std::string& s, bool allow_minus) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || (allow_minus && s[i] == '-'))) ++i;
  if (i == s.size()) return false;
  for (; i < s.size(); ++i) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) return false;
  }
  return true;
}

// A plain YAML float (1.2 core schema, exponent dot optional) or .inf / .nan.
bool ParseYamlDouble(const std::string& s, double* out) {
  static const std::set<std::string> kPosInf = {".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"};
  static const std::set<std::string> kNegInf = {"-.inf", "-.Inf", "-.INF"};
  static const std::set<std::string> kNan = {".nan", ".NaN", ".NAN"};
  if (kPosInf.count(s)) {
    *out = std::numeric_limits<double>::infinity();
    return true;
  }
  if (kNegInf.count(s)) {
    *out = -std::numeric_limits<double>::infinity();
    return true;
  }
  if (kNan.count(s)) {
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  // Only digits, sign, dot and exponent: keeps strtod's "inf", "nan" and hex floats out.
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  bool digits = false;
  while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) ++i, digits = true;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i])))
      ++i, digits = true;
  }
  if (!digits) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    bool exp_digits = false;
    while (i < s.size() && absl::ascii_isdigit(static_cast<unsigned char>(s[i]))) {
      ++i;
      exp_digits = true;
    }
    if (!exp_digits) return false;
  }
  if (i != s.size()) return false;
  return absl::SimpleAtod(s, out);
}

// Sets one scalar value (of a singular field, or appends to a repeated one).
absl::Status SetScalar(const YAML::Node& node, Message* message, const FieldDescriptor* field,
                       const std::string& path, const std::string& source) {
  const Reflection* reflection = message->GetReflection();
  const bool repeated = field->is_repeated();
  if (!node.IsScalar()) return TypeError(source, node, path, Expected(field));
  const std::string& text = node.Scalar();
  const bool quoted = IsQuoted(node);
  auto number_error = [&]() { return TypeError(source, node, path, Expected(field)); };
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32: {
      int32_t v = 0;
      if (quoted || !LooksLikeInteger(text, true) || !absl::SimpleAtoi(text, &v)) {
        return number_error();
      }
      repeated ? reflection->AddInt32(message, field, v) : reflection->SetInt32(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t v = 0;
      if (quoted || !LooksLikeInteger(text, true) || !absl::SimpleAtoi(text, &v)) {
        return number_error();
      }
      repeated ? reflection->AddInt64(message, field, v) : reflection->SetInt64(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT32: {
      uint32_t v = 0;
      if (quoted || !LooksLikeInteger(text, false) || !absl::SimpleAtoi(text, &v)) {
        return number_error();
      }
      repeated ? reflection->AddUInt32(message, field, v)
               : reflection->SetUInt32(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_UINT64: {
      uint64_t v = 0;
      if (quoted || !LooksLikeInteger(text, false) || !absl::SimpleAtoi(text, &v)) {
        return number_error();
      }
      repeated ? reflection->AddUInt64(message, field, v)
               : reflection->SetUInt64(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE:
    case FieldDescriptor::CPPTYPE_FLOAT: {
      double v = 0;
      if (quoted || !ParseYamlDouble(text, &v)) return number_error();
      if (field->cpp_type() == FieldDescriptor::CPPTYPE_DOUBLE) {
        repeated ? reflection->AddDouble(message, field, v)
                 : reflection->SetDouble(message, field, v);
      } else {
        const float f = static_cast<float>(v);
        repeated ? reflection->AddFloat(message, field, f)
                 : reflection->SetFloat(message, field, f);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL: {
      bool v = false;
      if (!quoted && (text == "true" || text == "True" || text == "TRUE")) {
        v = true;
      } else if (!quoted && (text == "false" || text == "False" || text == "FALSE")) {
        v = false;
      } else {
        return number_error();
      }
      repeated ? reflection->AddBool(message, field, v) : reflection->SetBool(message, field, v);
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING:
      repeated ? reflection->AddString(message, field, text)
               : reflection->SetString(message, field, text);
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const google::protobuf::EnumValueDescriptor* value =
          field->enum_type()->FindValueByName(text);
      if (value == nullptr) return number_error();
      repeated ? reflection->AddEnum(message, field, value)
               : reflection->SetEnum(message, field, value);
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      return TypeError(source, node, path, "a map");
  }
  return absl::OkStatus();
}

// Sets `field` of `message` from `node`: a map merges into a message field, a list (or one scalar)
// replaces a repeated field, a scalar sets a singular field.
absl::Status SetField(const YAML::Node& node, Message* message, const FieldDescriptor* field,
                      const std::string& path, const std::string& source) {
  const Reflection* reflection = message->GetReflection();
  if (field->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    if (field->is_repeated()) {
      if (!node.IsSequence()) return TypeError(source, node, path, "a list of maps");
      reflection->ClearField(message, field);
      for (size_t i = 0; i < node.size(); ++i) {
        RETURN_IF_ERROR(ApplyYamlToMessage(node[i], reflection->AddMessage(message, field),
                                           absl::StrCat(path, "[", i, "]"), source));
      }
      return absl::OkStatus();
    }
    return ApplyYamlToMessage(node, reflection->MutableMessage(message, field), path, source);
  }
  if (field->is_repeated()) {
    const std::string expected = absl::StrCat("a list of ", Expected(field).substr(2), "s");
    if (node.IsNull()) {
      return TypeError(source, node, path, absl::StrCat(expected, " (write [] for none)"));
    }
    if (node.IsMap()) return TypeError(source, node, path, expected);
    reflection->ClearField(message, field);
    if (node.IsScalar()) return SetScalar(node, message, field, path, source);
    for (size_t i = 0; i < node.size(); ++i) {
      const YAML::Node item = node[i];
      if (!item.IsScalar()) {
        return TypeError(source, item, absl::StrCat(path, "[", i, "]"), Expected(field));
      }
      RETURN_IF_ERROR(SetScalar(item, message, field, path, source));
    }
    return absl::OkStatus();
  }
  return SetScalar(node, message, field, path, source);
}

std::string KnownKeys(const Descriptor* descriptor) {
  std::vector<std::string> names;
  for (int i = 0; i < descriptor->field_count(); ++i) names.push_back(descriptor->field(i)->name());
  return absl::StrJoin(names, ", ");
}

absl::Status UnknownKey(const std::string& where, const std::string& path,
                        const Descriptor* descriptor, const std::string& parent) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": unknown key '", path, "' (",
                                                 parent.empty() ? "the top level" : parent,
                                                 " has: ", KnownKeys(descriptor), ")"));
}

const std::vector<std::string>& KnownSchedules() {
  static const std::vector<std::string> kSchedules = {"constant", "linear", "cosine"};
  return kSchedules;
}

bool Contains(const std::vector<std::string>& list, const std::string& value) {
  return std::find(list.begin(), list.end(), value) != list.end();
}

// The shortest text that reads back as `v` ("0.0002", "1e-08", "16"); YAML spellings for inf/nan.
std::string FormatDouble(double v) {
  if (std::isnan(v)) return ".nan";
  if (std::isinf(v)) return v > 0 ? ".inf" : "-.inf";
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), v, std::chars_format::general);
  return std::string(buffer, result.ptr);
}

// FormatDouble, but always a float in YAML eyes ("16.0", not "16").
std::string FormatYamlDouble(double v) {
  std::string text = FormatDouble(v);
  if (text.find_first_of(".en") == std::string::npos) text += ".0";
  return text;
}

void EmitMessageYaml(YAML::Emitter& out, const Message& message) {
  const Descriptor* descriptor = message.GetDescriptor();
  const Reflection* reflection = message.GetReflection();
  out << YAML::BeginMap;
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    out << YAML::Key << field->name() << YAML::Value;
    auto emit_one = [&](int index) {
      const bool rep = field->is_repeated();
      switch (field->cpp_type()) {
        case FieldDescriptor::CPPTYPE_INT32:
          out << (rep ? reflection->GetRepeatedInt32(message, field, index)
                      : reflection->GetInt32(message, field));
          break;
        case FieldDescriptor::CPPTYPE_INT64:
          out << (rep ? reflection->GetRepeatedInt64(message, field, index)
                      : reflection->GetInt64(message, field));
          break;
        case FieldDescriptor::CPPTYPE_UINT32:
          out << (rep ? reflection->GetRepeatedUInt32(message, field, index)
                      : reflection->GetUInt32(message, field));
          break;
        case FieldDescriptor::CPPTYPE_UINT64:
          out << (rep ? reflection->GetRepeatedUInt64(message, field, index)
                      : reflection->GetUInt64(message, field));
          break;
        case FieldDescriptor::CPPTYPE_DOUBLE:
          out << FormatYamlDouble(rep ? reflection->GetRepeatedDouble(message, field, index)
                                      : reflection->GetDouble(message, field));
          break;
        case FieldDescriptor::CPPTYPE_FLOAT:
          out << FormatYamlDouble(rep ? reflection->GetRepeatedFloat(message, field, index)
                                      : reflection->GetFloat(message, field));
          break;
        case FieldDescriptor::CPPTYPE_BOOL:
          out << YAML::TrueFalseBool
              << (rep ? reflection->GetRepeatedBool(message, field, index)
                      : reflection->GetBool(message, field));
          break;
        case FieldDescriptor::CPPTYPE_STRING:
          out << YAML::DoubleQuoted
              << (rep ? reflection->GetRepeatedString(message, field, index)
                      : reflection->GetString(message, field));
          break;
        case FieldDescriptor::CPPTYPE_ENUM:
          out << (rep ? reflection->GetRepeatedEnum(message, field, index)
                      : reflection->GetEnum(message, field))
                     ->name();
          break;
        case FieldDescriptor::CPPTYPE_MESSAGE:
          EmitMessageYaml(out, rep ? reflection->GetRepeatedMessage(message, field, index)
                                   : reflection->GetMessage(message, field));
          break;
      }
    };
    if (field->is_repeated()) {
      out << YAML::Flow << YAML::BeginSeq;
      for (int j = 0; j < reflection->FieldSize(message, field); ++j) emit_one(j);
      out << YAML::EndSeq;
    } else {
      emit_one(0);
    }
  }
  out << YAML::EndMap;
}

}  // namespace

TrialConfig DefaultTrialConfig() {
  TrialConfig config;
  config.set_device("auto");
  QuantizationConfig* q = config.mutable_quantization();
  q->set_type("nf4");
  q->set_blocksize(64);
  q->set_double_quant(true);
  LoraConfig* lora = config.mutable_lora();
  lora->set_rank(16);
  lora->set_alpha(16.0);
  lora->set_dropout(0.05);
  lora->add_target_modules("all-linear");
  lora->set_rslora(false);
  config.mutable_data();
  TrainConfig* t = config.mutable_train();
  t->set_steps(100);
  t->set_micro_batch(4);
  t->set_grad_accum(1);
  t->set_learning_rate(2e-4);
  t->set_schedule("cosine");
  t->set_warmup_steps(0);
  t->set_weight_decay(0.0);
  t->set_max_grad_norm(1.0);
  t->set_seed(0);
  t->set_eval_every(0);
  t->set_checkpoint_every(0);
  t->set_activation_checkpointing(true);
  t->set_threads(0);
  t->set_adam_beta1(0.9);
  t->set_adam_beta2(0.999);
  t->set_adam_eps(1e-8);
  t->set_eval_batches(0);
  t->set_loss_chunk_rows(256);
  return config;
}

void FinalizeTrialConfig(TrialConfig* config) {
  DataConfig* data = config->mutable_data();
  if (data->eval_path().empty()) data->set_eval_path(data->path());
  if (data->shards_size() == 1 && data->shards(0) == "all") data->clear_shards();
}

absl::Status ApplyYamlToMessage(const YAML::Node& node, Message* message, const std::string& prefix,
                                const std::string& source_name) {
  if (node.IsNull()) return absl::OkStatus();  // `lora:` with nothing below: keep the defaults
  if (!node.IsMap()) {
    if (prefix.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(source_name, node.Mark()),
                                                     ": expected a map of settings at the top "
                                                     "level, got ",
                                                     Describe(node)));
    }
    return TypeError(source_name, node, prefix, "a map");
  }
  const Descriptor* descriptor = message->GetDescriptor();
  std::set<std::string> seen;
  for (auto it = node.begin(); it != node.end(); ++it) {
    const YAML::Node key_node = it->first;
    if (!key_node.IsScalar()) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(source_name, key_node.Mark()), ": keys must be plain names, got ",
                       Describe(key_node), prefix.empty() ? "" : " under '" + prefix + "'"));
    }
    const std::string key = key_node.Scalar();
    const std::string path = JoinPath(prefix, key);
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(Where(source_name, key_node.Mark()), ": duplicate key '", path, "'"));
    }
    const FieldDescriptor* field = descriptor->FindFieldByName(key);
    if (field == nullptr) {
      return UnknownKey(Where(source_name, key_node.Mark()), path, descriptor, prefix);
    }
    RETURN_IF_ERROR(SetField(it->second, message, field, path, source_name));
  }
  return absl::OkStatus();
}

absl::Status SetFieldByDottedPath(Message* message, const std::string& dotted_path,
                                  const YAML::Node& value, const std::string& source_name) {
  const std::vector<std::string> parts = absl::StrSplit(dotted_path, '.');
  const std::string where = Where(source_name, value.Mark());
  Message* current = message;
  std::string prefix;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Descriptor* descriptor = current->GetDescriptor();
    const std::string path = JoinPath(prefix, parts[i]);
    const FieldDescriptor* field =
        parts[i].empty() ? nullptr : descriptor->FindFieldByName(parts[i]);
    if (field == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": unknown key '", dotted_path, "' (", prefix.empty() ? "the top level" : prefix,
          " has no '", parts[i], "'; it has: ", KnownKeys(descriptor), ")"));
    }
    if (i + 1 == parts.size()) return SetField(value, current, field, dotted_path, source_name);
    if (field->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE || field->is_repeated()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": unknown key '", dotted_path, "' ('",
                                                     path, "' is a ", field->type_name(),
                                                     " and has no sub-keys)"));
    }
    current = current->GetReflection()->MutableMessage(current, field);
    prefix = path;
  }
  return absl::InvalidArgumentError(absl::StrCat(where, ": empty key"));
}

absl::StatusOr<TrialConfig> ParseTrialConfigYaml(const std::string& yaml_text,
                                                 const std::string& source_name) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(source_name, e.mark), ": invalid YAML: ", e.msg));
  }
  TrialConfig config = DefaultTrialConfig();
  try {
    RETURN_IF_ERROR(ApplyYamlToMessage(root, &config, "", source_name));
  } catch (const YAML::Exception& e) {  // defensive: yaml-cpp throws on some malformed trees
    return absl::InvalidArgumentError(absl::StrCat(Where(source_name, e.mark), ": ", e.msg));
  }
  FinalizeTrialConfig(&config);
  return config;
}

absl::StatusOr<TrialConfig> LoadTrialConfig(const std::string& path) {
  absl::StatusOr<std::string> text = ReadFileToString(path);
  if (!text.ok()) {
    return absl::Status(text.status().code(),
                        absl::StrCat("trial config ", path, ": ", text.status().message()));
  }
  return ParseTrialConfigYaml(*text, path);
}

const std::vector<std::string>& AllLinearModules() {
  static const std::vector<std::string> kModules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                    "gate_proj", "up_proj", "down_proj"};
  return kModules;
}

std::vector<std::string> ExpandTargetModules(const LoraConfig& lora) {
  std::set<std::string> wanted(lora.target_modules().begin(), lora.target_modules().end());
  const bool all = wanted.count("all-linear") > 0;
  std::vector<std::string> modules;
  for (const std::string& name : AllLinearModules()) {
    if (all || wanted.count(name)) modules.push_back(name);
  }
  return modules;
}

absl::Status ValidateTrialConfig(const TrialConfig& config) {
  std::vector<std::string> errors;
  auto fail = [&](const std::string& field, const std::string& expected, const std::string& got) {
    errors.push_back(absl::StrCat(field, ": expected ", expected, ", got ", got));
  };
  auto quote = [](const std::string& s) { return absl::StrCat("'", s, "'"); };

  if (config.model().empty()) fail("model", "a model path (HF folder or .gguf file)", "nothing");
  if (!Contains({"auto", "cpu", "cuda"}, config.device())) {
    fail("device", "one of auto, cpu, cuda", quote(config.device()));
  }

  const QuantizationConfig& q = config.quantization();
  if (!Contains({"nf4", "fp4", "none"}, q.type())) {
    fail("quantization.type", "one of nf4, fp4, none", quote(q.type()));
  }
  static const std::set<int> kBlocksizes = {64, 128, 256, 512, 1024, 2048, 4096};
  if (!kBlocksizes.count(q.blocksize())) {
    fail("quantization.blocksize", "one of 64, 128, 256, 512, 1024, 2048, 4096",
         absl::StrCat(q.blocksize()));
  }

  const LoraConfig& lora = config.lora();
  if (lora.rank() < 1) fail("lora.rank", "an integer >= 1", absl::StrCat(lora.rank()));
  if (!(lora.alpha() > 0) || !std::isfinite(lora.alpha())) {
    fail("lora.alpha", "a finite number > 0", FormatDouble(lora.alpha()));
  }
  if (!(lora.dropout() >= 0 && lora.dropout() < 1)) {
    fail("lora.dropout", "a number in [0, 1)", FormatDouble(lora.dropout()));
  }
  if (lora.target_modules_size() == 0) {
    fail("lora.target_modules", "at least one module (or all-linear)", "an empty list");
  }
  for (const std::string& module : lora.target_modules()) {
    if (module != "all-linear" && !Contains(AllLinearModules(), module)) {
      fail("lora.target_modules",
           "names from q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, all-linear",
           quote(module));
    }
  }

  const DataConfig& data = config.data();
  if (data.path().empty())
    fail("data.path", "a prepared data folder (prepare-data output)", "nothing");
  for (const std::string& shard : data.shards()) {
    if (shard.empty()) fail("data.shards", "shard names", "an empty name");
  }

  const TrainConfig& t = config.train();
  if (t.steps() < 1) fail("train.steps", "an integer >= 1", absl::StrCat(t.steps()));
  if (t.micro_batch() < 1) {
    fail("train.micro_batch", "an integer >= 1", absl::StrCat(t.micro_batch()));
  }
  if (t.grad_accum() < 1) fail("train.grad_accum", "an integer >= 1", absl::StrCat(t.grad_accum()));
  if (!(t.learning_rate() > 0) || !std::isfinite(t.learning_rate())) {
    fail("train.learning_rate", "a finite number > 0", FormatDouble(t.learning_rate()));
  }
  if (!Contains(KnownSchedules(), t.schedule())) {
    fail("train.schedule", "one of constant, linear, cosine", quote(t.schedule()));
  }
  if (t.warmup_steps() < 0 || t.warmup_steps() > std::max<int64_t>(t.steps(), 0)) {
    fail("train.warmup_steps", absl::StrCat("an integer in [0, train.steps = ", t.steps(), "]"),
         absl::StrCat(t.warmup_steps()));
  }
  if (!(t.weight_decay() >= 0) || !std::isfinite(t.weight_decay())) {
    fail("train.weight_decay", "a finite number >= 0", FormatDouble(t.weight_decay()));
  }
  if (!(t.max_grad_norm() >= 0) || !std::isfinite(t.max_grad_norm())) {
    fail("train.max_grad_norm", "a finite number >= 0 (0: no clipping)",
         FormatDouble(t.max_grad_norm()));
  }
  if (t.eval_every() < 0) {
    fail("train.eval_every", "an integer >= 0 (0: only at the end)", absl::StrCat(t.eval_every()));
  }
  if (t.checkpoint_every() < 0) {
    fail("train.checkpoint_every", "an integer >= 0 (0: only at the end)",
         absl::StrCat(t.checkpoint_every()));
  }
  if (t.threads() < 0)
    fail("train.threads", "an integer >= 0 (0: all cores)", absl::StrCat(t.threads()));
  if (!(t.adam_beta1() >= 0 && t.adam_beta1() < 1)) {
    fail("train.adam_beta1", "a number in [0, 1)", FormatDouble(t.adam_beta1()));
  }
  if (!(t.adam_beta2() >= 0 && t.adam_beta2() < 1)) {
    fail("train.adam_beta2", "a number in [0, 1)", FormatDouble(t.adam_beta2()));
  }
  if (!(t.adam_eps() > 0) || !std::isfinite(t.adam_eps())) {
    fail("train.adam_eps", "a finite number > 0", FormatDouble(t.adam_eps()));
  }
  if (t.eval_batches() < 0) {
    fail("train.eval_batches", "an integer >= 0 (0: the whole eval split)",
         absl::StrCat(t.eval_batches()));
  }
  if (t.loss_chunk_rows() < 1) {
    fail("train.loss_chunk_rows", "an integer >= 1", absl::StrCat(t.loss_chunk_rows()));
  }
  if (errors.empty()) return absl::OkStatus();
  return absl::InvalidArgumentError(
      absl::StrCat("invalid trial config: ", absl::StrJoin(errors, "; ")));
}

std::string TrialConfigToJson(const TrialConfig& config) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  std::string json;
  // Printing a well-formed message cannot fail; an error would leave `json` empty.
  (void)google::protobuf::util::MessageToJsonString(config, &json, options);
  return json;
}

std::string TrialConfigToYaml(const TrialConfig& config) {
  YAML::Emitter out;
  EmitMessageYaml(out, config);
  return std::string(out.c_str()) + "\n";
}

}  // namespace lorasweep

#include "worker/formats/bnb_checkpoint.h"

#include <charconv>
#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace lorasweep {
namespace {

using nlohmann::json;

Tensor BytesTensor(const std::vector<int64_t>& shape, const void* data, size_t size, DType dtype) {
  Tensor t = Tensor::Allocate(dtype, shape, size);
  if (size > 0) std::memcpy(t.MutableBytes().data(), data, size);
  return t;
}

Tensor FloatTensor(std::span<const float> values) {
  return Tensor::FromFloats({static_cast<int64_t>(values.size())}, values);
}

absl::Status ShapeError(const std::string& name, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("bitsandbytes tensor ", name, ": ", what));
}

absl::Status ExpectTensor(const Tensor& t, const std::string& name, DType dtype,
                          const std::vector<int64_t>& shape) {
  if (t.dtype() != dtype) {
    return ShapeError(name, absl::StrCat("dtype ", DTypeName(t.dtype()), ", expected ",
                                         DTypeName(dtype)));
  }
  if (t.shape() != shape) {
    return ShapeError(name, absl::StrCat("shape ", ShapeToString(t.shape()), ", expected ",
                                         ShapeToString(shape)));
  }
  return absl::OkStatus();
}

std::vector<float> CopyFloats(const Tensor& t) {
  std::vector<float> out(static_cast<size_t>(t.num_elements()));
  std::memcpy(out.data(), t.bytes().data(), out.size() * sizeof(float));
  return out;
}

}  // namespace

std::string PythonFloatRepr(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "Infinity" : "-Infinity";
  if (value == 0) return std::signbit(value) ? "-0.0" : "0.0";
  // Shortest round-trip digits in scientific form: "d.ddde[+-]x".
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value, std::chars_format::scientific);
  std::string sci(buffer, result.ptr);
  const size_t e_pos = sci.find('e');
  std::string mantissa = sci.substr(0, e_pos);
  const int exponent = std::stoi(sci.substr(e_pos + 1));
  const bool negative = mantissa[0] == '-';
  if (negative) mantissa.erase(0, 1);
  std::string digits;
  for (char ch : mantissa) {
    if (ch != '.') digits.push_back(ch);
  }
  std::string out;
  if (exponent < -4 || exponent >= 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    out += absl::StrCat("e", exponent < 0 ? "-" : "+", std::abs(exponent) < 10 ? "0" : "",
                        std::abs(exponent));
  } else if (exponent < 0) {
    out = "0." + std::string(static_cast<size_t>(-exponent - 1), '0') + digits;
  } else {
    const size_t int_digits = static_cast<size_t>(exponent) + 1;
    if (digits.size() <= int_digits) {
      out = digits + std::string(int_digits - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, int_digits) + "." + digits.substr(int_digits);
    }
  }
  return negative ? "-" + out : out;
}

std::string BnbQuantStateJson(const Quantized4bit& q, const std::string& dtype_name) {
  // json.dumps with its default separators (", " and ": "), keys in bitsandbytes' insertion order.
  std::string shape;
  for (size_t i = 0; i < q.shape.size(); ++i) {
    absl::StrAppend(&shape, i ? ", " : "", q.shape[i]);
  }
  std::string text = absl::StrCat("{\"quant_type\": \"", QuantTypeName(q.type),
                                  "\", \"blocksize\": ", q.blocksize, ", \"dtype\": \"", dtype_name,
                                  "\", \"shape\": [", shape, "]");
  if (q.double_quant) {
    absl::StrAppend(&text, ", \"nested_blocksize\": ", kNestedBlocksize,
                    ", \"nested_dtype\": \"float32\", \"nested_offset\": ",
                    PythonFloatRepr(static_cast<double>(q.nested_offset)));
  }
  text += "}";
  return text;
}

void AppendBnb4bitTensors(const std::string& module_prefix, const Quantized4bit& q,
                          const std::string& dtype_name, NamedTensors* out) {
  const std::string w = module_prefix + ".weight";
  out->emplace_back(w, BytesTensor({static_cast<int64_t>(q.packed.size()), 1}, q.packed.data(),
                                   q.packed.size(), DType::kU8));
  if (q.double_quant) {
    out->emplace_back(w + ".absmax",
                      BytesTensor({static_cast<int64_t>(q.absmax_codes.size())},
                                  q.absmax_codes.data(), q.absmax_codes.size(), DType::kU8));
  } else {
    out->emplace_back(w + ".absmax", FloatTensor(q.absmax));
  }
  out->emplace_back(w + ".quant_map", FloatTensor(CodeTable(q.type)));
  if (q.double_quant) {
    out->emplace_back(w + ".nested_absmax", FloatTensor(q.nested_absmax));
    out->emplace_back(w + ".nested_quant_map", FloatTensor(DynamicSignedMap()));
  }
  const std::string state = BnbQuantStateJson(q, dtype_name);
  out->emplace_back(w + ".quant_state.bitsandbytes__" + QuantTypeName(q.type),
                    BytesTensor({static_cast<int64_t>(state.size())}, state.data(), state.size(),
                                DType::kU8));
}

bool HasBnb4bitWeight(const TensorSource& source, const std::string& module_prefix) {
  return source.Contains(module_prefix + ".weight.quant_state.bitsandbytes__nf4") ||
         source.Contains(module_prefix + ".weight.quant_state.bitsandbytes__fp4");
}

absl::StatusOr<Quantized4bit> ReadBnb4bitWeight(const TensorSource& source,
                                                const std::string& module_prefix) {
  const std::string w = module_prefix + ".weight";
  Quantized4bit q;
  std::string state_name;
  for (QuantType type : {QuantType::kNF4, QuantType::kFP4}) {
    const std::string name = w + ".quant_state.bitsandbytes__" + QuantTypeName(type);
    if (source.Contains(name)) {
      q.type = type;
      state_name = name;
    }
  }
  if (state_name.empty()) {
    return absl::NotFoundError(
        absl::StrCat(source.Describe(), ": no bitsandbytes quant_state for ", w));
  }
  ASSIGN_OR_RETURN(Tensor state_tensor, source.Get(state_name));
  if (state_tensor.dtype() != DType::kU8) return ShapeError(state_name, "expected U8 bytes");
  const std::string state_text(reinterpret_cast<const char*>(state_tensor.bytes().data()),
                               state_tensor.bytes().size());
  json state = json::parse(state_text, nullptr, false);
  if (state.is_discarded() || !state.is_object()) return ShapeError(state_name, "not a JSON object");
  if (!state.contains("quant_type") || state["quant_type"] != QuantTypeName(q.type)) {
    return ShapeError(state_name, "quant_type disagrees with the key name");
  }
  if (!state.contains("blocksize") || !state["blocksize"].is_number_integer()) {
    return ShapeError(state_name, "missing integer blocksize");
  }
  q.blocksize = state["blocksize"].get<int64_t>();
  if (q.blocksize < 32 || q.blocksize > 4096 || (q.blocksize & (q.blocksize - 1)) != 0) {
    return ShapeError(state_name, absl::StrCat("blocksize ", q.blocksize,
                                               " is not a power of two in [32, 4096]"));
  }
  if (!state.contains("shape") || !state["shape"].is_array()) {
    return ShapeError(state_name, "missing shape");
  }
  for (const json& d : state["shape"]) {
    if (!d.is_number_integer() || d.get<int64_t>() <= 0) return ShapeError(state_name, "bad shape");
    q.shape.push_back(d.get<int64_t>());
  }
  q.num_elements = NumElements(q.shape);
  const int64_t blocks = q.num_blocks();
  q.double_quant = state.contains("nested_offset");

  ASSIGN_OR_RETURN(Tensor packed, source.Get(w));
  RETURN_IF_ERROR(ExpectTensor(packed, w, DType::kU8, {(q.num_elements + 1) / 2, 1}));
  q.packed.assign(packed.bytes().begin(), packed.bytes().end());

  ASSIGN_OR_RETURN(Tensor quant_map, source.Get(w + ".quant_map"));
  RETURN_IF_ERROR(ExpectTensor(quant_map, w + ".quant_map", DType::kF32, {16}));
  const std::vector<float> code = CopyFloats(quant_map);
  if (std::memcmp(code.data(), CodeTable(q.type).data(), sizeof(float) * 16) != 0) {
    return ShapeError(w + ".quant_map", absl::StrCat("differs from the ", QuantTypeName(q.type),
                                                      " code table"));
  }

  ASSIGN_OR_RETURN(Tensor absmax, source.Get(w + ".absmax"));
  if (q.double_quant) {
    RETURN_IF_ERROR(ExpectTensor(absmax, w + ".absmax", DType::kU8, {blocks}));
    q.absmax_codes.assign(absmax.bytes().begin(), absmax.bytes().end());
    if (!state["nested_offset"].is_number()) return ShapeError(state_name, "bad nested_offset");
    q.nested_offset = static_cast<float>(state["nested_offset"].get<double>());
    if (state.value("nested_blocksize", 0) != kNestedBlocksize) {
      return ShapeError(state_name, "nested_blocksize must be 256");
    }
    ASSIGN_OR_RETURN(Tensor nested, source.Get(w + ".nested_absmax"));
    RETURN_IF_ERROR(ExpectTensor(nested, w + ".nested_absmax", DType::kF32,
                                 {(blocks + kNestedBlocksize - 1) / kNestedBlocksize}));
    q.nested_absmax = CopyFloats(nested);
    ASSIGN_OR_RETURN(Tensor nested_map, source.Get(w + ".nested_quant_map"));
    RETURN_IF_ERROR(ExpectTensor(nested_map, w + ".nested_quant_map", DType::kF32, {256}));
    const std::vector<float> map = CopyFloats(nested_map);
    if (std::memcmp(map.data(), DynamicSignedMap().data(), sizeof(float) * 256) != 0) {
      return ShapeError(w + ".nested_quant_map", "differs from the signed dynamic map");
    }
  } else {
    RETURN_IF_ERROR(ExpectTensor(absmax, w + ".absmax", DType::kF32, {blocks}));
    q.absmax = CopyFloats(absmax);
  }
  return q;
}

std::string BnbQuantizationConfigJson(QuantType type, bool double_quant,
                                      const std::string& compute_dtype) {
  // transformers' BitsAndBytesConfig.to_dict() member set.
  json config = {
      {"_load_in_4bit", true},
      {"_load_in_8bit", false},
      {"bnb_4bit_compute_dtype", compute_dtype},
      {"bnb_4bit_quant_storage", "uint8"},
      {"bnb_4bit_quant_type", QuantTypeName(type)},
      {"bnb_4bit_use_double_quant", double_quant},
      {"llm_int8_enable_fp32_cpu_offload", false},
      {"llm_int8_has_fp16_weight", false},
      {"llm_int8_skip_modules", nullptr},
      {"llm_int8_threshold", 6.0},
      {"load_in_4bit", true},
      {"load_in_8bit", false},
      {"quant_method", "bitsandbytes"},
  };
  return json{{"quantization_config", config}}.dump();
}

}  // namespace lorasweep

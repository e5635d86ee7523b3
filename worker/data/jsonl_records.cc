#include "worker/data/jsonl_records.h"

#include <utility>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace lorasweep {
namespace {

using json = nlohmann::json;

absl::Status Expected(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("expected ", what));
}

const char* TypeName(const json& j) { return j.type_name(); }

// The string field `name` of `object`; `optional` fields may be missing or null (-> "").
absl::StatusOr<std::string> StringField(const json& object, const char* name, bool optional,
                                        const std::string& where = "") {
  const auto it = object.find(name);
  if (it == object.end() || it->is_null()) {
    if (optional) return std::string();
    return Expected(absl::StrCat("a string field \"", where, name, "\" (missing)"));
  }
  if (!it->is_string()) {
    return Expected(
        absl::StrCat("field \"", where, name, "\" to be a string, got ", TypeName(*it)));
  }
  return it->get<std::string>();
}

absl::StatusOr<std::vector<ChatMessage>> Messages(const json& object) {
  const auto it = object.find("messages");
  if (it == object.end()) return Expected("a field \"messages\" (missing)");
  if (!it->is_array()) {
    return Expected(absl::StrCat("field \"messages\" to be an array, got ", TypeName(*it)));
  }
  if (it->empty()) return Expected("at least one message in \"messages\"");
  std::vector<ChatMessage> messages;
  bool has_assistant = false;
  for (size_t i = 0; i < it->size(); ++i) {
    const json& m = (*it)[i];
    const std::string where = absl::StrCat("messages[", i, "].");
    if (!m.is_object()) {
      return Expected(absl::StrCat("\"messages[", i, "]\" to be an object, got ", TypeName(m)));
    }
    ASSIGN_OR_RETURN(std::string role, StringField(m, "role", false, where));
    ASSIGN_OR_RETURN(std::string content, StringField(m, "content", false, where));
    if (role != "system" && role != "user" && role != "assistant") {
      return Expected(
          absl::StrCat("\"", where, "role\" to be system, user or assistant, got \"", role, "\""));
    }
    if (role == "system" && i != 0) {
      return Expected(
          absl::StrCat("a system message only first, got one at \"messages[", i, "]\""));
    }
    has_assistant |= role == "assistant";
    messages.push_back({std::move(role), std::move(content)});
  }
  // The loss counts assistant tokens only: a conversation without a reply trains nothing.
  if (!has_assistant) return Expected("an assistant message in \"messages\" (none found)");
  return messages;
}

std::string_view StripLine(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

bool IsBlank(std::string_view line) {
  for (char c : line) {
    if (!absl::ascii_isspace(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The format of a record by its fields, for --format auto.
absl::StatusOr<RecordFormat> DetectFormat(std::string_view line) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Expected("a JSON object (the line is not valid JSON)");
  if (!j.is_object()) return Expected(absl::StrCat("a JSON object, got ", TypeName(j)));
  if (j.contains("messages")) return RecordFormat::kChat;
  if (j.contains("instruction")) return RecordFormat::kAlpaca;
  if (j.contains("text")) return RecordFormat::kText;
  return Expected(
      "a field \"messages\" (chat), \"instruction\" (alpaca) or \"text\" (text) to detect the "
      "format from (or pass --format)");
}

}  // namespace

absl::StatusOr<RecordFormat> ParseRecordFormat(std::string_view name) {
  if (name == "text") return RecordFormat::kText;
  if (name == "alpaca") return RecordFormat::kAlpaca;
  if (name == "chat") return RecordFormat::kChat;
  return absl::InvalidArgumentError(absl::StrCat("unknown format '", std::string(name),
                                                 "' (expected auto, text, alpaca or chat)"));
}

const char* RecordFormatName(RecordFormat format) {
  switch (format) {
    case RecordFormat::kText:
      return "text";
    case RecordFormat::kAlpaca:
      return "alpaca";
    case RecordFormat::kChat:
      return "chat";
  }
  return "text";
}

absl::StatusOr<Record> ParseRecordLine(std::string_view line, RecordFormat format,
                                       const std::string& shard_by) {
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Expected("a JSON object (the line is not valid JSON)");
  if (!j.is_object()) return Expected(absl::StrCat("a JSON object, got ", TypeName(j)));
  Record record;
  switch (format) {
    case RecordFormat::kText: {
      ASSIGN_OR_RETURN(record.text, StringField(j, "text", false));
      if (record.text.empty()) return Expected("a non-empty string field \"text\"");
      break;
    }
    case RecordFormat::kAlpaca: {
      ASSIGN_OR_RETURN(record.instruction, StringField(j, "instruction", false));
      ASSIGN_OR_RETURN(record.input, StringField(j, "input", true));
      ASSIGN_OR_RETURN(record.output, StringField(j, "output", false));
      break;
    }
    case RecordFormat::kChat: {
      ASSIGN_OR_RETURN(record.messages, Messages(j));
      break;
    }
  }
  if (!shard_by.empty()) {
    const auto it = j.find(shard_by);
    if (it == j.end() || it->is_null()) {
      return Expected(absl::StrCat("a field \"", shard_by, "\" (--shard-by; missing)"));
    }
    if (it->is_string()) {
      record.shard_key = it->get<std::string>();
    } else if (it->is_number_integer() || it->is_boolean()) {
      record.shard_key = it->dump();
    } else {
      return Expected(absl::StrCat("field \"", shard_by, "\" (--shard-by) to be a string, got ",
                                   TypeName(*it)));
    }
    if (record.shard_key.empty()) {
      return Expected(absl::StrCat("a non-empty field \"", shard_by, "\" (--shard-by)"));
    }
  }
  return record;
}

absl::StatusOr<RecordFile> ReadJsonlRecords(const std::string& path,
                                            const RecordReadOptions& options) {
  std::optional<RecordFormat> format;
  if (options.format != "auto") {
    absl::StatusOr<RecordFormat> parsed = ParseRecordFormat(options.format);
    if (!parsed.ok()) return parsed.status();
    format = *parsed;
  }
  absl::StatusOr<std::string> contents = ReadFileToString(path);
  if (!contents.ok()) {
    return absl::NotFoundError(
        absl::StrCat(path, ": cannot read input: ", contents.status().message()));
  }
  RecordFile file;
  file.path = path;
  std::string_view rest = *contents;
  int64_t line_number = 0;
  while (!rest.empty()) {
    const size_t newline = rest.find('\n');
    const std::string_view line = StripLine(rest.substr(0, newline));
    rest.remove_prefix(newline == std::string_view::npos ? rest.size() : newline + 1);
    ++line_number;
    if (IsBlank(line)) continue;
    ++file.lines;
    absl::StatusOr<Record> record = absl::InternalError("unset");
    if (!format.has_value()) {
      absl::StatusOr<RecordFormat> detected = DetectFormat(line);
      if (detected.ok()) {
        format = *detected;
        spdlog::info("{}: format {} (from line {})", path, RecordFormatName(*format), line_number);
      } else {
        record = detected.status();
      }
    }
    if (format.has_value()) record = ParseRecordLine(line, *format, options.shard_by);
    if (!record.ok()) {
      const std::string message =
          absl::StrCat(path, ":", line_number, ": ", record.status().message());
      if (!options.skip_bad_lines) return absl::InvalidArgumentError(message);
      spdlog::warn("skipped {}", message);
      ++file.skipped_lines;
      continue;
    }
    record->line = line_number;
    file.records.push_back(*std::move(record));
  }
  if (!format.has_value()) {
    if (file.lines == 0) return absl::InvalidArgumentError(absl::StrCat(path, ": no records"));
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": no valid record to detect the format from"));
  }
  file.format = *format;
  return file;
}

}  // namespace lorasweep

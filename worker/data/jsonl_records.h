// Reading a user's JSONL training data: one JSON object per line, in one of three formats.
//   text    {"text": "..."}                                     plain documents
//   alpaca  {"instruction": "...", "input": "..." (optional), "output": "..."}
//   chat    {"messages": [{"role": "system"|"user"|"assistant", "content": "..."}, ...]}
// Other fields are ignored (except the --shard-by field). "auto" takes each file's format from its
// first valid record ("messages" -> chat, "instruction" -> alpaca, "text" -> text). Blank lines are
// skipped. A bad line is an error "FILE:LINE: expected ..." naming the field, or, when bad lines
// are skipped, counted and logged.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/chat_template.h"

namespace lorasweep {

enum class RecordFormat { kText, kAlpaca, kChat };

// "text", "alpaca" or "chat"; "auto" is not a format (callers handle it).
absl::StatusOr<RecordFormat> ParseRecordFormat(std::string_view name);
const char* RecordFormatName(RecordFormat format);

struct Record {
  int64_t line = 0;                        // 1-based line number in its file
  std::string text;                        // text
  std::string instruction, input, output;  // alpaca
  std::vector<ChatMessage> messages;       // chat
  std::string shard_key;                   // the --shard-by field's value
};

struct RecordReadOptions {
  std::string format = "auto";  // auto | text | alpaca | chat
  std::string shard_by;         // a field every record must hold as a string (or number)
  bool skip_bad_lines = false;
};

struct RecordFile {
  std::string path;
  RecordFormat format = RecordFormat::kText;
  std::vector<Record> records;
  int64_t lines = 0;  // non-blank lines
  int64_t skipped_lines = 0;
};

// One line's record in `format`; the error says what was expected (no file:line prefix).
absl::StatusOr<Record> ParseRecordLine(std::string_view line, RecordFormat format,
                                       const std::string& shard_by);

// Reads a whole file. Errors start with "PATH:LINE: " (or "PATH: " for file-level problems).
absl::StatusOr<RecordFile> ReadJsonlRecords(const std::string& path,
                                            const RecordReadOptions& options);

}  // namespace lorasweep

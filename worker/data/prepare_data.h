// `lorasweep prepare-data`: JSONL records -> tokenized documents -> a held-out eval split ->
// named shards of fixed-length sequences (token_shard.h) + manifest.json (dataset_manifest.h).
//
// Documents. A text record is [BOS] + ids(text) + [EOS], every token trained on (BOS only for
// tokenizers whose models expect one at the start: a BOS spelled "<s>" or "<|begin_of_text|>", as
// Llama-2/3 and Mistral; not SmolLM2/Qwen). A chat record is rendered with the chat template
// (chat_template.h) and only the assistant replies are trained on; an alpaca record likewise, with
// the Alpaca template itself or, for models with a chat template, as a user/assistant exchange.
//
// Eval split. Over all documents of all inputs (in input order, index 0..N-1): the identity
// permutation is shuffled by Fisher-Yates from the end, i = N-1 down to 1, swapping i with
// j = rng() % (i + 1), rng = std::mt19937_64(seed); the first E = round(eval_fraction * N)
// documents of the result (at least 1 when eval_fraction > 0 and N >= 2, at most N - 1) form the
// eval split, kept in input order. Whole documents, so no text is in both splits.
//
// Shards of the training documents: one shard "all" by default; --shard-by FIELD: one shard per
// value of that field, named by the value with characters outside [A-Za-z0-9._-] replaced by '_';
// --shards K: training document i (in input order) goes to "part-(i % K)".
//
// Sequences (per shard, documents in input order):
//   pack: documents are concatenated into seq_len blocks; a document that does not fit continues
//         at the start of the next block; the last block is padded.
//   pad:  one document per sequence, truncated to seq_len, padded.
// Padding uses the EOS id (0 without EOS). Flags as token_shard.h defines them.
//
// Output is staged in DIR.partial-XXXXXX and renamed to DIR at the end, so DIR either does not
// exist or is complete; an existing DIR is refused. The same inputs and options give identical
// bytes (no timestamps; manifest keys sorted).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "worker/data/dataset_manifest.h"

namespace lorasweep {

class Tokenizer;

struct PrepareDataOptions {
  std::string tokenizer_path;  // a model folder, .gguf or tokenizer.json (Tokenizer::FromModel)
  std::vector<std::string> inputs;  // JSONL files
  std::string format = "auto";      // auto | text | alpaca | chat
  std::string out_dir;
  int64_t seq_len = 0;
  double eval_fraction = 0.1;  // 0 <= f < 1
  std::string shard_by;        // a record field; exclusive with num_shards
  int64_t num_shards = 0;      // K > 0: K round-robin parts
  uint64_t seed = 0;
  std::string packing = "pack";  // pack | pad
  std::string chat_template;     // "" or "auto" = from the tokenizer (DetectChatTemplate)
  bool skip_bad_lines = false;
};

struct PrepareDataReport {
  DatasetManifest manifest;
  int64_t documents = 0;            // records tokenized (train + eval)
  int64_t truncated_documents = 0;  // pad mode: documents cut at seq_len
  int64_t skipped_lines = 0;
};

absl::StatusOr<PrepareDataReport> PrepareData(const PrepareDataOptions& options);

// Whether documents start with BOS for this tokenizer (see above).
bool TokenizerPrependsBos(const Tokenizer& tokenizer);

// The shard name for a --shard-by value.
std::string SanitizeShardName(const std::string& value);

// The eval documents' indices (sorted) among `num_documents`, as described above.
std::vector<int64_t> ChooseEvalDocuments(int64_t num_documents, double eval_fraction,
                                         uint64_t seed);

}  // namespace lorasweep

// The data loader on hand-written shards whose sequences carry their own number: epoch order as
// documented, rank slices disjoint and covering each epoch, cursor save/restore, shard selection,
// eval slices; and token shard validation.
#include "worker/data/data_loader.h"

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "worker/data/dataset_manifest.h"
#include "worker/data/token_shard.h"

namespace lorasweep {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr int64_t kSeqLen = 4;

// Sequence n holds ids {n, n+1000, n+2000, n+3000} (u32 dtype when `big_ids`), flags = n & 7.
void WriteShard(const std::string& path, int64_t first, int64_t count, bool big_ids,
                DatasetShardInfo* info) {
  TokenShardWriter writer(path, kSeqLen, big_ids ? kTokenIdsU32 : kTokenIdsU16);
  for (int64_t n = first; n < first + count; ++n) {
    int32_t ids[kSeqLen];
    uint8_t flags[kSeqLen];
    for (int64_t t = 0; t < kSeqLen; ++t) {
      ids[t] = static_cast<int32_t>(n + 1000 * t + (big_ids ? 100000 : 0));
      flags[t] = static_cast<uint8_t>(t == 0 ? kTokenDocStart : kTokenLoss);
    }
    writer.AddSequence(ids, flags);
  }
  ASSERT_TRUE(writer.Finish().ok());
  info->file = fs::path(path).filename().string();
  info->sequences = writer.counts().sequences;
  info->documents = writer.counts().documents;
  info->tokens = writer.counts().tokens;
  info->loss_tokens = writer.counts().loss_tokens;
}

// A dataset: shard "x" = sequences 0..6, "y" = 7..16 (u32 ids), eval = 100..104.
std::string MakeDataset() {
  static int counter = 0;
  const std::string dir =
      absl::StrCat(::testing::TempDir(), "/data_loader_test_", getpid(), "_", counter++);
  fs::remove_all(dir);
  fs::create_directories(dir);
  DatasetManifest m;
  m.seq_len = kSeqLen;
  m.packing = "pack";
  m.chat_template = "chatml";
  m.vocab_size = 200000;
  DatasetShardInfo x{"x"}, y{"y"};
  WriteShard(dir + "/x.tok", 0, 7, false, &x);
  WriteShard(dir + "/y.tok", 7, 10, true, &y);
  WriteShard(dir + "/eval.tok", 100, 5, false, &m.eval);
  m.shards = {x, y};
  EXPECT_TRUE(WriteFileAtomically(dir + "/manifest.json", DatasetManifestToJson(m)).ok());
  return dir;
}

// The number a sequence carries (checking all its tokens agree).
int64_t SequenceNumber(const int32_t* ids) {
  const int64_t n = ids[0] >= 100000 ? ids[0] - 100000 : ids[0];
  for (int64_t t = 1; t < kSeqLen; ++t) {
    EXPECT_EQ(ids[t] - ids[0], 1000 * t);
  }
  return n;
}

std::vector<int64_t> Batch(DataLoader& loader) {
  std::vector<int32_t> ids;
  std::vector<uint8_t> flags;
  int64_t n = -1;
  loader.NextBatch(&ids, &flags, &n);
  EXPECT_EQ(static_cast<int64_t>(ids.size()), n * kSeqLen);
  EXPECT_EQ(flags.size(), ids.size());
  std::vector<int64_t> out;
  for (int64_t s = 0; s < n; ++s) {
    out.push_back(SequenceNumber(ids.data() + s * kSeqLen));
    EXPECT_EQ(flags[s * kSeqLen], kTokenDocStart);
    EXPECT_EQ(flags[s * kSeqLen + 1], kTokenLoss);
  }
  return out;
}

// The documented order, written out independently.
std::vector<int64_t> ExpectedOrder(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(n);
  for (int64_t i = 0; i < n; ++i) perm[i] = i;
  std::mt19937_64 rng(seed ^ (static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ull));
  for (int64_t i = n - 1; i >= 1; --i) {
    const uint64_t j = rng() % static_cast<uint64_t>(i + 1);
    std::swap(perm[i], perm[j]);
  }
  return perm;
}

TEST(DataLoaderTest, FollowsTheDocumentedOrder) {
  const std::string dir = MakeDataset();
  absl::StatusOr<DataLoader> loader = DataLoader::Open(dir, {}, 5, 0, 1, 42);
  ASSERT_TRUE(loader.ok()) << loader.status();
  EXPECT_EQ(loader->seq_len(), kSeqLen);
  EXPECT_EQ(loader->sequences_per_epoch(), 17);
  EXPECT_EQ(loader->steps_per_epoch(), 3);  // 17 / 5, remainder dropped
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    const std::vector<int64_t> order = ExpectedOrder(17, 42, epoch);
    for (int64_t step = 0; step < 3; ++step) {
      EXPECT_EQ(loader->cursor(), (DataCursor{epoch, step}));
      EXPECT_EQ(Batch(*loader),
                std::vector<int64_t>(order.begin() + 5 * step, order.begin() + 5 * step + 5));
    }
  }
  EXPECT_EQ(loader->cursor(), (DataCursor{3, 0}));
}

TEST(DataLoaderTest, RanksAreDisjointAndCoverEachEpoch) {
  const std::string dir = MakeDataset();
  for (const auto& [global_batch, world] :
       std::vector<std::pair<int, int>>{{17, 1}, {6, 3}, {8, 2}}) {
    std::vector<DataLoader> ranks;
    for (int r = 0; r < world; ++r) {
      absl::StatusOr<DataLoader> l = DataLoader::Open(dir, {"x", "y"}, global_batch, r, world, 9);
      ASSERT_TRUE(l.ok()) << l.status();
      ranks.push_back(*std::move(l));
    }
    const int64_t steps = 17 / global_batch;
    for (int epoch = 0; epoch < 2; ++epoch) {
      std::multiset<int64_t> seen;
      for (int64_t step = 0; step < steps; ++step) {
        std::multiset<int64_t> batch;
        for (int r = 0; r < world; ++r) {
          const std::vector<int64_t> got = Batch(ranks[r]);
          EXPECT_EQ(static_cast<int>(got.size()), global_batch / world);
          batch.insert(got.begin(), got.end());
        }
        // Together the ranks hold exactly the global batch.
        const std::vector<int64_t> order = ExpectedOrder(17, 9, epoch);
        std::multiset<int64_t> want(order.begin() + step * global_batch,
                                    order.begin() + (step + 1) * global_batch);
        EXPECT_EQ(batch, want);
        seen.insert(batch.begin(), batch.end());
      }
      // No sequence twice in an epoch; all of them when the batch divides the epoch.
      EXPECT_EQ(std::set<int64_t>(seen.begin(), seen.end()).size(), seen.size());
      EXPECT_EQ(static_cast<int64_t>(seen.size()), steps * global_batch);
      if (17 % global_batch == 0) {
        EXPECT_EQ(seen.size(), 17u);
      }
    }
  }
}

TEST(DataLoaderTest, CursorRestoreReproducesTheBatches) {
  const std::string dir = MakeDataset();
  absl::StatusOr<DataLoader> a = DataLoader::Open(dir, {}, 4, 1, 2, 5);
  ASSERT_TRUE(a.ok());
  std::vector<std::vector<int64_t>> uninterrupted;
  for (int i = 0; i < 11; ++i) uninterrupted.push_back(Batch(*a));

  absl::StatusOr<DataLoader> b = DataLoader::Open(dir, {}, 4, 1, 2, 5);
  ASSERT_TRUE(b.ok());
  for (int i = 0; i < 6; ++i) EXPECT_EQ(Batch(*b), uninterrupted[i]);
  const std::string saved = b->cursor().ToJson();
  EXPECT_EQ(saved, R"({"epoch":1,"step":2})");  // 4 steps per epoch
  absl::StatusOr<DataLoader> c = DataLoader::Open(dir, {}, 4, 1, 2, 5);
  ASSERT_TRUE(c.ok());
  absl::StatusOr<DataCursor> cursor = DataCursor::FromJson(saved);
  ASSERT_TRUE(cursor.ok());
  c->set_cursor(*cursor);
  for (int i = 6; i < 11; ++i) EXPECT_EQ(Batch(*c), uninterrupted[i]);
  EXPECT_FALSE(DataCursor::FromJson(R"({"epoch": 1})").ok());
  EXPECT_FALSE(DataCursor::FromJson("nonsense").ok());
}

TEST(DataLoaderTest, EpochsAndSeedsDiffer) {
  const std::string dir = MakeDataset();
  absl::StatusOr<DataLoader> l = DataLoader::Open(dir, {}, 17, 0, 1, 1);
  absl::StatusOr<DataLoader> other_seed = DataLoader::Open(dir, {}, 17, 0, 1, 2);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(other_seed.ok());
  const std::vector<int64_t> e0 = Batch(*l), e1 = Batch(*l);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(std::set<int64_t>(e0.begin(), e0.end()), std::set<int64_t>(e1.begin(), e1.end()));
  EXPECT_NE(Batch(*other_seed), e0);
}

TEST(DataLoaderTest, SelectsShardsByName) {
  const std::string dir = MakeDataset();
  absl::StatusOr<DataLoader> x = DataLoader::Open(dir, {"x"}, 7, 0, 1, 0);
  ASSERT_TRUE(x.ok()) << x.status();
  const std::vector<int64_t> got = Batch(*x);
  EXPECT_EQ(std::set<int64_t>(got.begin(), got.end()), (std::set<int64_t>{0, 1, 2, 3, 4, 5, 6}));
  absl::StatusOr<DataLoader> y = DataLoader::Open(dir, {"y"}, 2, 0, 1, 0);
  ASSERT_TRUE(y.ok());
  for (int64_t n : Batch(*y)) EXPECT_GE(n, 7);
  // "all" without a shard of that name: every shard.
  absl::StatusOr<DataLoader> all = DataLoader::Open(dir, {"all"}, 1, 0, 1, 0);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->sequences_per_epoch(), 17);

  absl::StatusOr<DataLoader> unknown = DataLoader::Open(dir, {"z"}, 1, 0, 1, 0);
  ASSERT_FALSE(unknown.ok());
  EXPECT_THAT(std::string(unknown.status().message()),
              HasSubstr("no shard named \"z\"; its shards: x, y"));
  absl::StatusOr<DataLoader> too_big = DataLoader::Open(dir, {"x"}, 8, 0, 1, 0);
  ASSERT_FALSE(too_big.ok());
  EXPECT_THAT(std::string(too_big.status().message()), HasSubstr("7 sequences, fewer than"));
  EXPECT_FALSE(DataLoader::Open(dir, {}, 4, 2, 2, 0).ok());  // rank out of range
  EXPECT_FALSE(DataLoader::Open(dir + "/nope", {}, 4, 0, 1, 0).ok());
}

TEST(DataLoaderTest, EvalSlicesInFileOrder) {
  const std::string dir = MakeDataset();
  std::vector<int64_t> all;
  for (int r = 0; r < 2; ++r) {
    absl::StatusOr<DataLoader> eval = DataLoader::OpenEval(dir, r, 2);
    ASSERT_TRUE(eval.ok()) << eval.status();
    std::vector<int32_t> ids;
    std::vector<uint8_t> flags;
    int64_t n = 0;
    eval->EvalSequences(&ids, &flags, &n);
    std::vector<int64_t> got;
    for (int64_t s = 0; s < n; ++s) got.push_back(SequenceNumber(ids.data() + s * kSeqLen));
    const std::vector<int64_t> want =
        r == 0 ? std::vector<int64_t>{100, 102, 104} : std::vector<int64_t>{101, 103};
    EXPECT_EQ(got, want);
  }
}

TEST(DataLoaderTest, ShardFilesAreValidated) {
  const std::string dir = MakeDataset();
  const std::string path = dir + "/x.tok";
  absl::StatusOr<TokenShard> ok = TokenShard::Open(path);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->num_sequences(), 7);
  EXPECT_EQ(ok->num_documents(), 7);
  EXPECT_EQ(ok->num_loss_tokens(), 21);
  EXPECT_EQ(fs::file_size(path), 64u + 7 * kSeqLen * 3);
  // Header fields at the documented offsets.
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), {});
  }
  EXPECT_EQ(bytes.substr(0, 8), "LSWPTOK1");
  EXPECT_EQ(bytes[8], 1);   // version
  EXPECT_EQ(bytes[12], 1);  // u16
  EXPECT_EQ(bytes[16], 4);  // seq_len
  EXPECT_EQ(bytes[24], 7);  // sequences
  EXPECT_EQ(bytes[64], 0);  // first id, little-endian u16: 0
  EXPECT_EQ(bytes[66], static_cast<char>(1000 & 0xFF));
  EXPECT_EQ(bytes[67], static_cast<char>(1000 >> 8));

  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes.substr(0, bytes.size() - 1);
  absl::StatusOr<TokenShard> truncated = TokenShard::Open(path);
  ASSERT_FALSE(truncated.ok());
  EXPECT_THAT(std::string(truncated.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(truncated.status().message()), HasSubstr("7 sequences of 4 tokens"));
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "XXXXXXXX" << bytes.substr(8);
  absl::StatusOr<TokenShard> bad_magic = TokenShard::Open(path);
  ASSERT_FALSE(bad_magic.ok());
  EXPECT_THAT(std::string(bad_magic.status().message()), HasSubstr("bad magic"));
  // The loader reports the broken shard by its file.
  absl::StatusOr<DataLoader> loader = DataLoader::Open(dir, {}, 1, 0, 1, 0);
  ASSERT_FALSE(loader.ok());
  EXPECT_THAT(std::string(loader.status().message()), HasSubstr("x.tok"));
}

}  // namespace
}  // namespace lorasweep

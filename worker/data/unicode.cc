#include "worker/data/unicode.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <unordered_map>
#include <vector>

namespace lorasweep::unicode {
namespace {

#include "worker/data/unicode_tables.inc"

constexpr uint32_t kMaxCodePoint = 0x10FFFF;
constexpr int kBlockBits = 8;
constexpr uint32_t kBlockSize = 1u << kBlockBits;
constexpr uint32_t kNumBlocks = (kMaxCodePoint + 1) >> kBlockBits;

// A two-level lookup table over all code points: 4352 block indices into deduplicated 256-entry
// blocks. Most blocks are all-zero or repeated, so the table stays small while a lookup is two
// loads.
class TwoLevelTable {
 public:
  explicit TwoLevelTable(const std::vector<uint8_t>& dense) {
    std::unordered_map<uint64_t, std::vector<uint16_t>> by_hash;  // block hash -> block numbers
    index_.resize(kNumBlocks);
    for (uint32_t b = 0; b < kNumBlocks; ++b) {
      const uint8_t* block = dense.data() + static_cast<size_t>(b) * kBlockSize;
      uint64_t h = 1469598103934665603ull;  // FNV-1a
      for (uint32_t i = 0; i < kBlockSize; ++i) h = (h ^ block[i]) * 1099511628211ull;
      std::vector<uint16_t>& candidates = by_hash[h];
      int found = -1;
      for (uint16_t c : candidates) {
        if (std::memcmp(blocks_.data() + (static_cast<size_t>(c) << kBlockBits), block,
                        kBlockSize) == 0) {
          found = c;
          break;
        }
      }
      if (found < 0) {
        found = static_cast<int>(blocks_.size() >> kBlockBits);
        blocks_.insert(blocks_.end(), block, block + kBlockSize);
        candidates.push_back(static_cast<uint16_t>(found));
      }
      index_[b] = static_cast<uint16_t>(found);
    }
  }
  uint8_t Get(uint32_t cp) const {
    if (cp > kMaxCodePoint) return 0;
    return blocks_[(static_cast<size_t>(index_[cp >> kBlockBits]) << kBlockBits) |
                   (cp & (kBlockSize - 1))];
  }

 private:
  std::vector<uint16_t> index_;
  std::vector<uint8_t> blocks_;
};

template <size_t N>
void SetRanges(const uint32_t (&ranges)[N][2], uint8_t bit, std::vector<uint8_t>* dense) {
  for (const auto& r : ranges) {
    for (uint32_t cp = r[0]; cp <= r[1]; ++cp) (*dense)[cp] |= bit;
  }
}

const TwoLevelTable& FlagTable() {
  static const TwoLevelTable* table = [] {
    std::vector<uint8_t> dense(kMaxCodePoint + 1, 0);
    SetRanges(kLetterRanges, kLetter, &dense);
    SetRanges(kNumberRanges, kNumber, &dense);
    SetRanges(kWhiteSpaceRanges, kWhiteSpace, &dense);
    SetRanges(kNumericRanges, kNumeric, &dense);
    SetRanges(kWordRanges, kWord, &dense);
    return new TwoLevelTable(dense);
  }();
  return *table;
}

const TwoLevelTable& CombiningClassTable() {
  static const TwoLevelTable* table = [] {
    std::vector<uint8_t> dense(kMaxCodePoint + 1, 0);
    for (const auto& r : kCombiningClassRanges) {
      for (uint32_t cp = r[0]; cp <= r[1]; ++cp) dense[cp] = static_cast<uint8_t>(r[2]);
    }
    return new TwoLevelTable(dense);
  }();
  return *table;
}

// Hangul syllables compose and decompose arithmetically (Unicode 3.12).
constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28;
constexpr uint32_t kNCount = kVCount * kTCount, kSCount = kLCount * kNCount;

const uint32_t* FindDecomposition(uint32_t cp) {
  const auto* end = std::end(kDecompositions);
  const auto* it = std::lower_bound(std::begin(kDecompositions), end, cp,
                                    [](const uint32_t(&row)[5], uint32_t v) { return row[0] < v; });
  if (it == end || (*it)[0] != cp) return nullptr;
  return &(*it)[1];
}

const std::unordered_map<uint64_t, uint32_t>& CompositionMap() {
  static const auto* map = [] {
    auto* m = new std::unordered_map<uint64_t, uint32_t>();
    m->reserve(std::size(kCompositions) * 2);
    for (const auto& row : kCompositions) m->emplace((uint64_t{row[0]} << 21) | row[1], row[2]);
    return m;
  }();
  return *map;
}

uint32_t Compose(uint32_t a, uint32_t b) {
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount) {
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  }
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount) {
    return a + (b - kTBase);
  }
  const auto& map = CompositionMap();
  auto it = map.find((uint64_t{a} << 21) | b);
  return it == map.end() ? 0 : it->second;
}

// Canonical decomposition followed by canonical ordering.
std::vector<uint32_t> DecomposeAndOrder(std::string_view s) {
  std::vector<uint32_t> out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    size_t len;
    const uint32_t cp = DecodeUtf8(s, pos, &len);
    pos += len;
    if (cp >= kSBase && cp < kSBase + kSCount) {
      const uint32_t i = cp - kSBase;
      out.push_back(kLBase + i / kNCount);
      out.push_back(kVBase + (i % kNCount) / kTCount);
      if (i % kTCount != 0) out.push_back(kTBase + i % kTCount);
    } else if (const uint32_t* d = cp < 0xC0 ? nullptr : FindDecomposition(cp)) {
      for (int k = 0; k < 4 && d[k] != 0; ++k) out.push_back(d[k]);
    } else {
      out.push_back(cp);
    }
  }
  const auto& ccc = CombiningClassTable();
  for (size_t i = 0; i < out.size();) {
    if (ccc.Get(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t j = i;
    while (j < out.size() && ccc.Get(out[j]) != 0) ++j;
    std::stable_sort(out.begin() + i, out.begin() + j,
                     [&](uint32_t a, uint32_t b) { return ccc.Get(a) < ccc.Get(b); });
    i = j;
  }
  return out;
}

// No code point below U+0300 decomposes into something else, composes with a neighbour or has a
// non-zero combining class (the table generator asserts it); such text is in NFC and NFD already,
// except Latin-1 letters with accents, which only NFD splits.
bool AllBelow(std::string_view s, uint8_t max_byte) {
  for (char c : s) {
    if (static_cast<uint8_t>(c) >= max_byte) return false;
  }
  return true;
}

}  // namespace

uint8_t Flags(uint32_t cp) { return FlagTable().Get(cp); }

uint8_t CombiningClass(uint32_t cp) { return CombiningClassTable().Get(cp); }

void AppendUtf8(uint32_t cp, std::string* out) {
  if (cp < 0x80) {
    out->push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

bool IsValidUtf8(std::string_view s) {
  for (size_t pos = 0; pos < s.size();) {
    if (static_cast<uint8_t>(s[pos]) < 0x80) {
      ++pos;
      continue;
    }
    size_t len;
    if (DecodeUtf8(s, pos, &len) == 0xFFFD && len == 1) return false;
    pos += len;
  }
  return true;
}

std::string ToValidUtf8Lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  for (size_t pos = 0; pos < s.size();) {
    const uint8_t b0 = byte(pos);
    if (b0 < 0x80) {
      out.push_back(static_cast<char>(b0));
      ++pos;
      continue;
    }
    // The accepted range of the second byte depends on the lead byte (no overlongs, surrogates or
    // values above U+10FFFF); later bytes are plain continuation bytes. A failure replaces the
    // longest valid prefix (at least the lead byte) with one U+FFFD, as the Unicode
    // "maximal subpart" practice and Rust's from_utf8_lossy do.
    size_t need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      need = 1;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      need = 2;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      need = 3;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    } else {
      out += "\xEF\xBF\xBD";
      ++pos;
      continue;
    }
    size_t got = 0;
    while (got < need && pos + 1 + got < s.size()) {
      const uint8_t b = byte(pos + 1 + got);
      const uint8_t l = got == 0 ? lo : 0x80;
      const uint8_t h = got == 0 ? hi : 0xBF;
      if (b < l || b > h) break;
      ++got;
    }
    if (got == need) {
      out.append(s.substr(pos, need + 1));
    } else {
      out += "\xEF\xBF\xBD";
    }
    pos += got + 1;
  }
  return out;
}

std::string Nfd(std::string_view s) {
  if (AllBelow(s, 0xC3)) return std::string(s);  // below U+00C0 nothing decomposes
  std::string out;
  out.reserve(s.size() + 8);
  for (uint32_t cp : DecomposeAndOrder(s)) AppendUtf8(cp, &out);
  return out;
}

std::string Nfc(std::string_view s) {
  if (AllBelow(s, 0xCC)) return std::string(s);  // below U+0300
  const std::vector<uint32_t> cps = DecomposeAndOrder(s);
  const auto& ccc = CombiningClassTable();
  std::vector<uint32_t> out;
  out.reserve(cps.size());
  size_t starter = SIZE_MAX;  // index in `out` of the last starter
  uint8_t last_class = 0;     // class of the last character kept after that starter
  for (uint32_t cp : cps) {
    const uint8_t k = ccc.Get(cp);
    if (starter != SIZE_MAX) {
      // A character composes with the last starter unless something in between blocks it: a
      // starter, or a non-starter of the same or a higher class.
      const bool adjacent = out.size() - 1 == starter;
      const bool blocked = !adjacent && (last_class == 0 || last_class >= k);
      if (!blocked) {
        if (const uint32_t composed = Compose(out[starter], cp)) {
          out[starter] = composed;
          continue;
        }
      }
    }
    if (k == 0) starter = out.size();
    last_class = k;
    out.push_back(cp);
  }
  std::string result;
  result.reserve(s.size());
  for (uint32_t cp : out) AppendUtf8(cp, &result);
  return result;
}

uint32_t ByteToUnicode(uint8_t byte) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      t[b] = printable ? static_cast<uint32_t>(b) : next++;
    }
    return t;
  }();
  return table[byte];
}

int UnicodeToByte(uint32_t cp) {
  static const std::array<int16_t, 512> table = [] {
    std::array<int16_t, 512> t;
    t.fill(-1);
    for (int b = 0; b < 256; ++b)
      t[ByteToUnicode(static_cast<uint8_t>(b))] = static_cast<int16_t>(b);
    return t;
  }();
  return cp < 512 ? table[cp] : -1;
}

}  // namespace lorasweep::unicode

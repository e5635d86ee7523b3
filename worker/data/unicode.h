// The Unicode knowledge the tokenizers need: UTF-8 decoding, the character classes of the split
// rules
// (\p{L}, \p{N}, \s, Rust's is_numeric, \w) and NFC/NFD normalization.
//
// The data mirror what the Hugging Face `tokenizers` library (0.23.x) actually uses, which is not
// one Unicode version: its Oniguruma regexes know Unicode 16.0, Rust's char::is_numeric
// (Digits) 17.0 and its normalization crate 9.0. unicode_tables.inc is generated from probes of
// that library (tests/python/make_unicode_tables.py), so a character added to Unicode later is
// classified as the reference classifies it, not as the latest standard would.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace lorasweep::unicode {

// Character class bits returned by Flags().
enum : uint8_t {
  kLetter = 1 << 0,      // Oniguruma \p{L}
  kNumber = 1 << 1,      // Oniguruma \p{N}
  kWhiteSpace = 1 << 2,  // Oniguruma \s, identical to Rust char::is_whitespace (White_Space)
  kNumeric = 1 << 3,     // Rust char::is_numeric (the Digits pre-tokenizer)
  kWord = 1 << 4,        // regex-crate \w (single_word added tokens)
};

// Class bits of a code point (0 for unassigned ones and anything above U+10FFFF).
uint8_t Flags(uint32_t cp);

// Canonical combining class (0 for starters).
uint8_t CombiningClass(uint32_t cp);

// Decodes the UTF-8 sequence starting at s[pos] (pos < s.size()). Returns the code point and stores
// its byte length in *len. An invalid or truncated sequence decodes as U+FFFD with length 1, so
// arbitrary bytes never stall a scanner.
inline uint32_t DecodeUtf8(std::string_view s, size_t pos, size_t* len) {
  const auto b0 = static_cast<uint8_t>(s[pos]);
  if (b0 < 0x80) {
    *len = 1;
    return b0;
  }
  size_t n;
  uint32_t cp;
  uint32_t min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    *len = 1;
    return 0xFFFD;
  }
  if (pos + n > s.size()) {
    *len = 1;
    return 0xFFFD;
  }
  for (size_t i = 1; i < n; ++i) {
    const auto b = static_cast<uint8_t>(s[pos + i]);
    if ((b & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp < 0xE000)) {
    *len = 1;
    return 0xFFFD;
  }
  *len = n;
  return cp;
}

// Byte length of the UTF-8 sequence starting at s[pos], as DecodeUtf8 counts it.
inline size_t Utf8Length(std::string_view s, size_t pos) {
  if (static_cast<uint8_t>(s[pos]) < 0x80) return 1;
  size_t len;
  DecodeUtf8(s, pos, &len);
  return len;
}

// Appends the UTF-8 encoding of `cp` (a valid scalar value) to *out.
void AppendUtf8(uint32_t cp, std::string* out);

// Whether `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD, as Rust's
// String::from_utf8_lossy does (and hence the reference decoders).
std::string ToValidUtf8Lossy(std::string_view s);

// Unicode normalization forms C and D with the reference's (Unicode 9.0) data. Ill-formed input
// bytes pass through as U+FFFD.
std::string Nfc(std::string_view s);
std::string Nfd(std::string_view s);

// GPT-2's reversible byte <-> character map ("bytes_to_unicode"): printable Latin-1 bytes map to
// themselves, the others to U+0100 and up, so every byte string has a printable spelling.
uint32_t ByteToUnicode(uint8_t byte);
// The byte spelled by `cp`, or -1 when `cp` is outside the byte-level alphabet.
int UnicodeToByte(uint32_t cp);

}  // namespace lorasweep::unicode

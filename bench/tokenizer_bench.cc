// Tokenizer throughput, single thread: MB/s (10^6 bytes of UTF-8 input per second) for encoding a
// whole text in one call (by a freshly loaded tokenizer, "cold", and then warm: best of REPEATS
// after a warm-up), encoding it line by line, and decoding the ids back. The ceiling measured
// in the same run is a pass that only decodes the text's code points and looks up their character
// classes, the least any Unicode-aware tokenizer does; each figure is also printed as a fraction of
// it. bench/tokenizer_reference_bench.py times the reference library on the same files.
//
//   tokenizer_bench TOKENIZER TEXT [REPEATS]
//     TOKENIZER: a tokenizer.json, a .gguf file or a model folder; TEXT: a UTF-8 text file, e.g.
//     the Debian FAQ: zcat /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz > /tmp/faq.txt
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/file_util.h"
#include "worker/data/tokenizer.h"
#include "worker/data/unicode.h"

namespace {

template <typename Fn>
double BestSeconds(int repeats, Fn&& fn) {
  fn();  // warm-up
  double best = 1e30;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    const auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

// Keeps results alive so the optimizer cannot drop the timed work.
volatile size_t g_sink = 0;

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s TOKENIZER TEXT [REPEATS]\n", argv[0]);
    return 2;
  }
  const int repeats = argc > 3 ? std::max(1, std::atoi(argv[3])) : 5;
  auto tok = lorasweep::Tokenizer::FromModel(argv[1]);
  if (!tok.ok()) {
    std::fprintf(stderr, "%s\n", tok.status().ToString().c_str());
    return 1;
  }
  auto text = lorasweep::ReadFileToString(argv[2]);
  if (!text.ok()) {
    std::fprintf(stderr, "%s\n", text.status().ToString().c_str());
    return 1;
  }
  const lorasweep::Tokenizer& t = **tok;
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < text->size();) {
    size_t end = text->find('\n', pos);
    end = end == std::string::npos ? text->size() : end + 1;
    lines.push_back(text->substr(pos, end - pos));
    pos = end;
  }
  const double mb = static_cast<double>(text->size()) / 1e6;
  const std::vector<int32_t> ids = t.Encode(*text);

  const double scan = BestSeconds(repeats, [&] {
    size_t acc = 0;
    for (size_t pos = 0; pos < text->size();) {
      size_t len;
      acc += lorasweep::unicode::Flags(lorasweep::unicode::DecodeUtf8(*text, pos, &len));
      pos += len;
    }
    g_sink = g_sink + acc;
  });
  // The first encode by a fresh tokenizer, before its word cache knows any word.
  double cold = 1e30;
  for (int i = 0; i < repeats; ++i) {
    auto fresh = lorasweep::Tokenizer::FromModel(argv[1]);
    const auto t0 = std::chrono::steady_clock::now();
    g_sink = g_sink + (*fresh)->Encode(*text).size();
    cold = std::min(cold,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double whole = BestSeconds(repeats, [&] { g_sink = g_sink + t.Encode(*text).size(); });
  const double by_line = BestSeconds(repeats, [&] {
    size_t n = 0;
    for (const std::string& line : lines) n += t.Encode(line).size();
    g_sink = g_sink + n;
  });
  const double decode = BestSeconds(repeats, [&] { g_sink = g_sink + t.Decode(ids).size(); });

  std::printf("lorasweep tokenizer, 1 thread: %zu bytes, %zu lines, %zu tokens (%s)\n",
              text->size(), lines.size(), ids.size(), argv[1]);
  std::printf("ceiling: code point scan : %8.2f MB/s\n", mb / scan);
  std::printf("encode whole text, cold  : %8.2f MB/s  (%.1f ms, %.3f of ceiling)\n", mb / cold,
              cold * 1e3, scan / cold);
  std::printf("encode whole text        : %8.2f MB/s  (%.1f ms, %.3f of ceiling)\n", mb / whole,
              whole * 1e3, scan / whole);
  std::printf("encode line by line      : %8.2f MB/s  (%.1f ms, %.3f of ceiling)\n", mb / by_line,
              by_line * 1e3, scan / by_line);
  std::printf("decode                   : %8.2f MB/s  (%.1f ms, %.3f of ceiling)\n", mb / decode,
              decode * 1e3, scan / decode);
  return 0;
}

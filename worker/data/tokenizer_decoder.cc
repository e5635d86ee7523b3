#include "worker/data/tokenizer_decoder.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "worker/data/unicode.h"

namespace lorasweep::tokenizer_internal {
namespace {

std::string Utf8Of(uint32_t cp) {
  std::string s;
  unicode::AppendUtf8(cp, &s);
  return s;
}

void ReplaceAll(std::string* s, const std::string& pattern, const std::string& content) {
  if (pattern.empty() || s->find(pattern) == std::string::npos) return;
  std::string out;
  size_t prev = 0;
  for (size_t at = s->find(pattern); at != std::string::npos;
       at = s->find(pattern, at + pattern.size())) {
    out.append(*s, prev, at - prev);
    out += content;
    prev = at + pattern.size();
  }
  out.append(*s, prev, std::string::npos);
  *s = std::move(out);
}

class ByteLevelDecoder : public DecoderStep {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) bytes += ByteLevelTokenBytes(t);
    tokens->assign(1, unicode::ToValidUtf8Lossy(bytes));
  }
  std::string Describe() const override { return "ByteLevel()"; }
};

class ReplaceDecoder : public DecoderStep {
 public:
  ReplaceDecoder(std::string pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Apply(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) ReplaceAll(&t, pattern_, content_);
  }
  std::string Describe() const override {
    return absl::StrCat("Replace(", pattern_, "->", content_, ")");
  }

 private:
  std::string pattern_;
  std::string content_;
};

int ByteTokenValue(const std::string& t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return -1;
  int v = 0;
  for (int i = 3; i < 5; ++i) {
    const char c = t[i];
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'A' && c <= 'F') {
      d = c - 'A' + 10;
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return -1;
    }
    v = v * 16 + d;
  }
  return v;
}

class ByteFallbackDecoder : public DecoderStep {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    out.reserve(tokens->size());
    std::string pending;
    const auto flush = [&] {
      if (pending.empty()) return;
      if (unicode::IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back("\xEF\xBF\xBD");
      }
      pending.clear();
    };
    for (std::string& t : *tokens) {
      const int b = ByteTokenValue(t);
      if (b >= 0) {
        pending.push_back(static_cast<char>(b));
        continue;
      }
      flush();
      out.push_back(std::move(t));
    }
    flush();
    *tokens = std::move(out);
  }
  std::string Describe() const override { return "ByteFallback()"; }
};

class FuseDecoder : public DecoderStep {
 public:
  void Apply(std::vector<std::string>* tokens) const override {
    std::string all;
    for (const std::string& t : *tokens) all += t;
    tokens->assign(1, std::move(all));
  }
  std::string Describe() const override { return "Fuse()"; }
};

class StripDecoder : public DecoderStep {
 public:
  StripDecoder(uint32_t content, int start, int stop)
      : content_(content), start_(start), stop_(stop) {}
  void Apply(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) {
      std::vector<uint32_t> cps;
      for (size_t pos = 0; pos < t.size();) {
        size_t len;
        cps.push_back(unicode::DecodeUtf8(t, pos, &len));
        pos += len;
      }
      size_t begin = 0;
      while (begin < cps.size() && static_cast<int>(begin) < start_ && cps[begin] == content_)
        ++begin;
      size_t end = cps.size();
      for (int i = 0; i < stop_ && end > begin && cps[end - 1] == content_; ++i) --end;
      if (begin == 0 && end == cps.size()) continue;
      std::string s;
      for (size_t i = begin; i < end; ++i) unicode::AppendUtf8(cps[i], &s);
      t = std::move(s);
    }
  }
  std::string Describe() const override {
    return absl::StrCat("Strip(", Utf8Of(content_), ",", start_, ",", stop_, ")");
  }

 private:
  uint32_t content_;
  int start_;
  int stop_;
};

class MetaspaceDecoder : public DecoderStep {
 public:
  MetaspaceDecoder(uint32_t replacement, bool prepend)
      : replacement_(Utf8Of(replacement)), prepend_(prepend) {}
  void Apply(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      ReplaceAll(&(*tokens)[i], replacement_, i == 0 && prepend_ ? "" : " ");
    }
  }
  std::string Describe() const override {
    return absl::StrCat("Metaspace(", replacement_, ",", prepend_ ? 1 : 0, ")");
  }

 private:
  std::string replacement_;
  bool prepend_;
};

}  // namespace

std::string ByteLevelTokenBytes(const std::string& token) {
  std::string bytes;
  bytes.reserve(token.size());
  for (size_t pos = 0; pos < token.size();) {
    size_t len;
    const int b = unicode::UnicodeToByte(unicode::DecodeUtf8(token, pos, &len));
    if (b < 0) return token;
    bytes.push_back(static_cast<char>(b));
    pos += len;
  }
  return bytes;
}

std::unique_ptr<DecoderStep> MakeByteLevelDecoder() { return std::make_unique<ByteLevelDecoder>(); }
std::unique_ptr<DecoderStep> MakeReplaceDecoder(std::string pattern, std::string content) {
  return std::make_unique<ReplaceDecoder>(std::move(pattern), std::move(content));
}
std::unique_ptr<DecoderStep> MakeByteFallbackDecoder() {
  return std::make_unique<ByteFallbackDecoder>();
}
std::unique_ptr<DecoderStep> MakeFuseDecoder() { return std::make_unique<FuseDecoder>(); }
std::unique_ptr<DecoderStep> MakeStripDecoder(uint32_t content, int start, int stop) {
  return std::make_unique<StripDecoder>(content, start, stop);
}
std::unique_ptr<DecoderStep> MakeMetaspaceDecoder(uint32_t replacement, bool prepend) {
  return std::make_unique<MetaspaceDecoder>(replacement, prepend);
}

std::string Decoder::Decode(std::vector<std::string> tokens) const {
  if (steps_.empty()) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i > 0) out.push_back(' ');
      out += tokens[i];
    }
    return out;
  }
  for (const auto& step : steps_) step->Apply(&tokens);
  std::string out;
  for (const std::string& t : tokens) out += t;
  return out;
}

std::string Decoder::Describe() const {
  std::string out = "[";
  for (const auto& step : steps_) absl::StrAppend(&out, step->Describe(), ";");
  return out + "]";
}

}  // namespace lorasweep::tokenizer_internal

#!/usr/bin/env python3
"""Writes the golden token ids tests/tokenizer_test.cc compares lorasweep's tokenizers against.

Reference: Hugging Face `tokenizers` 0.23.3 for tokenizer.json files; llama.cpp (through
llama-cpp-python) for the GGUF "llama" vocabulary, whose tokenization lorasweep mimics. Run by hand
after changing the texts or the tokenizer files, never in the test run:

  .venv/bin/pip install tokenizers==0.23.3 gguf==0.19.0
  .venv/bin/pip install llama-cpp-python==0.3.36   # builds llama.cpp from source (minutes)
  .venv/bin/python tests/python/make_tokenizer_goldens.py

Outputs in tests/data/tokenizer/:
  smollm2_golden.json, llama2_golden.json   tokenizer.json variants: for every text the ids with
      special tokens parsed ("ids") and not ("ids_plain"), and decode(ids) ("decoded"). Variants
      patch the base file in memory (top-level keys replaced, "model.<key>" set inside the model)
      to cover other models' pipelines (Llama 3 / Qwen2 split rules, Metaspace) with one vocabulary.
  llama2_vocab.gguf                          the Llama-2-style vocabulary as a GGUF "llama" vocab
      (no tensors; scores rank the merged tokens in merge order).
  llama2_gguf_golden.json                    llama.cpp's ids for that GGUF.
  pretokenizer_golden.json                   the reference's pre-tokenizer pieces on random text
      dense in the characters the split rules treat specially.
"""
import copy
import json
import os
import random

from tokenizers import Tokenizer, pre_tokenizers, Regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.join(ROOT, "tests", "data", "tokenizer")

GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
          r"|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2 = LLAMA3.replace(r"\p{N}{1,3}", r"\p{N}")

FIXED_TEXTS = [
    "", " ", "  ", "a", "Hello world", "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Café naïve résumé façade Ångström Øresund", "ÀÉÎÕÜ àéîõü ß ẞ ǅ ﬁ",
    "e\u0301 combining", "\u0301", "\u0301\u0302\u0303abc", "a\u0308\u0301\u0323", "\u1100\u1161\u11a8",
    "你好，世界！这是一个测试。", "日本語のテキストとカタカナ ー", "한국어 텍스트입니다",
    "Привет мир! Съешь же ещё этих мягких булок.", "مرحبا بالعالم", "שלום עולם", "नमस्ते दुनिया",
    "Emoji: 😀👍🏽🇺🇸 ❤️ 👨‍👩‍👧‍👦 🚀🚀🚀",
    "a  b   c    d", "\tone\ttab", "\t\t\ttabs", "line1\nline2\r\nline3\r\n\r\n\nline4", "\n", "\n\n\n",
    " \n \n ", "   leading", "trailing   ", "  both  ", "x \t\n y", "a\u00a0b\u2009c\u3000d\u2028e\u2029f\u0085g",
    "1234567890", "12345678901234567890123", "3.14159", "1,000,000", "$100.00 and 50%", "₁₂₃ ① ½ ٣٤ Ⅻ ²",
    "\U00011DE0\U00011DE1 new digits", "x\U00016FF4y",
    "def f(x):\n    return x ** 2  # square\n",
    "int main(int argc, char** argv) {\n\treturn 0;\n}\n",
    "for i in range(10):\n        print(i)\n\n\n",
    "<html><body class=\"x\">Hi &amp; bye</body></html>",
    "I'm sure they'll say it's fine, don't you think? We've seen it; I'd go.",
    "IT'S I'M THEY'LL WE'VE YOU'RE 'S 'T", "'ſ 'ſtop ''s x'", "don’t (curly)",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n4<|im_end|>\n",
    "<|im_start|><|im_end|><|endoftext|>", "<|im_sta", "<|im_start|", "a<|endoftext|>b",
    "<s>hello</s> <unk>", "<s><s></s>", "[MASK] word [MASK]", "word   [MASK]", "<|user|>   reply",
    "hello world hello worldx", "xyz axyz xyz. (xyz) _xyz xyz_",
    "mixed: English, français, русский, 中文, العربية, 😀 and 123",
    "\x00\x01\x07\x1b[31mred\x1b[0m\x7f", "\ufeffBOM", "\U0001d400\U0001d7ce math", "\U0010fffd\U000e0041",
    "▁already▁marked ▁", "a" * 300, "ab" * 150, " " * 100 + "x", "\n" * 50, "😀" * 40,
]

# Character pools for random texts: (weight, pool). Pools are strings or (first, last) ranges.
POOLS = [
    (30, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    (12, " "), (4, "\t\n\r"), (2, "\u00a0\u3000\u2009\u2028\u0085\u000b\u000c"),
    (8, "0123456789"), (2, "²½①٣Ⅻ₂"),
    (10, ".,;:!?'\"()[]{}<>-_/\\|@#$%^&*+=~`"), (3, "'sStTmMdDrReEvVlLſ"),
    (6, "éèêëàáâäçñöüßøåæœ"), (3, (0x0300, 0x036F)), (4, (0x4E00, 0x9FFF)), (2, (0x3040, 0x30FF)),
    (2, (0x0400, 0x04FF)), (1, (0x0590, 0x06FF)), (4, (0x1F300, 0x1FAFF)), (1, "\u200d\ufe0f"),
    (3, (0x0080, 0xFFFF)), (3, (0x10000, 0x10FFFF)), (1, "\U00011DE0\U00016FF4\u1C89\U0001E5D0"),
]


def random_char(rng):
    total = sum(w for w, _ in POOLS)
    x = rng.uniform(0, total)
    for w, pool in POOLS:
        x -= w
        if x <= 0:
            break
    while True:
        c = chr(rng.randint(*pool)) if isinstance(pool, tuple) else rng.choice(pool)
        if not 0xD800 <= ord(c) < 0xE000:
            return c


def random_texts(seed, n, max_len, extra=()):
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        s = "".join(random_char(rng) for _ in range(rng.randint(1, max_len)))
        if extra and rng.random() < 0.3:  # splice in special / added tokens
            i = rng.randint(0, len(s))
            s = s[:i] + rng.choice(extra) + s[i:]
        out.append(s)
    return out


def patched(base, patch):
    obj = copy.deepcopy(base)
    for key, value in patch.items():
        if key.startswith("model."):
            obj["model"][key[len("model."):]] = value
        else:
            obj[key] = value
    return obj


def byte_level_split(pattern):
    return {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": pattern}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}


SMOLLM2_VARIANTS = [
    ("smollm2", {}),
    ("llama3_rules", {"pre_tokenizer": byte_level_split(LLAMA3), "model.ignore_merges": True}),
    ("qwen2_rules", {"normalizer": {"type": "NFC"}, "pre_tokenizer": byte_level_split(QWEN2)}),
    ("gpt2_prefix_space", {"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True,
                                             "trim_offsets": True, "use_regex": True}}),
]
LLAMA2_VARIANTS = [
    ("llama2_legacy", {}),
    ("llama2_metaspace_first", {"normalizer": None, "pre_tokenizer": {
        "type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": False}}),
    ("llama2_metaspace_split", {
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True},
            {"type": "ByteFallback"}, {"type": "Fuse"}]}}),
]


def golden_cases(tok, texts):
    plain = Tokenizer.from_str(tok.to_str())
    plain.encode_special_tokens = True
    cases = []
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        case = {"text": text, "ids": ids, "ids_plain": plain.encode(text, add_special_tokens=False).ids}
        decoded = tok.decode(ids, skip_special_tokens=False)
        if decoded != text:  # mostly equal; stored only when it differs
            case["decoded"] = decoded
        cases.append(case)
    return cases


def write_json(name, obj):
    path = os.path.join(DATA, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def make_tokenizer_goldens(json_name, variants, specials, seed, n_random):
    with open(os.path.join(DATA, json_name), encoding="utf-8") as f:
        base = json.load(f)
    texts = FIXED_TEXTS + random_texts(seed, n_random, 60, specials)
    out = {"tokenizer": json_name, "variants": []}
    for name, patch in variants:
        tok = Tokenizer.from_str(json.dumps(patched(base, patch)))
        out["variants"].append({"name": name, "patch": patch, "cases": golden_cases(tok, texts)})
    return out


def make_llama2_gguf(path):
    """The Llama-2-style tokenizer.json as a GGUF "llama" vocabulary, the way llama.cpp's converter
    lays out a SentencePiece model: learned pieces scored by merge order (higher merges first)."""
    import gguf
    with open(os.path.join(DATA, "llama2_tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    added = {t["id"]: t for t in tj["added_tokens"]}
    n = max(max(tj["model"]["vocab"].values()), max(added)) + 1
    tokens, scores, types = [""] * n, [0.0] * n, [0] * n
    for tok, i in tj["model"]["vocab"].items():
        tokens[i] = tok
    for i in range(n):
        if i in added:
            tokens[i] = added[i]["content"]
            types[i] = (gguf.TokenType.UNKNOWN if tokens[i] == "<unk>" else gguf.TokenType.CONTROL
                        if added[i]["special"] else gguf.TokenType.USER_DEFINED)
        elif tokens[i].startswith("<0x") and len(tokens[i]) == 6:
            types[i] = gguf.TokenType.BYTE
        else:
            types[i] = gguf.TokenType.NORMAL
            scores[i] = -float(i)
    w = gguf.GGUFWriter(path, "llama")
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_block_count(1)
    w.add_feed_forward_length(128)
    w.add_head_count(2)
    w.add_head_count_kv(2)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def make_gguf_goldens(gguf_path, texts):
    from llama_cpp import Llama
    llm = Llama(gguf_path, vocab_only=True, verbose=False)
    cases = []
    for text in texts:
        b = text.encode("utf-8")
        cases.append({"text": text,
                      "ids": llm.tokenize(b, add_bos=False, special=True),
                      "ids_plain": llm.tokenize(b, add_bos=False, special=False)})
    return cases


def pre_tokenizer_goldens():
    """Pieces from the reference's pre-tokenizers alone (ByteLevel pieces mapped back to text)."""
    byte_decoder = {c: b for b, c in enumerate_bytes()}
    configs = [
        ("gpt2_bytelevel", pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)),
        ("llama3_split", pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated")),
        ("qwen2_split", pre_tokenizers.Split(Regex(QWEN2), behavior="isolated")),
        ("gpt2_split_removed", pre_tokenizers.Split(Regex(GPT2), behavior="removed", invert=True)),
        ("digits_individual", pre_tokenizers.Digits(individual_digits=True)),
        ("digits_contiguous", pre_tokenizers.Digits(individual_digits=False)),
        ("literal_merged_with_next", pre_tokenizers.Split(" ", behavior="merged_with_next")),
        ("literal_merged_with_previous", pre_tokenizers.Split(" ", behavior="merged_with_previous")),
        ("literal_contiguous", pre_tokenizers.Split("a", behavior="contiguous")),
        ("literal_removed", pre_tokenizers.Split(" ", behavior="removed")),
        ("whitespace_split", pre_tokenizers.WhitespaceSplit()),
        ("metaspace_always_split", pre_tokenizers.Metaspace(prepend_scheme="always", split=True)),
        ("metaspace_never_split", pre_tokenizers.Metaspace(prepend_scheme="never", split=True)),
    ]
    texts = FIXED_TEXTS + random_texts(7, 600, 30)
    out = []
    for name, pt in configs:
        all_pieces = []
        for text in texts:
            pieces = [p for p, _ in pt.pre_tokenize_str(text)]
            if name == "gpt2_bytelevel":
                pieces = [bytes(byte_decoder[c] for c in p).decode("utf-8") for p in pieces]
            all_pieces.append(pieces)
        out.append({"name": name, "pieces": all_pieces})
    return {"texts": texts, "configs": out}


def enumerate_bytes():
    """GPT-2's bytes_to_unicode as (byte, char) pairs."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [(b, chr(c)) for b, c in zip(bs, cs)]


def main():
    smol_specials = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<|im_start|>user\n"]
    write_json("smollm2_golden.json",
               make_tokenizer_goldens("smollm2_tokenizer.json", SMOLLM2_VARIANTS, smol_specials, 1, 200))
    llama_specials = ["<s>", "</s>", "<unk>", "[MASK]", " [MASK]", "<|user|>", "<|user|>  ", "hello world",
                      "xyz", " xyz "]
    write_json("llama2_golden.json",
               make_tokenizer_goldens("llama2_tokenizer.json", LLAMA2_VARIANTS, llama_specials, 2, 200))
    gguf_path = os.path.join(DATA, "llama2_vocab.gguf")
    make_llama2_gguf(gguf_path)
    texts = FIXED_TEXTS + random_texts(3, 200, 60, llama_specials)
    write_json("llama2_gguf_golden.json", {"gguf": "llama2_vocab.gguf", "cases": make_gguf_goldens(gguf_path, texts)})
    write_json("pretokenizer_golden.json", pre_tokenizer_goldens())


if __name__ == "__main__":
    main()

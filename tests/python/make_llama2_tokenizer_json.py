#!/usr/bin/env python3
"""Trains the small Llama-2-style tokenizer in tests/data/tokenizer/llama2_tokenizer.json.

The layout and pipeline copy Llama 2's tokenizer.json: ids 0-2 are <unk>, <s>, </s>; ids 3-258 the
byte tokens <0x00>..<0xFF> (byte_fallback); then the alphabet and the BPE pieces, whose words start
with U+2581. The normalizer is Sequence[Prepend("▁"), Replace(" ", "▁")] with no pre-tokenizer, the
decoder Sequence[Replace("▁", " "), ByteFallback, Fuse, Strip(" ", 1, 0)], merges are written in the
legacy "a b" string form. A few extra added tokens exercise the added-token options (lstrip, rstrip,
normalized, single_word). The vocabulary is small (1000) so the file stays small and many characters
go through byte fallback.

The merges are learned by the small BPE trainer below rather than the library's, whose tie-breaking
between equally frequent pairs changes from run to run; this one breaks ties by the pair's text, so
the file is reproducible. The training text is the license texts Debian ships in
/usr/share/common-licenses plus the multilingual lines below. Run by hand (not part of the test run):
  .venv/bin/pip install tokenizers==0.23.3
  .venv/bin/python tests/python/make_llama2_tokenizer_json.py
"""
import collections
import glob
import json
import os

from tokenizers import AddedToken, Tokenizer, decoders, models, normalizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "tokenizer", "llama2_tokenizer.json")
VOCAB_SIZE = 1000
ALPHABET_SIZE = 120
MIN_PAIR_COUNT = 2

MULTILINGUAL = [
    "Le chat est sur la table. Où est la bibliothèque ? Ça va très bien, merci.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Äpfel.",
    "El niño comió una manzana. ¿Dónde está el baño? ¡Qué día tan bonito!",
    "Быстрая коричневая лиса прыгает через ленивую собаку. Привет, мир!",
    "敏捷的棕色狐狸跳过了懒狗。你好，世界！我们今天学习分词。",
    "素早い茶色の狐がのろまな犬を飛び越える。こんにちは世界。",
    "빠른 갈색 여우가 게으른 개를 뛰어넘는다. 안녕하세요 세계.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 2024 3.14159 1,000,000",
    "def tokenize(text):\n    return [t for t in text.split() if t]\n",
    "Emoji: 😀 😃 😄 👍 🎉 ❤️ 🚀",
]


def words_of(line):
    """SentencePiece-style words: the line with a leading U+2581 and spaces as U+2581, cut before each
    U+2581 (the Metaspace split)."""
    text = "▁" + line.replace(" ", "▁")
    words, start = [], 0
    for i in range(1, len(text)):
        if text[i] == "▁":
            words.append(text[start:i])
            start = i
    words.append(text[start:])
    return words


def train(texts, n_merges_max):
    """Plain BPE over word counts: merge the most frequent adjacent pair (ties: smallest pair text)
    of alphabet symbols until the vocabulary is full or no pair occurs MIN_PAIR_COUNT times."""
    counts = collections.Counter(w for line in texts for w in words_of(line))
    chars = collections.Counter()
    for w, n in counts.items():
        for c in w:
            chars[c] += n
    alphabet = sorted(sorted(chars, key=lambda c: (-chars[c], c))[:ALPHABET_SIZE])
    in_alphabet = set(alphabet)
    words = [[list(w), n] for w, n in sorted(counts.items())]
    pairs = collections.Counter()
    where = collections.defaultdict(set)  # pair -> indices of words holding it

    def account(i, sign):
        syms, n = words[i]
        for a, b in zip(syms, syms[1:]):
            if a in in_alphabet and b in in_alphabet:
                pairs[(a, b)] += sign * n
                if sign > 0:
                    where[(a, b)].add(i)

    for i in range(len(words)):
        account(i, +1)
    merges, tokens = [], []
    while len(merges) < n_merges_max:
        best = min((p for p, n in pairs.items() if n >= MIN_PAIR_COUNT), key=lambda p: (-pairs[p], p),
                   default=None)
        if best is None:
            break
        a, b = best
        merges.append(best)
        if a + b not in in_alphabet and a + b not in tokens:
            tokens.append(a + b)
        in_alphabet.add(a + b)  # merged symbols keep merging
        for i in sorted(where.pop(best)):
            account(i, -1)
            syms, out, k = words[i][0], [], 0
            while k < len(syms):
                if k + 1 < len(syms) and syms[k] == a and syms[k + 1] == b:
                    out.append(a + b)
                    k += 2
                else:
                    out.append(syms[k])
                    k += 1
            words[i][0] = out
            account(i, +1)
        for p in [p for p, n in pairs.items() if n <= 0]:
            del pairs[p]
    return alphabet, tokens, merges


def main():
    texts = []
    for path in sorted(glob.glob("/usr/share/common-licenses/*")):
        if os.path.isfile(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                texts.extend(line.rstrip("\n") for line in f if line.strip())
    texts.extend(MULTILINGUAL * 20)

    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    budget = VOCAB_SIZE - len(specials) - ALPHABET_SIZE
    alphabet, tokens, merges = train(texts, budget)
    vocab = {t: i for i, t in enumerate(specials + alphabet + tokens)}
    assert len(vocab) == len(specials) + len(alphabet) + len(tokens)

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                               byte_fallback=True, dropout=None))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(content=" ", left=1, right=0)])
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in ["<unk>", "<s>", "</s>"]])
    # Extra added tokens (new ids after the vocabulary) for the option paths.
    tok.add_special_tokens([AddedToken("[MASK]", special=True, normalized=False, lstrip=True)])
    tok.add_special_tokens([AddedToken("<|user|>", special=True, normalized=False, rstrip=True)])
    tok.add_tokens([AddedToken("hello world", special=False, normalized=True)])
    tok.add_tokens([AddedToken("xyz", special=False, normalized=False, single_word=True)])
    data = json.loads(tok.to_str())
    data["model"]["merges"] = [" ".join(m) for m in data["model"]["merges"]]  # legacy form
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(data, f, ensure_ascii=False, indent=1)
        f.write("\n")
    # The legacy form must load to the same tokenizer.
    again = Tokenizer.from_file(OUT)
    probe = "Hello world, <s>ünïcödé 你好 😀 [MASK] hello world xyz"
    assert again.encode(probe).ids == tok.encode(probe).ids
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, vocab {len(vocab)}, merges {len(merges)})")


if __name__ == "__main__":
    main()

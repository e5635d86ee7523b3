#!/usr/bin/env python3
"""Regenerates worker/data/unicode_tables.inc: the Unicode data the tokenizers need.

The character classes are probed from the reference library itself (Hugging Face `tokenizers`), not
taken from Python's unicodedata: its pieces were built against different Unicode versions (its
Oniguruma regexes know Unicode 16.0 for \\p{L} / \\p{N} / \\s, Rust's char::is_numeric in its Digits
pre-tokenizer knows 17.0, the `regex` crate's \\w for single_word added tokens has its own), and
matching the reference bit for bit means matching each of them.

NFC / NFD follow the reference's normalization crate (unicode-normalization-alignments 0.1.12), whose
tables are Unicode 9.0. Normalization data are stable across versions for assigned characters, so the
9.0 tables are the unicodedata2 15.1 ones restricted to what the reference knows: the combining
classes of characters it treats as non-starters (probed), and every decomposition but U+11938's
(added in 13.0, the only one since 9.0). The result is checked against the reference's NFC/NFD.

Run by hand (not part of the test run):
  .venv/bin/pip install tokenizers==0.23.3 unicodedata2==15.1.0
  .venv/bin/python tests/python/make_unicode_tables.py
"""
import os
import random

import unicodedata2
from tokenizers import AddedToken, Regex, Tokenizer, models, normalizers, pre_tokenizers

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "worker", "data", "unicode_tables.inc")
CPS = [c for c in range(0x110000) if not 0xD800 <= c < 0xE000]


def regex_class(pattern):
    """Code points the reference's (Oniguruma) regex `pattern` matches as a single character."""
    text = "".join(chr(c) for c in CPS)
    kept = bytearray(len(CPS))
    for _, (a, b) in pre_tokenizers.Split(Regex(pattern), behavior="removed").pre_tokenize_str(text):
        kept[a:b] = b"\1" * (b - a)
    return {CPS[i] for i in range(len(CPS)) if not kept[i]}


def interleaved_singletons(pre_tokenizer, keep_matches):
    """Runs `pre_tokenizer` on "a" + c for every c and reports which c it treats as a delimiter."""
    text = "".join("a" + chr(c) for c in CPS)
    pieces = pre_tokenizer.pre_tokenize_str(text)
    if keep_matches:  # isolated delimiters come back as single-character pieces at odd offsets
        return {CPS[a // 2] for _, (a, b) in pieces if b - a == 1 and a % 2 == 1}
    kept = bytearray(len(text))
    for _, (a, b) in pieces:
        kept[a:b] = b"\1" * (b - a)
    return {CPS[i // 2] for i in range(1, len(text), 2) if not kept[i]}


def word_chars():
    """Characters the `regex` crate's \\w accepts (what single_word added tokens look at)."""
    tok = Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]"))
    tok.add_tokens([AddedToken("#", single_word=True, normalized=False)])
    encs = tok.encode_batch([chr(c) + "#" for c in CPS], add_special_tokens=False)
    return {c for c, e in zip(CPS, encs) if 1 not in e.ids}


def ranges(cps):
    out = []
    for c in sorted(cps):
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def emit_ranges(f, name, comment, cps):
    rs = ranges(cps)
    f.write(f"// {comment} ({len(cps)} code points)\n")
    f.write(f"constexpr uint32_t {name}[][2] = {{\n")
    line = " "
    for a, b in rs:
        item = f" {{0x{a:X}, 0x{b:X}}},"
        if len(line) + len(item) > 100:
            f.write(line + "\n")
            line = " "
        line += item
    f.write(line + "\n};\n\n")


def emit_rows(f, name, ctype, rows, width):
    f.write(f"constexpr {ctype} {name}[][{width}] = {{\n")
    line = " "
    for r in rows:
        item = " {" + ", ".join(f"0x{x:X}" for x in r) + "},"
        if len(line) + len(item) > 100:
            f.write(line + "\n")
            line = " "
        line += item
    f.write(line + "\n};\n\n")


def full_decomposition(c):
    d = unicodedata2.decomposition(chr(c))
    if not d or d.startswith("<"):
        return [c]
    out = []
    for part in d.split():
        out.extend(full_decomposition(int(part, 16)))
    return out


NEWER_THAN_9 = {0x11938}  # the one canonical decomposition added after Unicode 9.0 (in 13.0)

S_BASE, L_BASE, V_BASE, T_BASE, L_COUNT, V_COUNT, T_COUNT = 0xAC00, 0x1100, 0x1161, 0x11A7, 19, 21, 28
N_COUNT = V_COUNT * T_COUNT
S_COUNT = L_COUNT * N_COUNT


class NormalizationModel:
    """NFD / NFC over the generated tables (what unicode.cc implements)."""

    def __init__(self, decomp, ccc, comps):
        self.decomp, self.ccc = decomp, ccc
        self.comp = {(a, b): c for a, b, c in comps}

    def _decompose(self, s):
        out = []
        for ch in s:
            c = ord(ch)
            if S_BASE <= c < S_BASE + S_COUNT:
                i = c - S_BASE
                out += [L_BASE + i // N_COUNT, V_BASE + (i % N_COUNT) // T_COUNT]
                if i % T_COUNT:
                    out.append(T_BASE + i % T_COUNT)
            else:
                out += self.decomp.get(c, [c])
        i = 0
        while i < len(out):  # stable sort of each run of non-starters by class
            if self.ccc.get(out[i], 0) == 0:
                i += 1
                continue
            j = i
            while j < len(out) and self.ccc.get(out[j], 0):
                j += 1
            out[i:j] = sorted(out[i:j], key=lambda x: self.ccc[x])
            i = j
        return out

    def nfd(self, s):
        return "".join(map(chr, self._decompose(s)))

    def nfc(self, s):
        cps = self._decompose(s)
        out = []
        starter = None  # index in out of the last starter
        last_ccc = 0
        for c in cps:
            k = self.ccc.get(c, 0)
            composed = None
            if starter is not None:
                blocked = len(out) - 1 != starter and (last_ccc == 0 or last_ccc >= k)
                if not blocked:
                    a = out[starter]
                    if L_BASE <= a < L_BASE + L_COUNT and V_BASE <= c < V_BASE + V_COUNT:
                        composed = S_BASE + ((a - L_BASE) * V_COUNT + (c - V_BASE)) * T_COUNT
                    elif (S_BASE <= a < S_BASE + S_COUNT and (a - S_BASE) % T_COUNT == 0
                          and T_BASE < c < T_BASE + T_COUNT):
                        composed = a + (c - T_BASE)
                    else:
                        composed = self.comp.get((a, c))
            if composed is not None:
                out[starter] = composed
                continue
            if k == 0:
                starter = len(out)
                last_ccc = 0
            else:
                last_ccc = k
            out.append(c)
        return "".join(map(chr, out))


def main():
    assert unicodedata2.unidata_version == "15.1.0", "pip install unicodedata2==15.1.0"
    letter = regex_class(r"\p{L}")
    number = regex_class(r"\p{N}")
    space = regex_class(r"\s")
    numeric = interleaved_singletons(pre_tokenizers.Digits(individual_digits=True), True)
    white = interleaved_singletons(pre_tokenizers.WhitespaceSplit(), False)
    assert space == white, "onig \\s and Rust is_whitespace differ: the tables need both"
    word = word_chars()
    assert ord("a") in letter and ord("7") in number and 0x3000 in space

    # Canonical decompositions (Hangul syllables are algorithmic and left out) and compositions.
    nfc, nfd = normalizers.NFC(), normalizers.NFD()
    decomp = {}
    comps = []
    ccc = {}
    for c in CPS:
        if 0xAC00 <= c <= 0xD7A3 or c in NEWER_THAN_9:
            continue
        k = unicodedata2.combining(chr(c))
        # Placed after an old mark of another class, a non-starter known to the reference moves
        # before it when its class is lower (U+0334 has class 1, U+0301 class 230).
        if k > 1 and nfd.normalize_str(chr(c) + "\u0334") == "\u0334" + chr(c):
            ccc[c] = k
        elif k == 1 and nfd.normalize_str("\u0301" + chr(c)) == chr(c) + "\u0301":
            ccc[c] = k
        full = full_decomposition(c)
        if full != [c]:
            assert len(full) <= 4, hex(c)
            decomp[c] = full
            d = unicodedata2.decomposition(chr(c)).split()
            if len(d) == 2 and unicodedata2.normalize("NFC", "".join(chr(int(x, 16)) for x in d)) == chr(c):
                comps.append((int(d[0], 16), int(d[1], 16), c))
    comps.sort()
    # Text below U+0300 is already NFC: the fast path in unicode.cc relies on it.
    assert all(b >= 0x300 for _, b, _ in comps)
    assert all(c >= 0x300 or unicodedata2.normalize("NFC", chr(c)) == chr(c) for c in decomp)
    assert all(c >= 0x300 for c in ccc)

    # The reference normalizes single code points and random mark-heavy sequences as a Python model
    # of these tables does.
    model = NormalizationModel(decomp, ccc, comps)
    for c in CPS:
        s = chr(c)
        assert nfd.normalize_str(s) == model.nfd(s), hex(c)
        assert nfc.normalize_str(s) == model.nfc(s), hex(c)
    rng = random.Random(5)
    marks = sorted(set(ccc) | {c for c in CPS if unicodedata2.combining(chr(c))})
    bases = [x[0] for x in comps] + [x[2] for x in comps] + [0x41, 0x61, 0x1100, 0xAC00, 0x1161, 0x11A8]
    for _ in range(50000):
        s = "".join(chr(rng.choice(marks if rng.random() < 0.6 else bases)) for _ in range(rng.randint(1, 7)))
        assert nfc.normalize_str(s) == model.nfc(s), [hex(ord(x)) for x in s]
        assert nfd.normalize_str(s) == model.nfd(s), [hex(ord(x)) for x in s]

    with open(OUT, "w") as f:
        f.write("// Generated by tests/python/make_unicode_tables.py; do not edit.\n")
        f.write("// Character classes probed from tokenizers==0.23.3; NFC/NFD data from Unicode "
                f"{unicodedata2.unidata_version}.\n")
        f.write("// NOLINTBEGIN\n\n")
        emit_ranges(f, "kLetterRanges", "Oniguruma \\p{L} (Unicode 16.0)", letter)
        emit_ranges(f, "kNumberRanges", "Oniguruma \\p{N} (Unicode 16.0)", number)
        emit_ranges(f, "kWhiteSpaceRanges", "Oniguruma \\s == Rust char::is_whitespace (White_Space)", space)
        emit_ranges(f, "kNumericRanges", "Rust char::is_numeric, used by the Digits pre-tokenizer (Unicode 17.0)", numeric)
        emit_ranges(f, "kWordRanges", "regex crate \\w, used by single_word added tokens", word)
        f.write(f"// Canonical combining classes ({len(ccc)} code points): {{first, last, class}}\n")
        crow = []
        for c in sorted(ccc):
            if crow and crow[-1][1] == c - 1 and crow[-1][2] == ccc[c]:
                crow[-1][1] = c
            else:
                crow.append([c, c, ccc[c]])
        emit_rows(f, "kCombiningClassRanges", "uint32_t", crow, 3)
        f.write(f"// Full canonical decompositions ({len(decomp)}): {{code point, d0, d1, d2, d3}}, 0-padded\n")
        emit_rows(f, "kDecompositions", "uint32_t",
                  [[c] + d + [0] * (4 - len(d)) for c, d in sorted(decomp.items())], 5)
        f.write(f"// Primary composites ({len(comps)}): {{first, second, composite}}, sorted\n")
        emit_rows(f, "kCompositions", "uint32_t", comps, 3)
        f.write("// NOLINTEND\n")
    print(f"wrote {OUT}: L {len(letter)}, N {len(number)}, space {len(space)}, numeric {len(numeric)}, "
          f"word {len(word)}, ccc {len(ccc)}, decompositions {len(decomp)}, compositions {len(comps)}")


if __name__ == "__main__":
    main()

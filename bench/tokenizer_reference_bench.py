#!/usr/bin/env python3
"""Times the reference tokenizer (Hugging Face `tokenizers`) on a text, single-threaded, to put
beside bench/tokenizer_bench.cc's figures for lorasweep's tokenizer on the same files.

  zcat /usr/share/doc/debian/FAQ/debian-faq.en.txt.gz > /tmp/faq.txt   # apt-get install debian-faq
  .venv/bin/python bench/tokenizer_reference_bench.py tests/data/tokenizer/smollm2_tokenizer.json /tmp/faq.txt
  build/bench/tokenizer_bench tests/data/tokenizer/smollm2_tokenizer.json /tmp/faq.txt

Figures: MB/s (10^6 bytes of UTF-8 input per second) for encode() of the whole text, by a freshly
loaded tokenizer ("cold") and warm, and for encode_batch() of its lines; warm figures are the best
of --repeats runs after one warm-up run (the reference keeps a word cache, so warm runs are its
best case).
"""
import argparse
import os
import time

# One thread: encode_batch would otherwise fan out over all cores.
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["RAYON_RS_NUM_CPUS"] = "1"

from tokenizers import Tokenizer  # noqa: E402  (after the environment is set)


def best_seconds(fn, repeats):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tokenizer", help="tokenizer.json")
    ap.add_argument("text", help="UTF-8 text file")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tok = Tokenizer.from_file(args.tokenizer)
    with open(args.text, encoding="utf-8") as f:
        text = f.read()
    lines = text.splitlines(keepends=True)
    nbytes = len(text.encode("utf-8"))
    cold = float("inf")
    for _ in range(args.repeats):  # the first encode by a freshly loaded tokenizer (empty cache)
        fresh = Tokenizer.from_file(args.tokenizer)
        t0 = time.perf_counter()
        fresh.encode(text, add_special_tokens=False)
        cold = min(cold, time.perf_counter() - t0)
    n_tokens = len(tok.encode(text, add_special_tokens=False).ids)
    whole = best_seconds(lambda: tok.encode(text, add_special_tokens=False), args.repeats)
    batch = best_seconds(lambda: tok.encode_batch(lines, add_special_tokens=False), args.repeats)
    import tokenizers
    print(f"reference tokenizers {tokenizers.__version__}, 1 thread: {nbytes} bytes, {len(lines)} lines, "
          f"{n_tokens} tokens")
    print(f"encode whole text, cold: {nbytes / cold / 1e6:8.2f} MB/s  ({cold * 1e3:.1f} ms)")
    print(f"encode whole text      : {nbytes / whole / 1e6:8.2f} MB/s  ({whole * 1e3:.1f} ms)")
    print(f"encode_batch lines     : {nbytes / batch / 1e6:8.2f} MB/s  ({batch * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()

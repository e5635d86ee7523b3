#!/usr/bin/env python3
"""Writes tests/data/bnb/: bitsandbytes 4-bit quantization results that quantize_4bit_test compares
byte for byte. Run by hand, never by the test suite:

    python3 -m venv /tmp/bnbvenv && /tmp/bnbvenv/bin/pip install torch bitsandbytes numpy
    /tmp/bnbvenv/bin/python tests/python/make_bnb_fixtures.py

Without a GPU, bitsandbytes runs its CPU backend, which differs from the CUDA kernels (the semantics
lorasweep follows) in corner cases: all-zero blocks, division instead of reciprocal multiplication in
the last short block, FP4 thresholds taken from a 4-decimal table, and the 8-bit search of double
quantization (division, ties to the lower index). This script therefore also evaluates the CUDA rules
(independently of lorasweep's C++) and redraws any input element on which the two backends disagree,
so every stored result is what bitsandbytes produces on either backend. The number of redrawn
elements is recorded per case. Double quantization additionally needs torch's float32 mean of the
absmax values to equal the exactly rounded mean (lorasweep computes the latter); the script redraws
until it does and records it.
"""

import json
import os
import struct
import sys

import numpy as np
import torch
import bitsandbytes as bnb
import bitsandbytes.functional as F

F32 = np.float32
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "bnb")

# bnb's CUDA dQuantizeNF4 / dQuantizeFP4 thresholds (csrc/kernels.cu), as float32.
NF4_THRESHOLDS = np.array([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=F32)
FP4_THRESHOLDS = np.array([0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333,
                           0.8333333], dtype=F32)
FP4_BY_RANK = np.array([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011], dtype=np.uint8)


def cuda_codes(x, blocksize, quant_type):
    """Per-element 4-bit codes and per-block absmax under bnb's CUDA rules."""
    n = x.size
    codes = np.empty(n, dtype=np.uint8)
    absmax = []
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, n, blocksize):
            blk = x[start:start + blocksize]
            a = F32(np.max(np.abs(blk)))
            absmax.append(a)
            s = (blk * (F32(1) / a)).astype(F32)
            if quant_type == "nf4":
                c = np.sum(s[:, None] > NF4_THRESHOLDS[None, :], axis=1).astype(np.uint8)
            else:
                rank = np.sum(np.abs(s)[:, None] > FP4_THRESHOLDS[None, :], axis=1)
                c = FP4_BY_RANK[rank] | np.where(s < 0, 8, 0).astype(np.uint8)
            codes[start:start + blocksize] = c
    return codes, np.array(absmax, dtype=F32)


def unpack(packed, n):
    packed = packed.reshape(-1)
    codes = np.empty(packed.size * 2, dtype=np.uint8)
    codes[0::2] = packed >> 4
    codes[1::2] = packed & 15
    return codes[:n]


def cuda_dynamic_code(code, x):
    """bnb's CUDA dQuantize<0>: binary search, float32 midpoint, midpoint ties to the pivot."""
    pivot, lower, upper = 127, 0, 255
    step = 64
    while step > 0:
        if x > code[pivot]:
            lower, pivot = pivot, pivot + step
        else:
            upper, pivot = pivot, pivot - step
        step >>= 1
    val = code[pivot]
    if x > val:
        mid = F32((code[upper] + val) * F32(0.5))
        return upper if x > mid else pivot
    mid = F32((code[lower] + val) * F32(0.5))
    return lower if x < mid else pivot


def cuda_nested_codes(absmax, offset, code):
    centered = (absmax - offset).astype(F32)
    out, nested = [], []
    with np.errstate(divide="ignore", invalid="ignore"):
        for start in range(0, centered.size, 256):
            blk = centered[start:start + 256]
            m = F32(np.max(np.abs(blk)))
            nested.append(m)
            inv = F32(1) / m
            out += [cuda_dynamic_code(code, F32(v * inv)) for v in blk]
    return np.array(out, dtype=np.uint8), np.array(nested, dtype=F32)


def make_case(name, quant_type, blocksize, dq, shape, seed, scale, adversarial=False,
              store_dequantized=False):
    rng = np.random.default_rng(seed)
    n = int(np.prod(shape))
    x = (rng.standard_normal(n) * scale).astype(F32)
    if adversarial:
        # First block: absmax 1 (exact reciprocal) and values exactly on, and one ulp around, every
        # threshold, where ties must go to the lower code.
        t = NF4_THRESHOLDS if quant_type == "nf4" else FP4_THRESHOLDS
        vals = np.concatenate([t, np.nextafter(t, F32(2)), np.nextafter(t, F32(-2))]).astype(F32)
        x[0] = F32(1.0)
        x[1:1 + vals.size] = vals[:blocksize - 1]
    redrawn = 0
    for _ in range(100):
        packed, state = F.quantize_4bit(torch.from_numpy(x).reshape(shape), blocksize=blocksize,
                                        compress_statistics=dq, quant_type=quant_type)
        got = unpack(packed.numpy(), n)
        want, want_absmax = cuda_codes(x, blocksize, quant_type)
        bad = np.nonzero(got != want)[0]
        if dq:
            bnb_offset = F32(state.offset.item())
            exact_offset = F32(np.mean(want_absmax.astype(np.float64)))
            if bnb_offset != exact_offset:
                # Change the block holding the largest element so the mean moves.
                bad = np.append(bad, np.argmax(np.abs(x)))
            else:
                code = state.state2.code.numpy()
                want_q, want_nested = cuda_nested_codes(want_absmax, bnb_offset, code)
                got_q = state.absmax.numpy()
                if not np.array_equal(state.state2.absmax.numpy(), want_nested):
                    sys.exit(f"{name}: nested absmax differs between bnb CPU and the CUDA rules")
                for b in np.nonzero(got_q != want_q)[0]:
                    bad = np.append(bad, b * blocksize + int(np.argmax(np.abs(x[b * blocksize:(b + 1) * blocksize]))))
        elif not np.array_equal(state.absmax.numpy(), want_absmax):
            sys.exit(f"{name}: absmax differs between bnb CPU and the CUDA rules")
        if bad.size == 0:
            break
        redrawn += int(bad.size)
        for i in bad:
            x[i] = F32(rng.standard_normal() * scale)
    else:
        sys.exit(f"{name}: could not find inputs on which the bnb CPU backend matches CUDA")

    blobs = [("input", x.tobytes()), ("packed", packed.numpy().reshape(-1).tobytes())]
    if store_dequantized:
        deq = F.dequantize_4bit(packed, state).numpy().reshape(-1)
        blobs.append(("dequantized", deq.astype(F32).tobytes()))
    meta = {"name": name, "quant_type": quant_type, "blocksize": blocksize, "double_quant": dq,
            "shape": list(shape), "redrawn_elements": redrawn}
    if dq:
        blobs += [("absmax_codes", state.absmax.numpy().tobytes()),
                  ("nested_absmax", state.state2.absmax.numpy().astype(F32).tobytes())]
        # What bnb's dequantize_4bit scales each block by: dequantize_blockwise, then += offset.
        deq_absmax = F.dequantize_blockwise(state.absmax, state.state2) + state.offset
        blobs.append(("dequantized_absmax", deq_absmax.numpy().astype(F32).tobytes()))
        meta["nested_offset_bits"] = int(np.array([state.offset.item()], dtype=F32).view(np.uint32)[0])
        meta["nested_blocksize"] = state.state2.blocksize
    else:
        blobs.append(("absmax", state.absmax.numpy().astype(F32).tobytes()))
    data = b""
    sections = {}
    for key, blob in blobs:
        sections[key] = [len(data), len(blob)]
        data += blob
    meta["file"] = name + ".bin"
    meta["sections"] = sections
    with open(os.path.join(OUT_DIR, name + ".bin"), "wb") as f:
        f.write(data)
    print(f"{name}: n={n} redrawn={redrawn} bytes={len(data)}")
    return meta


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.manual_seed(0)
    cases = [
        make_case("nf4_bs64", "nf4", 64, False, (40, 70), 1, 0.02, adversarial=True),
        make_case("nf4_dq_bs32", "nf4", 32, True, (65, 128), 2, 0.05),
        make_case("fp4_dq_bs128", "fp4", 128, True, (33, 65), 3, 1.0, adversarial=True,
                  store_dequantized=True),
        make_case("fp4_bs64", "fp4", 64, False, (17, 31), 4, 0.1, store_dequantized=True),
        make_case("nf4_bs4096", "nf4", 4096, False, (1, 4100), 5, 0.03),
    ]
    dyn = F.create_dynamic_map(signed=True).numpy().astype(F32)
    with open(os.path.join(OUT_DIR, "dynamic_map.bin"), "wb") as f:
        f.write(dyn.tobytes())
    maps = {t: [int(v) for v in F.get_4bit_type(t, device="cpu").numpy().astype(F32).view(np.uint32)]
            for t in ("nf4", "fp4")}
    index = {
        "generator": "tests/python/make_bnb_fixtures.py",
        "bitsandbytes": bnb.__version__,
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "backend": "cpu (results checked against bnb's CUDA rules; see the script's docstring)",
        "dynamic_map_file": "dynamic_map.bin",
        "quant_map_bits": maps,
        "cases": cases,
    }
    with open(os.path.join(OUT_DIR, "fixtures.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

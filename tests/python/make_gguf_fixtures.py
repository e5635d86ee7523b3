#!/usr/bin/env python3
"""Writes the GGUF fixtures of tests/gguf_test.cc into tests/data/gguf/.

Run by hand (not by the tests) from the repository root:
    .venv/bin/python tests/python/make_gguf_fixtures.py

The files are written by the reference `gguf` package (llama.cpp's gguf-py: GGUFWriter, quantized
with gguf.quants), and the expected dequantized values are produced by gguf.quants.dequantize, an
implementation independent of lorasweep's, so the C++ reader is checked bit for bit against it.

Outputs (all small):
  types.gguf              v3: every metadata value type, F32/F16/BF16/Q8_0/Q4_0/Q4_1 tensors
  types_v2.gguf           the same bytes with the version field set to 2 (v2 and v3 encode
                          little-endian files identically; v3 only added big-endian files)
  align64.gguf            general.alignment = 64
  llama_tiny.gguf         a one-layer "llama" model whose attn_q / attn_k rows were permuted the
                          way convert_hf_to_gguf.py does
  qwen2_tiny.gguf         a "qwen2" model: q/k/v biases, no permutation
  expected/*.f32          raw little-endian float32 values (see the names below)
"""

import importlib.metadata
import os
import pathlib
import struct

import numpy as np

import gguf
from gguf import GGMLQuantizationType as QT
from gguf import GGUFValueType as VT

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "data" / "gguf"
EXPECTED = OUT / "expected"


def permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp convert_hf_to_gguf.py LlamaModel.permute (HF rotate_half rows -> GGUF rows)."""
    return (w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def unpermute(w: np.ndarray, n_head: int) -> np.ndarray:
    """The inverse, as transformers' GGUF loader writes it (_reverse_permute_weights)."""
    return (w.reshape(n_head, w.shape[0] // n_head // 2, 2, *w.shape[1:])
            .swapaxes(1, 2)
            .reshape(w.shape))


def save_expected(name: str, values: np.ndarray) -> None:
    EXPECTED.mkdir(parents=True, exist_ok=True)
    np.ascontiguousarray(values, dtype="<f4").tofile(EXPECTED / f"{name}.f32")


def add_quantized(writer: gguf.GGUFWriter, name: str, values: np.ndarray, qtype: QT) -> np.ndarray:
    """Adds `values` (HF layout) stored as `qtype`; returns the dequantized float32 values."""
    values = values.astype(np.float32)
    if qtype == QT.F32:
        writer.add_tensor(name, values)
        return values
    if qtype == QT.F16:
        half = values.astype(np.float16)
        writer.add_tensor(name, half)
        return gguf.quants.dequantize(half.view(np.uint8), QT.F16).reshape(values.shape)
    raw = gguf.quants.quantize(values, qtype)
    writer.add_tensor(name, raw, raw_dtype=qtype)
    return gguf.quants.dequantize(raw, qtype).reshape(values.shape)


def write(writer: gguf.GGUFWriter) -> None:
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def make_types(rng: np.random.Generator) -> None:
    path = OUT / "types.gguf"
    w = gguf.GGUFWriter(str(path), "lorasweep_test")
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.5)
    w.add_float64("test.f64", -1.25e300)
    w.add_bool("test.bool_true", True)
    w.add_bool("test.bool_false", False)
    w.add_string("test.string", "h\u00e9llo \u2713")
    w.add_key_value("test.empty_string", "", VT.STRING)
    w.add_uint64("test.u64_max", 2**64 - 1)
    w.add_uint64("test.u64", 1234567890123)
    w.add_int64("test.i64_min", -(2**63))
    w.add_array("test.arr_i32", [1, -2, 3])
    w.add_array("test.arr_str", ["a", "bc", ""])
    w.add_array("test.arr_f32", [0.5, 1.5])
    w.add_array("test.arr_bool", [True, False, True])
    w.add_key_value("test.arr_u8", [7, 8, 255], VT.ARRAY, sub_type=VT.UINT8)
    w.add_key_value("test.arr_f64", [0.25, -2.0], VT.ARRAY, sub_type=VT.FLOAT64)
    w.add_array("test.arr_nested", [[1, 2], [3], [4, 5, 6]])
    w.add_array("test.arr_long", [f"tok{i}" for i in range(100)])

    specials = np.array([0.0, -0.0, np.inf, -np.inf, 1e-45, -3.0e38, 65504.0, 1e-7], np.float32)
    f32 = np.concatenate([specials, rng.normal(size=7).astype(np.float32)]).reshape(3, 5)
    f16 = np.concatenate([np.array([0.0, -0.0, np.inf, -np.inf, 6e-8, 65504.0, -1e-5], np.float32),
                          rng.normal(size=7).astype(np.float32)]).reshape(2, 7)
    bf16 = np.concatenate([np.array([0.0, -0.0, np.inf, 1e-40, 3.0e38, -1.0 / 3.0], np.float32),
                           rng.normal(size=6).astype(np.float32)]).reshape(4, 3)
    q8 = rng.normal(size=(3, 64)).astype(np.float32) * 3.0
    q8[1, :32] = 0.0  # a block with scale 0
    q40 = rng.normal(size=(2, 96)).astype(np.float32)
    q40[0, 32:64] = -np.abs(q40[0, 32:64])
    q41 = rng.normal(size=(4, 32)).astype(np.float32) + 2.0
    q41[3] = 1.0  # constant block: d = 0, min = 1
    one_d = rng.normal(size=7).astype(np.float32)
    three_d = rng.normal(size=(2, 3, 4)).astype(np.float32)

    tensors = [
        ("t_f32", f32, QT.F32),
        ("t_f16", f16, QT.F16),
        ("t_bf16", bf16, QT.BF16),
        ("t_q8_0", q8, QT.Q8_0),
        ("t_q4_0", q40, QT.Q4_0),
        ("t_q4_1", q41, QT.Q4_1),
        ("t_1d", one_d, QT.F32),
        ("t_3d", three_d, QT.F32),
    ]
    for name, values, qtype in tensors:
        save_expected(f"types.{name}", add_quantized(w, name, values, qtype))
    write(w)

    data = bytearray(path.read_bytes())
    assert struct.unpack_from("<I", data, 4)[0] == 3
    struct.pack_into("<I", data, 4, 2)
    (OUT / "types_v2.gguf").write_bytes(bytes(data))


def make_align64(rng: np.random.Generator) -> None:
    w = gguf.GGUFWriter(str(OUT / "align64.gguf"), "lorasweep_test")
    w.add_custom_alignment(64)
    a = rng.normal(size=(1, 3)).astype(np.float32)
    b = rng.normal(size=(2, 32)).astype(np.float32)
    c = rng.normal(size=(5,)).astype(np.float32)
    save_expected("align64.a", add_quantized(w, "a", a, QT.F32))
    save_expected("align64.b", add_quantized(w, "b", b, QT.Q8_0))
    save_expected("align64.c", add_quantized(w, "c", c, QT.F16))
    write(w)


def make_llama_tiny(rng: np.random.Generator) -> None:
    hidden, heads, kv_heads, ffn, vocab = 32, 4, 2, 64, 16
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(OUT / "llama_tiny.gguf"), "llama")
    w.add_block_count(1)
    w.add_embedding_length(hidden)
    w.add_feed_forward_length(ffn)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    w.add_rope_dimension_count(head_dim)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_token_list([f"t{i}" for i in range(vocab)])

    def normal(*shape):
        return rng.normal(size=shape).astype(np.float32)

    # HF-layout q/k (and a q bias, which the converter permutes too); GGUF stores them permuted.
    q = normal(hidden, hidden)
    k = normal(kv_heads * head_dim, hidden)
    q_bias = normal(hidden)
    q_stored = add_quantized(w, "blk.0.attn_q.weight", permute(q, heads), QT.Q8_0)
    save_expected("llama_tiny.q_proj", unpermute(q_stored, heads))
    add_quantized(w, "blk.0.attn_k.weight", permute(k, kv_heads), QT.F32)
    save_expected("llama_tiny.k_proj", k)
    add_quantized(w, "blk.0.attn_q.bias", permute(q_bias, heads), QT.F32)
    save_expected("llama_tiny.q_bias", q_bias)
    add_quantized(w, "blk.0.attn_v.weight", normal(kv_heads * head_dim, hidden), QT.BF16)
    add_quantized(w, "blk.0.attn_output.weight", normal(hidden, hidden), QT.Q4_1)
    add_quantized(w, "blk.0.attn_norm.weight", normal(hidden), QT.F32)
    add_quantized(w, "blk.0.ffn_norm.weight", normal(hidden), QT.F32)
    add_quantized(w, "blk.0.ffn_gate.weight", normal(ffn, hidden), QT.F16)
    add_quantized(w, "blk.0.ffn_up.weight", normal(ffn, hidden), QT.Q4_0)
    add_quantized(w, "blk.0.ffn_down.weight", normal(hidden, ffn), QT.F32)
    add_quantized(w, "token_embd.weight", normal(vocab, hidden), QT.F16)
    add_quantized(w, "output_norm.weight", normal(hidden), QT.F32)
    add_quantized(w, "output.weight", normal(vocab, hidden), QT.Q8_0)
    add_quantized(w, "rope_freqs.weight", normal(head_dim // 2), QT.F32)  # not an HF tensor
    write(w)


def make_qwen2_tiny(rng: np.random.Generator) -> None:
    hidden, heads, kv_heads = 32, 4, 2
    head_dim = hidden // heads
    w = gguf.GGUFWriter(str(OUT / "qwen2_tiny.gguf"), "qwen2")
    w.add_block_count(1)
    w.add_embedding_length(hidden)
    w.add_head_count(heads)
    w.add_head_count_kv(kv_heads)
    for name, shape in [("attn_q.weight", (hidden, hidden)), ("attn_q.bias", (hidden,)),
                        ("attn_k.weight", (kv_heads * head_dim, hidden)),
                        ("attn_k.bias", (kv_heads * head_dim,)),
                        ("attn_v.bias", (kv_heads * head_dim,))]:
        add_quantized(w, f"blk.0.{name}", rng.normal(size=shape).astype(np.float32), QT.F32)
    write(w)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20240611)
    make_types(rng)
    make_align64(rng)
    make_llama_tiny(rng)
    make_qwen2_tiny(rng)
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total} bytes, gguf {importlib.metadata.version('gguf')}, numpy {np.__version__})")
    assert total < 300_000


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()

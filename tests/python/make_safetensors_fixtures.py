#!/usr/bin/env python3
"""Writes the safetensors fixtures under tests/data/safetensors with the reference Python library.

Run by hand (not part of the test run) after `pip install -r tests/python/requirements.txt`:

    .venv/bin/python tests/python/make_safetensors_fixtures.py

The C++ tests read these files and compare them with values this script records independently in
expected.json, and compare lorasweep's writer byte for byte with the files the library wrote. The
fixtures are committed, so the tests never need Python.
"""

import json
import math
import os
import shutil

import numpy as np
from huggingface_hub import split_state_dict_into_shards_factory
from safetensors import TensorSpec, serialize_file
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "safetensors")

# safetensors dtype name -> the name the Rust binding's TensorSpec takes.
SPEC_NAMES = {
    "F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
    "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
}


def bf16_bits(values):
    """float32 -> bfloat16 bit patterns, round to nearest even (numpy has no bfloat16)."""
    bits = np.asarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def bf16_to_f32(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def json_float(x):
    """JSON has no inf/nan: spell them as strings, the test parses both forms."""
    x = float(x)
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return x


def write_multi_dtype():
    """A file holding every plain dtype lorasweep reads, special values, and two metadata keys."""
    bf16_source = np.array([3.14159265, -1e-3, 1e30, 0.5, -7.0, 2.0**-130], dtype=np.float32)
    bf16 = bf16_bits(bf16_source).reshape(2, 3)
    tensors = {
        # (dtype, stored array [raw bits for BF16], values as float32 the reader must produce)
        "f32.matrix": ("F32", ((np.arange(12, dtype=np.float32) - 5.5) * np.float32(0.37)).reshape(3, 4)),
        "f16.vec": ("F16", np.array([1e-7, 65504.0, -2.5, 0.1, 6.1e-5, -0.0, 1.0], dtype=np.float16)),
        "bf16.matrix": ("BF16", bf16),
        "i32.vec": ("I32", np.array([-2147483648, -1, 0, 7, 2147483647], dtype=np.int32)),
        "u8.cube": ("U8", (np.arange(8, dtype=np.uint32) * 37 % 256).astype(np.uint8).reshape(2, 2, 2)),
        "i8.vec": ("I8", np.array([-128, -1, 0, 127], dtype=np.int8)),
        "f64.scalar": ("F64", np.array(2.718281828459045, dtype=np.float64)),
        "i64.vec": ("I64", np.array([-(2**40), 3, 2**53], dtype=np.int64)),
        "i16.vec": ("I16", np.array([-32768, 12345, 32767], dtype=np.int16)),
        "bool.mask": ("BOOL", np.array([True, False, False, True])),
        "empty": ("F32", np.zeros((0, 3), dtype=np.float32)),
        "f32.special": ("F32", np.array([np.inf, -np.inf, -0.0, np.nan], dtype=np.float32)),
    }
    specs = {}
    expected = {}
    keep_alive = []  # TensorSpec holds a raw pointer: the arrays must outlive serialize_file
    for name, (dtype, array) in tensors.items():
        array = np.array(array, order="C", copy=True)  # keeps 0-d arrays 0-d
        keep_alive.append(array)
        specs[name] = TensorSpec(dtype=SPEC_NAMES[dtype], shape=list(array.shape),
                                 data_ptr=array.ctypes.data, data_len=array.nbytes)
        if dtype == "BF16":
            floats = bf16_to_f32(array.reshape(-1))
        else:
            floats = array.reshape(-1).astype(np.float32)
        expected[name] = {
            "dtype": dtype,
            "shape": list(array.shape),
            "hex": array.tobytes().hex(),
            "floats": [json_float(v) for v in floats],
        }
    metadata = {"format": "pt", "note": "lorasweep fixture \u00fc \"quoted\""}
    serialize_file(specs, os.path.join(OUT, "multi_dtype.safetensors"), metadata=metadata)
    with open(os.path.join(OUT, "multi_dtype.expected.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": metadata, "tensors": expected}, f, indent=1, sort_keys=True)
        f.write("\n")


def byte_identity_tensors():
    """Tensors the C++ test rebuilds from the same arithmetic patterns (see safetensors_test.cc)."""
    return {
        "b.weight": (np.arange(6, dtype=np.float32) * np.float32(0.25)).reshape(2, 3),
        "a.weight": (np.arange(5, dtype=np.float32) - 2).astype(np.float16),
        "model.embed": np.arange(4, dtype=np.int64).reshape(2, 2) * 1000,
        "c.bias": np.array([1.5, -2.0], dtype=np.float64),
        "ids": np.arange(3, dtype=np.int32) - 1,
        "ids.small": np.arange(3, dtype=np.int16) + 7,
        "q": np.array([-3, 4], dtype=np.int8),
        "mask": np.array([True, False, True]),
        "raw": np.arange(7, dtype=np.uint8),
        "z\u00e9 \"q\"\\\n\x01/": np.array([9.0], dtype=np.float32),
        "scalar": np.array(0.5, dtype=np.float32),
        "none": np.zeros((2, 0), dtype=np.float32),
    }


def write_byte_identity():
    tensors = byte_identity_tensors()
    save_file(tensors, os.path.join(OUT, "numpy_save_file.safetensors"),
              metadata={"format": "np"})
    save_file(tensors, os.path.join(OUT, "numpy_save_file_no_metadata.safetensors"))


def write_sharded():
    """A checkpoint split like transformers' save_pretrained (huggingface_hub's splitter)."""
    folder = os.path.join(OUT, "sharded")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    state_dict = {}
    # Sizes (bytes): 160, 96, 400 (over the limit: its own shard), 64, 128, 8, 192.
    state_dict["model.embed_tokens.weight"] = (np.arange(40, dtype=np.float32) * np.float32(0.5)).reshape(10, 4)
    state_dict["model.layers.0.self_attn.q_proj.weight"] = (np.arange(48, dtype=np.float16) - 24).reshape(6, 8)
    state_dict["model.layers.0.mlp.up_proj.weight"] = (np.arange(100, dtype=np.float32) / np.float32(8)).reshape(10, 10)
    state_dict["model.layers.0.input_layernorm.weight"] = np.arange(16, dtype=np.float32) + 1
    state_dict["model.layers.1.self_attn.q_proj.weight"] = (np.arange(64, dtype=np.float16) * 3).reshape(8, 8)
    state_dict["model.rotary.inv_freq_steps"] = np.array([7], dtype=np.int64)
    state_dict["model.norm.weight"] = np.arange(48, dtype=np.float32) - 0.5
    max_shard_size = 256
    split = split_state_dict_into_shards_factory(
        state_dict, get_storage_size=lambda a: a.nbytes,
        filename_pattern="model{suffix}.safetensors", max_shard_size=max_shard_size)
    assert split.is_sharded
    for filename, names in split.filename_to_tensors.items():
        save_file({n: state_dict[n] for n in names}, os.path.join(folder, filename),
                  metadata={"format": "pt"})
    index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
    # Exactly how transformers' save_pretrained writes the index.
    with open(os.path.join(folder, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(index, indent=2, sort_keys=True) + "\n")
    expected = {
        "max_shard_size": max_shard_size,
        "order": list(state_dict.keys()),
        "tensors": {
            name: {"dtype": {"float32": "F32", "float16": "F16", "int64": "I64"}[a.dtype.name],
                   "shape": list(a.shape), "hex": a.tobytes().hex(),
                   "floats": [json_float(v) for v in a.reshape(-1).astype(np.float32)]}
            for name, a in state_dict.items()
        },
    }
    with open(os.path.join(OUT, "sharded.expected.json"), "w", encoding="utf-8") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    write_multi_dtype()
    write_byte_identity()
    write_sharded()


if __name__ == "__main__":
    main()

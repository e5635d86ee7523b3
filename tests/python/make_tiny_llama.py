#!/usr/bin/env python3
"""Writes tests/data/tiny_llama/: a tiny Llama-architecture Hugging Face folder made by another tool
(numpy + the reference `safetensors` library), the input of the `lorasweep quantize` tests.

Shapes are chosen so that quantization blocks cross row boundaries and some tensors end in a short
block (k_proj: 20 x 40 = 800 elements = 12.5 blocks of 64). Weights are bf16, as HF checkpoints are.
Run by hand (not by the tests):  .venv/bin/python tests/python/make_tiny_llama.py
"""
import json
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "data", "tiny_llama")
HIDDEN, INTER, LAYERS, HEADS, KV_HEADS, VOCAB = 40, 100, 2, 4, 2, 64
HEAD_DIM = HIDDEN // HEADS


def bf16(values):
    """float32 -> bf16 bit patterns (round to nearest even), stored as uint16 under a BF16 dtype."""
    bits = values.astype(np.float32).view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def main():
    rng = np.random.default_rng(20261128)
    tensors = {}

    def add(name, shape, scale):
        tensors[name] = rng.normal(0.0, scale, size=shape).astype(np.float32)

    add("model.embed_tokens.weight", (VOCAB, HIDDEN), 0.5)
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        add(p + "self_attn.q_proj.weight", (HEADS * HEAD_DIM, HIDDEN), 0.08)
        add(p + "self_attn.k_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.08)
        add(p + "self_attn.v_proj.weight", (KV_HEADS * HEAD_DIM, HIDDEN), 0.08)
        add(p + "self_attn.o_proj.weight", (HIDDEN, HEADS * HEAD_DIM), 0.08)
        add(p + "mlp.gate_proj.weight", (INTER, HIDDEN), 0.08)
        add(p + "mlp.up_proj.weight", (INTER, HIDDEN), 0.08)
        add(p + "mlp.down_proj.weight", (HIDDEN, INTER), 0.05)
        tensors[p + "input_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(np.float32)
        tensors[p + "post_attention_layernorm.weight"] = (1 + 0.1 * rng.standard_normal(HIDDEN)).astype(
            np.float32)
    tensors["model.norm.weight"] = np.ones(HIDDEN, dtype=np.float32)
    add("lm_head.weight", (VOCAB, HIDDEN), 0.1)
    # An outlier in one block, so that block's absmax dominates: quantization must stay per block.
    tensors["model.layers.0.mlp.up_proj.weight"][3, 7] = 2.5

    # safetensors.numpy has no bfloat16: write the bits as uint16 and patch the dtype in the header.
    encoded = {name: bf16(v) for name, v in tensors.items()}
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "model.safetensors")
    save_file(encoded, path, metadata={"format": "pt"})
    with open(path, "rb") as f:
        data = bytearray(f.read())
    n = int.from_bytes(data[:8], "little")
    header = data[8:8 + n].decode().rstrip(" ").replace('"U16"', '"BF16"').encode()
    header += b" " * (-len(header) % 8)  # offsets are relative to the data: only the padding moves
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header + bytes(data[8 + n:]))

    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
        "hidden_size": HIDDEN, "intermediate_size": INTER, "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS, "num_key_value_heads": KV_HEADS, "vocab_size": VOCAB,
        "max_position_embeddings": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16", "bos_token_id": 1, "eos_token_id": 2,
        "initializer_range": 0.02, "use_cache": True,
    }
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    with open(os.path.join(OUT, "generation_config.json"), "w") as f:
        json.dump({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, f, indent=2)


if __name__ == "__main__":
    main()

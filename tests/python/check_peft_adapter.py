#!/usr/bin/env python3
"""Loads a PEFT adapter folder written by lorasweep with the reference libraries.

Usage: check_peft_adapter.py ADAPTER_DIR EXPECTED_JSON

EXPECTED_JSON (written by tests/peft_adapter_test.cc) lists every key with its shape and the sum of
its values. The folder is loaded with `safetensors` (numpy) and, when PEFT is installed, its
adapter_config.json with peft.LoraConfig. Exits 77 (a CTest / GoogleTest skip) when safetensors or
numpy is missing, 1 on any mismatch.
"""
import json
import os
import sys


def main() -> int:
    try:
        import numpy as np
        from safetensors.numpy import load_file
    except ImportError as e:  # not installed: skip
        print(f"SKIP: {e}")
        return 77
    adapter_dir, expected_path = sys.argv[1], sys.argv[2]
    with open(expected_path) as f:
        expected = json.load(f)
    tensors = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    if sorted(tensors) != sorted(expected["tensors"]):
        print("keys differ:", sorted(tensors), sorted(expected["tensors"]))
        return 1
    for name, want in expected["tensors"].items():
        t = tensors[name]
        if t.dtype != np.float32 or list(t.shape) != want["shape"]:
            print(f"{name}: dtype {t.dtype} shape {list(t.shape)}, expected float32 {want['shape']}")
            return 1
        if abs(float(t.astype(np.float64).sum()) - want["sum"]) > 1e-9 * max(1.0, abs(want["sum"])):
            print(f"{name}: sum {float(t.sum())}, expected {want['sum']}")
            return 1
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        config = json.load(f)
    for key in ("r", "lora_alpha", "target_modules", "peft_type", "task_type", "use_rslora"):
        if config.get(key) != expected["config"][key]:
            print(f"adapter_config.json {key}: {config.get(key)!r}, expected {expected['config'][key]!r}")
            return 1
    try:
        from peft import LoraConfig  # optional
    except ImportError:
        print("peft not installed: checked the safetensors file and the config JSON only")
        return 0
    loaded = LoraConfig.from_pretrained(adapter_dir)
    if loaded.r != config["r"] or sorted(loaded.target_modules) != sorted(config["target_modules"]):
        print("peft.LoraConfig read different values:", loaded)
        return 1
    print("peft.LoraConfig loaded the folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())

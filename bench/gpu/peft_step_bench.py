#!/usr/bin/env python3
"""The same training step as gpu_train_step_bench, on the plain Hugging Face stack: PyTorch +
transformers + PEFT LoRA, base in bf16 (bitsandbytes is not assumed; a bf16 base is the faster of
the two for PyTorch, so the comparison is the harder one for lorasweep), LoRA rank R on all linears
(PEFT keeps the adapter in fp32 over a bf16 base), SDPA attention, gradient checkpointing, fused
AdamW. Random weights, random tokens, the 1B-class Llama shape. Prints tokens/s and peak memory,
and writes them as JSON with --json.

  python3 bench/gpu/peft_step_bench.py [--seq 2048] [--micro-batch 4] [--rank 16] [--steps 5]
                                       [--layers 16] [--json FILE]
"""
import argparse
import json
import time

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seq", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--layers", type=int, default=16)
    p.add_argument("--json", default="")
    a = p.parse_args()
    config = LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=a.layers,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         vocab_size=128256, max_position_embeddings=max(a.seq, 2048),
                         rope_theta=500000.0, rms_norm_eps=1e-5, tie_word_embeddings=True)
    config._attn_implementation = "sdpa"
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    model = get_peft_model(model, LoraConfig(
        r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                        "down_proj"]))
    params = [q for q in model.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4, fused=True)
    ids = torch.randint(0, config.vocab_size, (a.micro_batch, a.seq), device="cuda")

    def step():
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    torch.cuda.synchronize()
    step_s = (time.perf_counter() - t0) / a.steps
    result = {"seq": a.seq, "micro_batch": a.micro_batch, "rank": a.rank, "layers": a.layers,
              "step_s": step_s, "tokens_per_s": a.micro_batch * a.seq / step_s,
              "peak_gpu_bytes": torch.cuda.max_memory_allocated(),
              "torch": torch.__version__}
    print(f"PyTorch {torch.__version__} + PEFT, bf16 base: {step_s:.3f} s/step, "
          f"{result['tokens_per_s']:.0f} tokens/s, peak {result['peak_gpu_bytes'] / 2**30:.2f} GiB")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    main()

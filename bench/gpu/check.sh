#!/usr/bin/env bash
# The one prepared GPU check (issue [cuda]): builds lorasweep's CUDA backend for one architecture
# (-arch set explicitly, sm_90 = H100/H200 by default), runs the GPU tests (op parity against the
# CPU and float64 references, 10 training steps against the CPU backend, NCCL against MPI), then the
# GPU benchmarks, writes everything under OUT_DIR and prints a short table last.
#
#   bench/gpu/check.sh OUT_DIR            # LORASWEEP_GPU_ARCH=sm_80 for an A100
#
# Needs nothing from the network: the system packages cluster/setup.sh installs (absl, protobuf,
# spdlog, Open MPI, ... from Debian/Ubuntu) and the CUDA toolkit. On a GPU machine without those
# packages (a bare CUDA image), run bench/gpu/pack.sh on a machine that has them first: it builds
# the same programs for the same -arch and packs them with their libraries into .gpu-pack/, and
# this script then runs the pack instead of building (LORASWEEP_GPU_USE_PACK=1 forces that). The
# PyTorch + PEFT comparison runs only where python3 imports torch, transformers and peft. Budget:
# about 8 minutes on one H100/H200 (build ~3 min on 16 cores, tests ~1 min, benchmarks ~3 min).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:?usage: bench/gpu/check.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
arch=${LORASWEEP_GPU_ARCH:-sm_90}
build=${LORASWEEP_GPU_BUILD:-$root/build-gpu}
jobs=$(nproc)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
status=0
declare -a table

step() { echo "[gpu-check] $*" | tee -a "$out/check.log"; }
row() { table+=("$1"); }

nvidia-smi >"$out/nvidia-smi.txt" 2>&1 || step "nvidia-smi failed (no driver?)"

pack=$root/.gpu-pack/lorasweep-gpu.tar.xz
use_pack=${LORASWEEP_GPU_USE_PACK:-auto}
if [[ $use_pack == auto ]]; then
  use_pack=0
  [[ -f $pack && ! -d /usr/lib/x86_64-linux-gnu/cmake/absl ]] && use_pack=1
fi
if [[ $use_pack == 1 ]]; then
  step "no build dependencies here: running the prebuilt pack $pack ($(tar -xJOf "$pack" ./PACK_INFO 2>/dev/null))"
  build=$root/build-gpu-from-pack
  rm -rf "$build" && mkdir -p "$build" && tar -C "$build" -xJf "$pack" || exit 1
  # CUDA's libraries from the GPU machine: the toolkit, or the Python wheels PyTorch brought.
  cuda_libs=$(find /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/lib/x86_64-linux-gnu /opt /usr/local/lib \
                -maxdepth 8 \( -name 'libcublas.so*' -o -name 'libnccl.so*' -o -name 'libcudart.so*' \) \
                2>/dev/null | xargs -r -n1 dirname | sort -u | paste -sd:)
  export LD_LIBRARY_PATH="$build/lib:$cuda_libs:${LD_LIBRARY_PATH:-}"
  export LORASWEEP_BINARY=$build/lorasweep
  export OMPI_MCA_mca_base_component_path=$build/lib/openmpi3
  ldd "$build/lorasweep" | grep 'not found' && step "libraries missing: see above"
else
step "configure ($arch) and build into $build"
# CMAKE_CUDA_ARCHITECTURES=OFF: CMake adds no architecture flags, so -arch is exactly ours.
if ! cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORASWEEP_CUDA=ON \
      -DCMAKE_CUDA_ARCHITECTURES=OFF -DCMAKE_CUDA_FLAGS="-arch=$arch" \
      >"$out/configure.log" 2>&1 ||
   ! cmake --build "$build" -j "$jobs" --target lorasweep cuda_parity_test cuda_train_test \
      nccl_communicator_test kernels_bench gpu_train_step_bench >"$out/build.log" 2>&1; then
  step "build FAILED: see $out/configure.log and $out/build.log"
  tail -30 "$out/build.log" 2>/dev/null
  exit 1
fi
fi

run_test() {  # name binary [mpirun -np N]
  local name=$1 binary=$2
  shift 2
  step "test $name"
  if timeout 300 "$@" "$build/tests/$binary" --gtest_output="json:$out/$name.json" \
      >"$out/$name.log" 2>&1; then
    # Per-test result lines end in "(N ms)"; the summary repeats the skipped ones without it.
    row "$(printf '%-34s %s' "$name" "passed ($(grep -cE '^\[       OK \].*\([0-9]+ ms\)' "$out/$name.log") ok, $(grep -cE '^\[  SKIPPED \].*\([0-9]+ ms\)' "$out/$name.log") skipped)")"
  else
    status=1
    row "$(printf '%-34s %s' "$name" "FAILED (see $name.log)")"
    grep -E '^\[  FAILED|Failure|error' "$out/$name.log" | head -20
  fi
}
run_test parity cuda_parity_test
grep '^\[parity\]' "$out/parity.log" >"$out/parity-table.txt" 2>/dev/null
run_test train_vs_cpu cuda_train_test
run_test nccl_vs_mpi nccl_communicator_test

step "kernel benchmarks"
if timeout 240 "$build/bench/kernels_bench" "$out/kernels.json" >"$out/kernels.log" 2>&1; then
  while IFS= read -r line; do row "$line"; done < <(grep -E 'ratio|TFLOP|cross' "$out/kernels.log")
else
  status=1
  row "kernels_bench FAILED (see kernels.log)"
fi

step "training step, 1B-class Llama, seq 2048, rank 16, all-linear"
if timeout 300 "$build/bench/gpu_train_step_bench" --json="$out/train_step.json" \
    >"$out/train_step.log" 2>&1; then
  while IFS= read -r line; do row "$line"; done < <(grep -E 'ceiling|step:|peak' "$out/train_step.log")
else
  status=1
  row "gpu_train_step_bench FAILED (see train_step.log)"
fi

if python3 -c 'import torch, transformers, peft' 2>/dev/null; then
  step "the same step on PyTorch + PEFT"
  if timeout 300 python3 "$root/bench/gpu/peft_step_bench.py" --json "$out/peft_step.json" \
      >"$out/peft_step.log" 2>&1; then
    row "$(tail -1 "$out/peft_step.log")"
    row "$(python3 - "$out/train_step.json" "$out/peft_step.json" <<'PY'
import json, sys
ours, theirs = (json.load(open(p)) for p in sys.argv[1:3])
print(f"lorasweep / PyTorch+PEFT tokens/s: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f} "
      f"(goal 1.3); MFU {ours['mfu']:.3f} (goal 0.35)")
PY
)"
  else
    row "peft_step_bench FAILED (see peft_step.log)"
  fi
else
  row "PyTorch + PEFT not importable here: no comparison"
fi

echo
echo "==== lorasweep GPU check ($arch, $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)) ===="
printf '%s\n' "${table[@]}" | tee "$out/summary.txt"
exit $status

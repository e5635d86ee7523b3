#!/usr/bin/env bash
# Runs a lorasweep sweep under Open MPI's mpirun, on this node or on several hosts.
#
#   cluster/mpirun/run-sweep.sh SPEC RUN_DIR [NP]                 # this node; NP default: cores + 1
#   HOSTFILE=hosts.txt cluster/mpirun/run-sweep.sh SPEC RUN_DIR NP  # several hosts (see README.md)
#   GPUS=1 cluster/mpirun/run-sweep.sh SPEC RUN_DIR 5               # 4 GPUs: one per worker rank
#
# Rank 0 coordinates; ranks 1.. form slots of resources.workers_per_trial. The same command after a
# crash or Ctrl-C continues the sweep (--resume is added when RUN_DIR/sweep.db exists).
# LORASWEEP (default: build/lorasweep next to this script's repo) overrides the binary.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if (($# < 2)); then sed -n 2,10p "$0" >&2; exit 2; fi
spec=$(realpath "$1")
run_dir=$(realpath -m "$2")
np=${3:-$(($(nproc) + 1))}
lorasweep=${LORASWEEP:-$root/build/lorasweep}
[[ -x $lorasweep ]] || { echo "run-sweep.sh: $lorasweep not built (cluster/setup.sh)" >&2; exit 1; }

args=(-np "$np" --bind-to none
      -x OPENBLAS_NUM_THREADS=1 -x OMP_NUM_THREADS=1 -x LORASWEEP_NUM_THREADS
      # Ranks waiting for messages yield the core (more ranks than cores is normal here).
      --mca mpi_yield_when_idle 1)
if [[ -n ${HOSTFILE:-} ]]; then
  # Fill each host's slots in order, so consecutive ranks (one slot) share a host.
  args+=(--hostfile "$HOSTFILE" --map-by slot)
else
  # One node: the coordinator is an extra rank, so allow more ranks than cores.
  args+=(--oversubscribe)
fi
if [[ $(id -u) -eq 0 ]]; then
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
# GPUS=1 gives each worker rank its own GPU by node-local rank (README.md); rank 0 gets none.
# With --map-by slot the first host holds ranks 0..k, so there rank == local rank and the
# coordinator (local rank 0) shifts the workers by one.
command=("$lorasweep")
if [[ ${GPUS:-0} == 1 ]]; then
  place_gpu='r=$OMPI_COMM_WORLD_RANK l=$OMPI_COMM_WORLD_LOCAL_RANK; g=$l; ((r == l)) && g=$((l - 1))
if ((g < 0)); then export CUDA_VISIBLE_DEVICES=; else export CUDA_VISIBLE_DEVICES=$g; fi
exec "$@"'
  command=(bash -c "$place_gpu" rank "$lorasweep")
fi
resume=()
[[ -f $run_dir/sweep.db ]] && resume=(--resume) && echo "run-sweep.sh: resuming $run_dir"
mkdir -p "$run_dir"
echo "run-sweep.sh: mpirun ${args[*]} $lorasweep sweep $spec --out $run_dir ${resume[*]}"
exec mpirun "${args[@]}" "${command[@]}" sweep "$spec" --out "$run_dir" "${resume[@]}"

#!/usr/bin/env bash
# Installs lorasweep's system packages (Debian 12, idempotent), then configures and builds into build/.
# The binary is build/lorasweep.
#
#   cluster/setup.sh                 # install what is missing, configure, build
#   LORASWEEP_CUDA=OFF cluster/setup.sh   # build without the CUDA backend (AUTO: when nvcc exists)
#   BUILD_DIR=build-x cluster/setup.sh    # another build folder
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

packages=(
  build-essential cmake ninja-build ccache pkg-config git python3
  libopenmpi-dev openmpi-bin libabsl-dev libprotobuf-dev protobuf-compiler
  libspdlog-dev libfmt-dev nlohmann-json3-dev libopenblas-dev libgtest-dev libgmock-dev
  libsqlite3-dev libyaml-cpp-dev
  chromium  # tests/report_test.cc renders report.html headless and checks the screenshot
  slurmctld slurmd slurm-client munge  # cluster/slurm/local-cluster.sh, tests/slurm_test.cc
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "[setup] installing: ${missing[*]}"
  sudo_cmd=()
  [[ $(id -u) -ne 0 ]] && sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
else
  echo "[setup] system packages present"
fi

build_dir=${BUILD_DIR:-build}
# ccache shares hits across build folders and clones when paths are relative to the source root.
export CCACHE_BASEDIR="$root" CCACHE_NOHASHDIR=1
if [[ ! -f "$build_dir/build.ninja" ]]; then
  echo "[setup] configuring $build_dir (LORASWEEP_CUDA=${LORASWEEP_CUDA:-AUTO})"
  cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DLORASWEEP_CUDA="${LORASWEEP_CUDA:-AUTO}" ${LORASWEEP_CMAKE_ARGS:-}
fi
echo "[setup] building $build_dir"
cmake --build "$build_dir" -j "$(nproc)"
echo "[setup] done: $build_dir/lorasweep"

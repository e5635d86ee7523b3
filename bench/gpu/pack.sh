#!/usr/bin/env bash
# Builds the programs of the GPU check here (the CUDA toolkit and cluster/setup.sh's packages are
# needed, a GPU is not) and packs them, stripped, with the shared libraries they load from this
# machine's packages (absl, protobuf, spdlog, fmt, yaml-cpp, SQLite, OpenBLAS, Open MPI, libstdc++)
# into .gpu-pack/lorasweep-gpu.tar.xz. bench/gpu/check.sh uses the pack on a GPU machine that lacks
# those packages (a bare CUDA image with nothing to install from): CUDA's own libraries (cudart,
# cuBLAS, NCCL) and the driver are not packed; they come from the GPU machine.
#
#   bench/gpu/pack.sh          # LORASWEEP_GPU_ARCH=sm_90 by default
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
arch=${LORASWEEP_GPU_ARCH:-sm_90}
build=$root/build-gpu-pack
targets=(lorasweep cuda_parity_test cuda_train_test nccl_communicator_test kernels_bench
         gpu_train_step_bench)
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLORASWEEP_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES=OFF -DCMAKE_CUDA_FLAGS="-arch=$arch" -DLORASWEEP_BUILD_BENCH=ON >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/tests" "$stage/bench" "$stage/lib"
cp "$build/lorasweep" "$stage/"
for t in cuda_parity_test cuda_train_test nccl_communicator_test; do cp "$build/tests/$t" "$stage/tests/"; done
for b in kernels_bench gpu_train_step_bench; do cp "$build/bench/$b" "$stage/bench/"; done
strip "$stage/lorasweep" "$stage"/tests/* "$stage"/bench/*
# Shared libraries, minus glibc (the GPU machine's own must be used), the CUDA libraries and the
# driver (too large to carry, and they must match the GPU machine's driver).
for f in "$stage/lorasweep" "$stage"/tests/* "$stage"/bench/*; do
  ldd "$f" | awk '/=> \// {print $3}'
done | sort -u | grep -Ev '/(libc|libm|libdl|libpthread|librt|ld-linux[^/]*|libcuda|libcudart|libcublas|libcublasLt|libnccl|libnvidia[^/]*)\.so' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
# Open MPI loads its components at run time (only MPI-using programs need them: the NCCL test).
ompi=$(dirname "$(readlink -f /usr/lib/x86_64-linux-gnu/libmpi.so)")
[[ -d $ompi/openmpi3 ]] && cp -a "$ompi/openmpi3" "$stage/lib/"
echo "$arch $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)" >"$stage/PACK_INFO"
mkdir -p "$root/.gpu-pack"
tar -C "$stage" -cJf "$root/.gpu-pack/lorasweep-gpu.tar.xz" .
ls -l "$root/.gpu-pack/lorasweep-gpu.tar.xz"

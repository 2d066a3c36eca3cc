#!/usr/bin/env bash
# GPU build of the protein-lm binary with CUDA 13.0 from PyPI wheels (no GPU or system CUDA needed here).
#
#   scripts/cuda/build.sh                    # --features cuda  -> target/cuda/release/protein-lm
#   FEATURES=cuda,nccl scripts/cuda/build.sh # any of cuda, cudnn, nccl
#   MODE=full scripts/cuda/build.sh          # link against the real cuBLAS/cuRAND/NVRTC/NCCL wheels
#
# Uses its own target dir (target/cuda) so the CPU build in target/release stays untouched.
# The binary needs the CUDA 13 driver libraries (libcuda.so.1, libcublas.so.13, ...) at run time; to start
# it on a machine with no driver, put the printed stub dir first on LD_LIBRARY_PATH (CPU code paths only).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
# shellcheck source=setup_cuda_toolchain.sh
source scripts/cuda/setup_cuda_toolchain.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
FEATURES=${FEATURES:-cuda}
t0=$(date +%s)
cargo build --release --features "$FEATURES" --bin protein-lm "$@"
bin=$CARGO_TARGET_DIR/release/protein-lm
echo "built $bin (features: $FEATURES) in $(( $(date +%s) - t0 )) s, $(stat -c %s "$bin") bytes"
readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  needs \1/p'
echo "no-GPU smoke test: LD_LIBRARY_PATH=$CUDA_NODRIVER_LIBS $bin --help"

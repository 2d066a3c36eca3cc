#!/usr/bin/env bash
# Builds a CUDA 13.0 "toolkit root" from NVIDIA's PyPI wheels, enough for
# `cargo build --features cuda` (candle 0.11.1 -> cudarc 0.19, candle-kernels/cudaforge) on a machine
# with no GPU and no system CUDA. Idempotent: a second run only re-checks and prints the environment.
#
#   scripts/cuda/setup_cuda_toolchain.sh                 # build the root, print `export ...` lines
#   eval "$(scripts/cuda/setup_cuda_toolchain.sh)"       # ... and apply them to this shell
#   source scripts/cuda/setup_cuda_toolchain.sh          # from a bash script (as scripts/cuda/build.sh does)
#
# Environment:
#   CUDA_TOOLKIT_DIR  where to build it (default: target/cuda-toolkit, git-ignored)
#   MODE=min   (default) compiler wheels only (~100 MB download, ~270 MB unpacked). libcuda, cuBLAS,
#              cuBLASLt, cuRAND, NVRTC, NCCL and cuDNN are link-time stubs generated from cudarc's bindings.
#   MODE=full  also the real cuBLAS/cuRAND/NVRTC/NCCL wheels (~830 MB download, 1.4 GB unpacked).
#              libcuda (driver) and cuDNN are still stubs.
#   CUDA_COMPUTE_CAP  default 90 (H100/H200 -> sm_90a kernels; there is no nvidia-smi here).
#
# Layout: $CUDA_TOOLKIT_DIR/wheels (pip cache of the pinned wheels), root/nvidia/cu13 (= CUDA_ROOT, with
# lib/stubs for the generated libraries), nodriver/ (the stubs under their sonames: ONLY for starting the
# binary on a machine without a driver; never put it on LD_LIBRARY_PATH where a GPU driver exists).
# Needs python3 + pip, unzip, gcc, readelf, cargo. Details and measurements: README.md, "GPU builds".
set -euo pipefail

_cuda_main() {
    local here repo work mode cu cudarc_ver cudarc want stamp
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
    repo=$(cd "$here/../.." && pwd)
    work=$(realpath -m "${CUDA_TOOLKIT_DIR:-$repo/target/cuda-toolkit}")
    mode=${MODE:-min}
    case $mode in min|full) ;; *) echo "MODE must be min or full, not '$mode'" >&2; return 1;; esac
    cu=$work/root/nvidia/cu13

    # Pinned to 13.0.x (the cuda-toolkit==13.0.2 meta package): the device driver (580) is CUDA 13.0 and
    # refuses PTX from nvcc 13.1+. The cu12 nvcc wheels ship no nvcc binary at all.
    local pkgs=(nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88
                nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85)
    if [[ $mode == full ]]; then
        pkgs+=(nvidia-cublas==13.1.0.3 nvidia-curand==10.4.0.35 nvidia-cuda-nvrtc==13.0.88 nvidia-nccl-cu13==2.28.9)
    fi

    # cudarc sources (for the stubs): the exact version in Cargo.lock.
    cudarc_ver=$(awk '/^name = "cudarc"$/ {getline; gsub(/[^0-9.]/, ""); print; exit}' "$repo/Cargo.lock")
    [[ -n $cudarc_ver ]] || { echo "cudarc not found in Cargo.lock" >&2; return 1; }
    local reg=${CARGO_HOME:-$HOME/.cargo}/registry/src
    cudarc=$(ls -d "$reg"/*/"cudarc-$cudarc_ver" 2>/dev/null | head -1 || true)
    if [[ -z $cudarc ]]; then
        echo "fetching crate sources (cargo fetch) for cudarc $cudarc_ver" >&2
        (cd "$repo" && cargo fetch >&2)
        cudarc=$(ls -d "$reg"/*/"cudarc-$cudarc_ver" 2>/dev/null | head -1 || true)
        [[ -n $cudarc ]] || { echo "cudarc-$cudarc_ver sources not found under $reg" >&2; return 1; }
    fi

    want="mode=$mode cudarc=$cudarc_ver pkgs=${pkgs[*]}"
    stamp=$work/.stamp
    if [[ -x $cu/bin/nvcc && -f $stamp && $(cat "$stamp") == "$want" ]]; then
        echo "CUDA 13.0 root up to date: $cu ($mode)" >&2
    else
        echo "building CUDA 13.0 root in $work (MODE=$mode)" >&2
        rm -rf "$work/root" "$work/nodriver" "$stamp"   # wheels/ is kept as a download cache
        mkdir -p "$work/wheels" "$work/root"
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            -d "$work/wheels" "${pkgs[@]}" >&2
        local p name ver whl
        for p in "${pkgs[@]}"; do
            name=${p%%==*}; ver=${p#*==}
            whl=$(ls "$work"/wheels/"${name//-/_}-$ver"-*.whl | head -1)
            unzip -q -o "$whl" -x '*.dist-info/*' -d "$work/root"
        done
        chmod +x "$cu"/bin/* "$cu"/nvvm/bin/* 2>/dev/null || true
        ln -sfn lib "$cu/lib64"
        mkdir -p "$cu/lib/stubs"
        # The wheels ship only versioned libraries; the linker wants libX.so.
        (
            cd "$cu/lib"
            for f in lib*.so.[0-9]*; do
                case $f in *builtins*|*.alt.*) continue;; esac
                ln -sf "$f" "${f%%.so*}.so"
            done
            if [[ -e ../../nccl/lib/libnccl.so.2 ]]; then
                ln -sf ../../nccl/lib/libnccl.so.2 libnccl.so.2
                ln -sf libnccl.so.2 libnccl.so
            fi
        )
        # Stubs: cudarc links -lcuda (+ -lcublas -lcublasLt -lcurand -lnvrtc, -lnccl, -lcudnn) and no
        # wheel has libcuda. lib/stubs is on cudarc's own link-search list (after lib/, so real libs win).
        local tmp; tmp=$(mktemp -d)
        mkstub() { # mkstub <cudarc module> <soname>
            python3 "$here/gen_stub.py" "$cudarc" "$1" "$tmp/$1.c"
            gcc -shared -fPIC -O1 -Wl,-soname,"$2" -o "$cu/lib/stubs/${2%%.so*}.so" "$tmp/$1.c"
        }
        mkstub driver libcuda.so.1
        mkstub cudnn libcudnn.so.9          # no cuDNN wheel is used in either mode (link-time only)
        if [[ $mode == min ]]; then
            mkstub cublas libcublas.so.13
            mkstub cublaslt libcublasLt.so.13
            mkstub curand libcurand.so.10
            mkstub nvrtc libnvrtc.so.13
            mkstub nccl libnccl.so.2
        fi
        rm -rf "$tmp"
        mkdir -p "$work/nodriver"
        local s soname
        for s in "$cu"/lib/stubs/*.so; do
            soname=$(readelf -d "$s" | sed -n 's/.*soname: \[\(.*\)\]/\1/p')
            cp "$s" "$work/nodriver/$soname"
        done
        "$cu/bin/nvcc" --version | tail -2 >&2
        echo "$want" > "$stamp"
    fi

    export CUDA_ROOT=$cu CUDA_HOME=$cu CUDA_PATH=$cu CUDA_TOOLKIT_ROOT_DIR=$cu
    case ":$PATH:" in *":$cu/bin:"*) ;; *) export PATH=$cu/bin:$PATH;; esac
    export LIBRARY_PATH=$cu/lib:$cu/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}
    export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
    export CUDARC_CUDA_VERSION=13000      # cudarc would also read it from `nvcc --version`
    # Not exported: only for smoke tests on machines without a driver.
    CUDA_NODRIVER_LIBS=$work/nodriver:$cu/lib
    local v
    for v in CUDA_ROOT CUDA_HOME CUDA_PATH CUDA_TOOLKIT_ROOT_DIR PATH LIBRARY_PATH CUDA_COMPUTE_CAP CUDARC_CUDA_VERSION; do
        printf 'export %s=%q\n' "$v" "${!v}"
    done
    printf '# no-GPU smoke test only: LD_LIBRARY_PATH=%q <binary>\n' "$CUDA_NODRIVER_LIBS"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    _cuda_main
else
    _cuda_main >&2
fi

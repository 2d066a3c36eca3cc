#!/usr/bin/env bash
# CI's GPU-path step on a machine without a GPU: builds the CUDA + NCCL binary from the PyPI wheels
# (setup_cuda_toolchain.sh, MODE=min) and checks that it starts here and says what it cannot do.
#
#   scripts/cuda/check.sh            # build (dev profile) + type-check the tests + smoke test
#   CHECK_ONLY=1 scripts/cuda/check.sh   # `cargo check --features cuda,nccl` only (no link, no smoke test)
#
# The smoke test runs the binary with the link-time stubs on LD_LIBRARY_PATH (no driver here):
#   --help works; --device cuda is refused naming the reason; --device auto falls back to the CPU
#   and trains a tiny PRoBERTa; --gpus 2 starts two ranks, which both refuse for want of a GPU.
# Uses target/cuda (its own target dir) and target/cuda-toolkit; about 2 GB of disk.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"
t0=$(date +%s)
# shellcheck source=setup_cuda_toolchain.sh
source scripts/cuda/setup_cuda_toolchain.sh
echo "=== [cuda] toolchain ready in $(( $(date +%s) - t0 )) s"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_CUDA:-target/cuda}
features=cuda,nccl
t1=$(date +%s)
cargo check --features "$features" --lib --bins --tests
echo "=== [cuda] cargo check --features $features --lib --bins --tests: $(( $(date +%s) - t1 )) s"
if [[ -n "${CHECK_ONLY:-}" ]]; then
    exit 0
fi
t1=$(date +%s)
cargo build --features "$features" --bin protein-lm
bin=$CARGO_TARGET_DIR/debug/protein-lm
echo "=== [cuda] cargo build --features $features: $(( $(date +%s) - t1 )) s; $bin needs:"
readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/  \1/p'

# ---- no-GPU smoke test ----
export LD_LIBRARY_PATH=$CUDA_NODRIVER_LIBS
export PROTEIN_LM_DATA=/nonexistent-protein-lm-data
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/tiny.json" <<'PY'
import json, sys
c = json.load(open("configs/proberta-pretrain-tiny.json"))
c["train"]["max_updates"] = 2
c["train"]["validate_every_updates"] = 2
c["data"]["max_proteins"] = 60
c["data"]["valid_proteins"] = 8
json.dump(c, open(sys.argv[1], "w"))
PY
pretrain() {
    "$bin" pretrain --model proberta --config "$work/tiny.json" --tokenizer tests/fixtures/proberta/dict.txt \
        --data datasets/samples/swissprot_sample300.tsv --quiet "$@"
}
fail() { echo "=== [cuda] smoke test FAILED: $*"; exit 1; }

"$bin" --help >/dev/null || fail "--help"
if pretrain --out "$work/cuda" --device cuda 2>"$work/cuda.err"; then fail "--device cuda ran without a GPU"; fi
grep -q "CUDA device 0 was requested but cannot be used" "$work/cuda.err" || { cat "$work/cuda.err"; fail "--device cuda: unclear refusal"; }
echo "--device cuda:  $(grep '^error' "$work/cuda.err")"
pretrain --out "$work/auto" --device auto 2>"$work/auto.err" || { cat "$work/auto.err"; fail "--device auto did not fall back"; }
grep -q "falling back to the CPU" "$work/auto.err" || { cat "$work/auto.err"; fail "--device auto: no fallback note"; }
grep -q "protein-lm: device cpu" "$work/auto.err" || { cat "$work/auto.err"; fail "--device auto: no device line"; }
[[ -f "$work/auto/model/model.safetensors" ]] || fail "--device auto: no model written"
echo "--device auto:  $(grep -E '^note|^protein-lm' "$work/auto.err" | tr '\n' ' ')"
if pretrain --out "$work/gpus" --gpus 2 2>"$work/gpus.err"; then fail "--gpus 2 ran without GPUs"; fi
grep -q "rank [01] of 2 failed" "$work/gpus.err" || { cat "$work/gpus.err"; fail "--gpus 2: unclear failure"; }
echo "--gpus 2:       $(grep -E '^error' "$work/gpus.err" | head -2 | tr '\n' ' ')"
echo "=== [cuda] smoke test passed; total $(( $(date +%s) - t0 )) s"

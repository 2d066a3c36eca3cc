#!/usr/bin/env bash
# The model paths of protein-lm against their Python peers, on this machine, in one run (issue 15):
# PyTorch + transformers for PRoBERTa, the reference Keras ProteinBERT (protein-bert 1.0.1 on TF 2.15)
# for ProteinBERT. Each measurement alternates our call and the peer's (the order swapped every
# round), repeats, and ends in one markdown table of medians and ratios, model FLOP rates against the
# measured matrix-product limit, and training peak memory.
#
#   benches/peers/run.sh                      # full: 5 rounds (training steps 3), 1,000 proteins to embed (~25 min quiet)
#   benches/peers/run.sh --quick              # 2 rounds (training steps 1), 100 proteins: checks it end to end
#   PEERS_ROUNDS=2 PEERS_PROTEINS=1000 benches/peers/run.sh embed-proteinbert   # rounds / proteins overridden
#   benches/peers/run.sh --skip-setup …       # do not re-run the venv setups (they must exist)
#   benches/peers/run.sh proberta-forward …   # only these measurements
#
# Measurements: proberta-forward, proberta-train-step, proteinbert-forward, proteinbert-train-step,
# embed-proberta, embed-proteinbert, matmul-limit, matmul-narrow-dense, matmul-narrow-conv.
# Ours: `cargo bench --bench peers -- <measurement>` (benches/peers.rs) and the release `protein-lm
# embed` CLI timed as a whole process; peers: benches/peers/proberta_peer.py (torch venv of
# tests/fixtures/proberta) and benches/peers/proteinbert_peer.py (TF venv of tests/fixtures/proteinbert),
# whose embedding is timed after their imports (generous to them: the import of torch or TF is left out).
# Shapes: PRoBERTa 8 × 512 (paper size 5 × 768), ProteinBERT 32 × 512 (released size), identical on
# both sides. Threads: 2 on both sides (RAYON_NUM_THREADS; OMP/MKL_NUM_THREADS, torch.set_num_threads,
# TF intra/inter-op pools); PEERS_THREADS=N changes both.
# Embedding: the first N proteins of the Swiss-Prot 2014 sample (swissprot_201401_go_sample50k.tsv.gz,
# itself a uniform random sample) as FASTA, written under target/peers/ with the models
# `protein-lm init` makes there (seed 0; PRoBERTa with a BPE trained by `protein-lm tokenizer train` on
# the sample's first 20,000 proteins, whose tokenizer.json both sides tokenize with). After the first
# round the two sides' embeddings are compared (same weights, same tokens).
# Peak memory: each training-step call runs under /usr/bin/time -v (GNU time; `apt-get install time`).
# FLOP formulas and the table: benches/peers/table.py. Output: stdout and results/bench/peers.md
# (raw JSON lines in results/bench/peers.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)

quick=0 setup=1 only=()
for a in "$@"; do
    case "$a" in
        --quick) quick=1 ;;
        --skip-setup) setup=0 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        -*) echo "unknown option $a (see --help)" >&2; exit 2 ;;
        *) only+=("$a") ;;
    esac
done
all=(matmul-limit matmul-narrow-dense matmul-narrow-conv proberta-forward proteinbert-forward
     proberta-train-step proteinbert-train-step embed-proberta embed-proteinbert)
[ ${#only[@]} -gt 0 ] || only=("${all[@]}")
for m in "${only[@]}"; do
    [[ " ${all[*]} " == *" $m "* ]] || { echo "unknown measurement $m; one of: ${all[*]}" >&2; exit 2; }
done
if [ $quick = 1 ]; then
    rounds=2 train_rounds=1 reps=2 train_reps=1 mm_reps=3 proteins=100
else
    rounds=5 train_rounds=3 reps=3 train_reps=2 mm_reps=5 proteins=1000
fi
# PEERS_ROUNDS and PEERS_PROTEINS override the mode's rounds and proteins (a shorter run of one measurement).
rounds=${PEERS_ROUNDS:-$rounds}
proteins=${PEERS_PROTEINS:-$proteins}

die() { echo "peers/run.sh: $*" >&2; exit 1; }
torch_venv=tests/fixtures/proberta/.venv
tf_venv=tests/fixtures/proteinbert/.venv
if [ $setup = 1 ]; then
    echo "=== venvs (idempotent; --skip-setup skips this)" >&2
    tests/fixtures/proberta/setup_venv.sh >&2 || die "tests/fixtures/proberta/setup_venv.sh failed"
    tests/fixtures/proteinbert/setup_venv.sh >&2 || die "tests/fixtures/proteinbert/setup_venv.sh failed"
fi
[ -x $torch_venv/bin/python ] || die "the torch venv $torch_venv is missing: run tests/fixtures/proberta/setup_venv.sh (or drop --skip-setup)"
[ -x $tf_venv/bin/python ] || die "the TensorFlow venv $tf_venv is missing: run tests/fixtures/proteinbert/setup_venv.sh (or drop --skip-setup)"
$torch_venv/bin/python -c 'import torch, transformers, tokenizers, safetensors' 2>/dev/null \
    || die "$torch_venv lacks torch/transformers: re-run tests/fixtures/proberta/setup_venv.sh"
$tf_venv/bin/python -c 'import tensorflow, tensorflow_addons, proteinbert, safetensors' 2>/dev/null \
    || die "$tf_venv lacks tensorflow/protein-bert: re-run tests/fixtures/proteinbert/setup_venv.sh"
gnu_time=/usr/bin/time
if ! $gnu_time -v true 2>/dev/null; then
    echo "peers/run.sh: GNU time (/usr/bin/time) not found: training peak memory is not measured (apt-get install time)" >&2
    gnu_time=
fi

echo "=== build (release)" >&2
cargo build --release --bin protein-lm >&2
bench=$(cargo bench --bench peers --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import sys, json
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "peers":
        print(m["executable"])')
[ -x "$bench" ] || die "could not build the peers bench (cargo bench --bench peers --no-run)"
cli=$root/target/release/protein-lm

threads=${PEERS_THREADS:-2}
export RAYON_NUM_THREADS=$threads OMP_NUM_THREADS=$threads MKL_NUM_THREADS=$threads
export TF_CPP_MIN_LOG_LEVEL=2 CUDA_VISIBLE_DEVICES=-1

work=$root/target/peers
mkdir -p "$work" results/bench
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
results=$tmp/results.jsonl
: > "$results"
failed=()

# --- embedding inputs (cached under target/peers) ---
need_embed=0
for m in "${only[@]}"; do [[ $m == embed-* ]] && need_embed=1; done
if [ $need_embed = 1 ]; then
    table=
    for d in "${PROTEIN_LM_DATA:-}" "$(dirname "$root")/shared/datasets" "${XDG_DATA_HOME:-$HOME/.local/share}/protein-lm/datasets"; do
        f=$d/swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz
        if [ -n "$d" ] && [ -f "$f" ]; then table=$f; break; fi
    done
    [ -n "$table" ] || die "swissprot-2014-go/swissprot_201401_go_sample50k.tsv.gz not found (\$PROTEIN_LM_DATA, ../shared/datasets or the user data directory): run datasets/fetch.sh"
    fasta=$work/swissprot_first$proteins.fasta
    if [ ! -s "$fasta" ]; then
        zcat "$table" | awk -F'\t' -v n="$proteins" '
            NR == 1 { for (i = 1; i <= NF; i++) if ($i == "sequence") s = i; next }
            NR <= n + 1 { print ">" $1; print $s }' > "$fasta.tmp"
        mv "$fasta.tmp" "$fasta"
    fi
    if [ ! -f "$work/bpe/tokenizer.json" ]; then
        echo "=== PRoBERTa BPE on the first 20,000 proteins (once)" >&2
        "$cli" tokenizer train --input "$table" --out "$work/bpe" --limit 20000 >&2
    fi
    if [ ! -f "$work/model-proberta/model.safetensors" ]; then
        rm -rf "$work/model-proberta"
        "$cli" init --model proberta --size paper --dict "$work/bpe" --seed 0 --out "$work/model-proberta" >&2
        cp "$work/bpe/tokenizer.json" "$work/model-proberta/"
    fi
    if [ ! -f "$work/model-proteinbert/model.safetensors" ]; then
        rm -rf "$work/model-proteinbert"
        "$cli" init --model proteinbert --size paper --seed 0 --out "$work/model-proteinbert" >&2
    fi
fi

# --- the header ---
lock_version() { awk -v n="$1" '$0 == "name = \"" n "\"" { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock; }
header=$tmp/header.md
{
    echo "# protein-lm against its Python peers"
    echo
    echo "- machine: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB; load at start $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- protein-lm $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml || echo ' + uncommitted changes'), $(rustc --version | cut -d' ' -f1-2), candle $(lock_version candle-core), gemm $(lock_version gemm)"
    echo "- peers: $($torch_venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "+ transformers", transformers.__version__)' 2>/dev/null); $(TF_CPP_MIN_LOG_LEVEL=3 $tf_venv/bin/python -c 'import tensorflow as tf, importlib.metadata as md; print("tensorflow", tf.__version__, "+ protein-bert", md.version("protein-bert"))' 2>/dev/null)"
    echo "- threads: $threads each side; mode: $([ $quick = 1 ] && echo "quick ($rounds rounds, training $train_rounds, $proteins proteins)" || echo "full ($rounds rounds, training $train_rounds, $proteins proteins)"); $(date -u '+%Y-%m-%d %H:%M UTC')"
} > "$header"
cat "$header"
echo

# --- one call of one side: its JSON line, with the round (and peak memory) added ---
# call SIDE MEASUREMENT ROUND RSS(0/1) CMD…
call() {
    local side=$1 m=$2 round=$3 with_rss=$4
    shift 4
    local log=$tmp/$m.$side.$round.log start end
    local wrap=()
    [ "$with_rss" = 1 ] && [ -n "$gnu_time" ] && wrap=("$gnu_time" -v -o "$tmp/rss")
    rm -f "$tmp/rss"
    start=$EPOCHREALTIME
    if ! "${wrap[@]}" "$@" > "$log.out" 2> "$log"; then
        echo "!!! $m ($side) failed; the end of its output:" >&2
        tail -20 "$log" "$log.out" >&2
        failed+=("$m/$side")
        return 1
    fi
    end=$EPOCHREALTIME
    if python3 - "$log.out" "$round" "$start" "$end" "$tmp/rss" > "$tmp/record" <<'PY'
import json, os, re, sys
out, round_, start, end, rss = sys.argv[1:]
lines = [l for l in open(out) if l.startswith("{")]
if not lines:
    sys.exit("no JSON line in " + out)
r = json.loads(lines[-1])
r["round"] = int(round_)
r["process_seconds"] = float(end) - float(start)
if os.path.exists(rss):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(rss).read())
    if m:
        r["max_rss_kb"] = int(m.group(1))
print(json.dumps(r))
PY
    then
        cat "$tmp/record" >> "$results"
    else
        echo "!!! $m ($side) printed no JSON line; its output:" >&2
        tail -20 "$log" "$log.out" >&2
        failed+=("$m/$side")
        return 1
    fi
    python3 -c 'import json, sys; r = json.loads(open(sys.argv[1]).readlines()[-1]); print("  %-24s round %s %-10s %s s%s" % (r["measurement"], r["round"], r["side"], " ".join("%.4g" % s for s in r["seconds"]), " (max RSS %.2f GiB)" % (r["max_rss_kb"] / 2**20) if r.get("max_rss_kb") else ""))' "$results" >&2
}

# Our embed CLI: the whole process, timed here.
ours_embed() {
    local m=$1 model=$2 out=$3
    shift 3
    local start end
    start=$EPOCHREALTIME
    "$cli" embed --model "$model" --fasta "$fasta" --out "$out" "$@" >&2 || return 1
    end=$EPOCHREALTIME
    python3 -c 'import json, sys; print(json.dumps({"measurement": sys.argv[1], "side": "protein-lm", "impl": "protein-lm embed (whole process)", "seconds": [float(sys.argv[3]) - float(sys.argv[2])], "detail": {"proteins": int(sys.argv[4])}}))' "$m" "$start" "$end" "$proteins"
}
export -f ours_embed
export cli fasta proteins

compare() {  # same work: the two sides' embeddings of round 1
    $torch_venv/bin/python - "$1" "$2" "$3" >> "$results" <<'PY'
import json, sys
import numpy as np
m, a, b = sys.argv[1:]
x, y = np.load(a), np.load(b)
ids_same = open(a[:-4] + ".ids.txt").read() == open(b[:-4] + ".ids.txt").read()
if x.shape != y.shape:
    text = "%s: shapes differ, ours %s, peer %s" % (m, x.shape, y.shape)
else:
    d = np.abs(x - y)
    text = "%s: %d × %d, max |ours − peer| %.2g (largest |value| %.3g), ids %s" % (
        m, x.shape[0], x.shape[1], d.max(), np.abs(y).max(), "equal" if ids_same else "DIFFER")
print(json.dumps({"check": text}))
print(text, file=sys.stderr)
PY
}

peer_py() { case $1 in proberta-*|embed-proberta|matmul-limit) echo "$torch_venv/bin/python benches/peers/proberta_peer.py" ;;
                       *) echo "$tf_venv/bin/python benches/peers/proteinbert_peer.py" ;; esac; }

for m in "${only[@]}"; do
    echo "=== $m" >&2
    n=$rounds r_reps=$reps rss=0
    case $m in
        *train-step) n=$train_rounds r_reps=$train_reps rss=1 ;;
        matmul-*) r_reps=$mm_reps ;;
    esac
    for ((round = 1; round <= n; round++)); do
        if ((round % 2)); then order="ours peer"; else order="peer ours"; fi
        for side in $order; do
            if [[ $m == embed-* ]]; then
                model=$work/model-${m#embed-}
                out=$tmp/$m.$side.$round.npy
                extra=(); [ $m = embed-proberta ] && extra=(--long truncate)
                if [ $side = ours ]; then
                    call protein-lm "$m" $round 0 bash -c 'ours_embed "$@"' _ "$m" "$model" "$out" "${extra[@]}" || true
                else
                    call peer "$m" $round 0 $(peer_py $m) "$m" --json --model "$model" --fasta "$fasta" --out "$out" || true
                fi
            elif [ $side = ours ]; then
                call protein-lm "$m" $round $rss "$bench" "$m" --reps $r_reps --json || true
            else
                call peer "$m" $round $rss $(peer_py $m) "$m" --reps $r_reps --json || true
            fi
        done
        if [[ $m == embed-* ]] && [ $round = 1 ] && [ -f "$tmp/$m.ours.1.npy" ] && [ -f "$tmp/$m.peer.1.npy" ]; then
            compare "$m" "$tmp/$m.ours.1.npy" "$tmp/$m.peer.1.npy" || true
        fi
        rm -f "$tmp"/*.npy
    done
done

table=$tmp/table.md
python3 benches/peers/table.py "$results" > "$table"
{ cat "$header"; echo "- load at end: $(cut -d' ' -f1-3 /proc/loadavg)"; echo; cat "$table"; } > results/bench/peers.md
cp "$results" results/bench/peers.jsonl
echo "- load at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
cat "$table"
echo
echo "written: results/bench/peers.md, results/bench/peers.jsonl" >&2
if [ ${#failed[@]} -gt 0 ]; then
    echo "FAILED: ${failed[*]} (their logs were printed above)" >&2
    exit 1
fi

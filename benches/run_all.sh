#!/usr/bin/env bash
# Every benchmark of the crate and its Python peer in one run, on the same machine, one after the
# other (never in parallel: they would share the cores). Peers use OMP_NUM_THREADS=2, the same two
# cores rayon uses on the project's machine kind.
#
#   benches/run_all.sh            # full (k-means n_init 10 on both sides: several minutes, then the
#                                 # model paths' runner, ~25 minutes)
#   benches/run_all.sh --quick    # k-means n_init 1, and the model paths' runner in its quick mode
#
# The model paths (PRoBERTa and ProteinBERT forward, training step, embedding, matrix-product
# limits) against PyTorch and TensorFlow have their own runner, benches/peers/run.sh, called last:
# it alternates the two sides, repeats, and writes its table to results/bench/peers.md.
set -euo pipefail
cd "$(dirname "$0")/.."
quick="${1:-}"
benches/peers/setup_venv.sh
py=benches/peers/.venv/bin/python
export OMP_NUM_THREADS=2
cargo bench --no-run --quiet 2>/dev/null || cargo bench --no-run
echo "=== machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "=== protein-lm: analysis"
cargo bench --quiet --bench cluster -- $quick
cargo bench --quiet --bench metrics
cargo bench --quiet --bench probe
echo "=== scikit-learn $($py -c 'import sklearn; print(sklearn.__version__)') (OMP_NUM_THREADS=$OMP_NUM_THREADS)"
$py benches/peers/cluster_sklearn.py $quick
$py benches/peers/metrics_sklearn.py
echo "=== protein-lm: layers"
cargo bench --quiet --bench conv1d
echo "=== protein-lm: one PRoBERTa training update (demo size)"
cargo bench --quiet --bench train_step
tests/fixtures/optim/setup_venv.sh
tests/fixtures/optim/.venv/bin/python benches/peers/proberta_train_step.py
echo "=== model paths against PyTorch and TensorFlow (benches/peers/run.sh $quick)"
benches/peers/run.sh $quick

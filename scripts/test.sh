#!/usr/bin/env bash
# The project's test command: Rust tests, the notebook runner's self-test, then every notebook at
# tiny scale. Prints how long each step took; exits non-zero on the first failure.
#
#   scripts/test.sh                 # everything
#   CARGO_TEST_PROFILE=release scripts/test.sh   # cargo test --release instead of the test profile
#   SKIP_CARGO_TEST=1 scripts/test.sh            # only the notebook parts
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="${CARGO_HOME:-$HOME/.cargo}/bin:$PATH"

t_start=$(date +%s)
timings=()
log_dir=$(mktemp -d)
trap 'rm -rf "$log_dir"' EXIT
step() {
    local name="$1"; shift
    echo "=== [$name] $*"
    local t0; t0=$(date +%s)
    if ! "$@"; then
        echo "=== [$name] FAILED after $(( $(date +%s) - t0 )) s"
        exit 1
    fi
    local dt=$(( $(date +%s) - t0 ))
    timings+=("$(printf '%-22s %5d s' "$name" "$dt")")
    echo "=== [$name] ok in ${dt} s"
}

if [[ -z "${SKIP_CARGO_TEST:-}" ]]; then
    # --features polars: the DataFrame views are tested in the same build (one build, not two).
    if [[ "${CARGO_TEST_PROFILE:-dev}" == release ]]; then
        step "cargo test --release" bash -c 'set -o pipefail; cargo test --release --features polars 2>&1 | tee "$0/cargo.log"' "$log_dir"
    else
        # The dev/test profile already optimises the numeric crates (see Cargo.toml). Measured on 2
        # cores: cold build 139 s + tests 15 s, against 190 s + 5 s for --release; after a src edit
        # the release rebuild also costs ~40 s more. So plain `cargo test` is faster overall.
        step "cargo test" bash -c 'set -o pipefail; cargo test --features polars 2>&1 | tee "$0/cargo.log"' "$log_dir"
    fi
fi
step "notebook setup" python3 scripts/run_notebooks.py --setup-only
step "runner self-test" .venv/bin/python scripts/test_runner.py
step "notebooks (tiny)" .venv/bin/python scripts/run_notebooks.py --scale tiny

echo
echo "step times:"
printf '  %s\n' "${timings[@]}"
echo "  total                  $(( $(date +%s) - t_start )) s"
if [[ -f "$log_dir/cargo.log" ]]; then
    passed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) passed.*/\1/' | awk '{s+=$1} END {print s+0}')
    failed=$(grep -E '^test result:' "$log_dir/cargo.log" | sed -E 's/.* ([0-9]+) failed.*/\1/' | awk '{s+=$1} END {print s+0}')
    notebooks=$(find notebooks -name '*.ipynb' -not -path '*/.ipynb_checkpoints/*' | wc -l)
    echo
    echo "rust tests: ${passed} passed, ${failed} failed"
    echo "notebooks at tiny scale: ${notebooks} passed, 0 failed"
fi

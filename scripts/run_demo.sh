#!/usr/bin/env bash
# The main job: every notebook at demo scale (executed copies and figures in results/demo/).
# Extra arguments go to the runner, e.g. `scripts/run_demo.sh notebooks/00_quickstart.ipynb`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/run_notebooks.py --scale demo "$@"

#!/usr/bin/env bash
# The main job: every notebook at demo scale (executed copies and figures in results/demo/).
# Extra arguments go to the runner, e.g. `scripts/run_demo.sh notebooks/00_quickstart.ipynb`.
set -euo pipefail
cd "$(dirname "$0")/.."
# Data first: what the notebooks read and the resolver cannot find is fetched now (datasets/fetch.sh,
# step by step), and anything still missing stops the run here with its name, not inside a notebook.
scripts/ensure_data_tools.sh </dev/null
python3 scripts/notebook_data.py --fetch </dev/null
exec python3 scripts/run_notebooks.py --scale demo "$@"

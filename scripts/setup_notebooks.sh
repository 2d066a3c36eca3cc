#!/usr/bin/env bash
# Install what the notebooks need, skipping what is there: the .venv (jupyter, nbconvert, nbclient,
# ipykernel), evcxr_jupyter (`cargo install evcxr_jupyter --locked`, 15–30 min on 2 cores) and its `rust` kernelspec.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 scripts/run_notebooks.py --setup-only

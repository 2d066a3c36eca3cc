#!/usr/bin/env bash
# A venv for the Python peers of our benchmarks and fixture scripts (sentencepiece for the BPE
# comparison; numpy, scipy and scikit-learn for the analysis fixtures and timings). Python is needed
# only for these comparisons, never by the library or its tests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ -x "$here/.venv/bin/python" ] || python3 -m venv "$here/.venv"
"$here/.venv/bin/pip" install --quiet "sentencepiece==0.2.*" "numpy<3" "scipy==1.*" "scikit-learn==1.*"

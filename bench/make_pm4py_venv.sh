#!/usr/bin/env bash
# pm4py's own environment for bench/paths_bench.py (the path-analysis peer): it pins its own
# numpy/pandas/scipy, which must not leak into the project's venv. Nothing is added to pyproject.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-pm4py
# the repository's .gitignore does not list this folder: ignore it from inside (as Python 3.13's venv does)
echo '*' > .venv-pm4py/.gitignore
.venv-pm4py/bin/pip install -q pm4py pyarrow
.venv-pm4py/bin/python -c "import pm4py, pandas; print('pm4py', pm4py.__version__, 'pandas', pandas.__version__)"

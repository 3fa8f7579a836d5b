#!/usr/bin/env bash
# retentioneering's own environment for bench/paths_bench.py (the path-analysis peer): it pins its
# own pandas and DuckDB (DuckDB 2.x, which the project's Ibis pin rules out), which must not leak
# into the project's venv. Nothing is added to pyproject.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-rete
# the repository's .gitignore does not list this folder: ignore it from inside (as Python 3.13's venv does)
echo '*' > .venv-rete/.gitignore
.venv-rete/bin/pip install -q retentioneering pyarrow
.venv-rete/bin/python -c "import retentioneering, pandas; print('retentioneering', retentioneering.__version__, 'pandas', pandas.__version__)"

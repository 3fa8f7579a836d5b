#!/usr/bin/env bash
# PyMC-Marketing's own environment for bench/btyd_bench.py: it pins its own numpy/pandas/pytensor,
# which must not leak into the project's venv. Takes several minutes (pymc, pytensor, arviz...).
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-pymc
# the repository's .gitignore does not list this folder: ignore it from inside (as Python 3.13's venv does)
echo '*' > .venv-pymc/.gitignore
.venv-pymc/bin/pip install -q pymc-marketing
.venv-pymc/bin/python -c "import pymc_marketing, pymc; print('pymc-marketing', pymc_marketing.__version__, 'pymc', pymc.__version__)"

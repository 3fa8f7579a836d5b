#!/usr/bin/env bash
# The peers' own environment: lifetimes 0.11.3 cannot run on numpy 2 / pandas 2.
set -euo pipefail
cd "$(dirname "$0")"
python3 -m venv .venv-peers
.venv-peers/bin/pip install -q "lifetimes==0.11.3" "numpy<2" "pandas<2" "scipy<1.13" "pyarrow<20" autograd

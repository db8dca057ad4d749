#!/usr/bin/env bash
# Creates .venv with the PyPI torch wheel (the libtorch embedlab links to) and
# the .venv/torch link that .cargo/config.toml points LIBTORCH at.
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION=2.11.0
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
if ! .venv/bin/python -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$TORCH_VERSION' else 1)" 2>/dev/null; then
  echo "setup: installing torch==$TORCH_VERSION into .venv (about a minute)"
  .venv/bin/pip install --disable-pip-version-check -q "torch==$TORCH_VERSION"
fi
# numpy: torch's tensor<->array bridge, used by the reference benchmarks
.venv/bin/python -c "import numpy" 2>/dev/null || .venv/bin/pip install --disable-pip-version-check -q numpy
site=$(.venv/bin/python -c "import torch,os; print(os.path.dirname(torch.__file__))" 2>/dev/null)
ln -sfn "$site" .venv/torch
test -f .venv/torch/lib/libtorch.so || { echo "setup: $site/lib/libtorch.so missing" >&2; exit 1; }
echo "setup: libtorch $TORCH_VERSION at $site"

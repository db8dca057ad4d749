#!/usr/bin/env bash
# Creates the Python environment with the PyPI torch wheel (the libtorch
# embedlab links to) and the <venv>/torch link that .cargo/config.toml points
# LIBTORCH at. Idempotent: what is there and right is kept, what is missing
# or wrong is made.
#
# Overridable (the tests run the script against empty and partial states):
#   EMBEDLAB_VENV         the environment                  (default .venv)
#   EMBEDLAB_TORCH        the torch requirement            (default torch==2.11.0)
#   EMBEDLAB_PIP_ARGS     extra pip install arguments      (e.g. --no-index --find-links DIR)
#   EMBEDLAB_SETUP_NUMPY  0 to skip numpy and tensorboard (used only by the PyTorch reference
#                         benchmarks and by the test that reads TensorBoard files back)
#   PYTHON                the Python that makes the environment (default python3)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${EMBEDLAB_VENV:-.venv}
REQ=${EMBEDLAB_TORCH:-torch==2.11.0}
WANT=${REQ#*==}
PY=${PYTHON:-python3}
read -r -a PIP_ARGS <<<"${EMBEDLAB_PIP_ARGS:-}"
die() { echo "setup: $*" >&2; exit 1; }

command -v "$PY" >/dev/null || die "$PY not found: install Python 3 (Debian: apt-get install python3 python3-venv)"
if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $("$PY" --version 2>&1)"
  "$PY" -m venv "$VENV" || die "cannot create $VENV (Debian: apt-get install python3-venv)"
fi
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if torch.__version__.split('+')[0]=='$WANT' else 1)" 2>/dev/null; then
  echo "setup: installing $REQ into $VENV (the wheel is about 900 MB: a few minutes the first time)"
  "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PIP_ARGS[@]}" "$REQ" \
    || die "pip install $REQ failed (is PyPI reachable?)"
fi
if [ "${EMBEDLAB_SETUP_NUMPY:-1}" != 0 ]; then
  # numpy: torch's tensor<->array bridge, used by the PyTorch reference benchmarks
  "$VENV/bin/python" -c "import numpy" 2>/dev/null \
    || "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PIP_ARGS[@]}" numpy \
    || die "pip install numpy failed"
  # tensorboard: its event reader checks the event files every run writes
  "$VENV/bin/python" -c "import tensorboard" 2>/dev/null \
    || "$VENV/bin/python" -m pip install --disable-pip-version-check -q "${PIP_ARGS[@]}" tensorboard==2.21.0 \
    || die "pip install tensorboard failed"
fi
site=$("$VENV/bin/python" -c "import torch,os; print(os.path.dirname(torch.__file__))" 2>/dev/null) \
  || die "torch does not import in $VENV"
ln -sfn "$site" "$VENV/torch"
test -f "$VENV/torch/lib/libtorch.so" || die "$site/lib/libtorch.so missing: the torch install is incomplete (delete $VENV and rerun)"
echo "setup: libtorch $WANT at $site"

#!/usr/bin/env bash
# Builds the project's virtual environment on a fresh machine: Debian packages FFCV compiles against
# (as root; otherwise prints the one command to run), then the pinned Python packages.
set -euo pipefail
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
need_deb="pkg-config libopencv-dev libturbojpeg0-dev"
missing=""
for p in $need_deb; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing
  else
    echo "setup_env: FFCV needs Debian packages:$missing; run: sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi
# The Fashion-MNIST IDX files (make prep-fashion); optional: without them only that dataset is missing.
if ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q dataset-fashion-mnist; } \
      || echo "setup_env: dataset-fashion-mnist did not install; make prep-fashion needs it (or SRC=)" >&2
  else
    echo "setup_env: for Fashion-MNIST (make prep-fashion) run: sudo apt-get install -y dataset-fashion-mnist" >&2
  fi
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q -r requirements.txt
DS_BUILD_OPS=0 "$VENV/bin/python" -m pip install -q -r requirements-extra.txt
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
touch "$VENV/.installed"

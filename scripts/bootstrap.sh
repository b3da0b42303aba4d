#!/usr/bin/env bash
# Set up everything the pipeline needs on a fresh machine (Python 3.11, Debian):
#   - .venv with torch==2.13.0 (the CPU build pip finds on this machine) and the pinned stack;
#   - Debian's dataset-fashion-mnist (the official train/test split);
#   - Debian's chromium, which the tests use to render the HTML report headless.
# Re-running is cheap: a stamp of constraints.txt + pyproject.toml skips a current venv.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
stamp=".venv/.installed-$(cat constraints.txt pyproject.toml | sha256sum | cut -c1-16)"

# pip here warns once per package about an unused local index; show its output only on failure.
pip_install() {
  local log; log=$(mktemp)
  if ! .venv/bin/python -m pip install -q --disable-pip-version-check "$@" >"$log" 2>&1; then
    cat "$log"; rm -f "$log"; return 1
  fi
  grep -v "is ignored: it is neither a file nor a directory" "$log" || true
  rm -f "$log"
}

if [ ! -f "$stamp" ]; then
  echo "==> creating .venv and installing the pinned stack (about 2-3 minutes)"
  [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
  pip_install torch==2.13.0
  pip_install -c constraints.txt -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi

FMNIST=/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
missing=()
[ -f "$FMNIST" ] || missing+=(dataset-fashion-mnist)
command -v chromium >/dev/null || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian's ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

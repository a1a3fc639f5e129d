#!/usr/bin/env bash
# Create (or refresh) the project virtual environment in .venv; run by demo.sh and test.sh.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
EXTRAS=${1:-}
if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($PYTHON --version)" >&2
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
stamp=".venv/.rsir-installed${EXTRAS:+-$EXTRAS}"
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "installing rsir${EXTRAS:+[$EXTRAS]} and its dependencies into .venv (torch is large: a few minutes the first time)" >&2
    .venv/bin/python -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
    echo "$want" > "$stamp"
fi

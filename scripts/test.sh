#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv, then runs pytest.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not slow"   the quick part
#   ./scripts/test.sh tests/test_store.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-env.sh test
exec .venv/bin/python -m pytest "$@"

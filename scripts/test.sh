#!/usr/bin/env bash
# The whole test suite, on a fresh machine too: sets up .venv, then runs pytest.
#   ./scripts/test.sh                 everything
#   ./scripts/test.sh -m "not slow"   the quick part
#   ./scripts/test.sh tests/test_store.py -x
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-env.sh test
# System tools some tests need, where they are missing and apt can install them (else those tests
# skip and say why): strace for the crash-safety tests, Chromium for the HTML page in a real browser.
missing=()
command -v strace >/dev/null 2>&1 || missing+=(strace)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt) for the tests that need them" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}") >/dev/null 2>&1 \
        || echo "could not install ${missing[*]}; the tests that need them will skip" >&2
fi
exec .venv/bin/python -m pytest "$@"

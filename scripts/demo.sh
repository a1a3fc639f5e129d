#!/usr/bin/env bash
# The main job end to end, on a fresh machine too: sets up .venv, then runs `rsir demo`.
#   ./scripts/demo.sh                    real Prithvi-100M weights from Hugging Face
#   ./scripts/demo.sh --random-weights   offline smoke run (random weights, labelled as such)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup-env.sh
exec .venv/bin/rsir demo "$@"

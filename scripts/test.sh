#!/usr/bin/env bash
# The test command: sets up .venv if needed, then runs the whole suite (about 10 minutes on 2 CPU cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q "$@"

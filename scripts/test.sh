#!/usr/bin/env bash
# Runs the whole test suite (the README's test command calls this after installing).
set -euo pipefail
cd "$(dirname "$0")/.."
export GRADIO_ANALYTICS_ENABLED=False HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1
python3 -m ruff check .
python3 -m pytest -q "$@"

#!/usr/bin/env bash
# The whole test suite: lint, format, types, import layers, then every test (real links need root).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/bootstrap.sh
export PATH="$here/.venv/bin:$PATH"

echo "== ruff check"; ruff check src testlab tests benchmarks
echo "== ruff format --check"; ruff format --check src testlab tests benchmarks
echo "== mypy --strict"; mypy
echo "== import contracts (.importlinter, docs/architecture.md)"; lint-imports --no-cache --no-logo
echo "== pytest"; pytest "$@"

#!/usr/bin/env bash
# The end-to-end demo: build an example service profile, show its action plan, run its actions.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/bootstrap.sh
exec "$here/.venv/bin/python" -m opencm_lab.demo "$@"

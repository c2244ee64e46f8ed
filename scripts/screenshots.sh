#!/usr/bin/env bash
# Screenshots of the desktop client (docs/screenshots/, shown in the README), taken on a
# private Xvfb display: the Connections window, the logon dialog, the status pane while an
# action runs, the tray menu and the "Stay online?" question.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$here"
bash scripts/bootstrap.sh
out=${1:-docs/screenshots}
exec .venv/bin/python - "$out" <<'PY'
import subprocess, sys
from pathlib import Path
sys.path.insert(0, ".")
from tests.gui.xserver import xvfb
with xvfb("1280x900x24") as display:
    env = {**__import__("os").environ, "DISPLAY": display, "QT_QPA_PLATFORM": "xcb"}
    sys.exit(subprocess.run([sys.executable, "scripts/screenshots.py", sys.argv[1]], env=env).returncode)
PY

"""``python -m opencm_lab.demo``: the README's end-to-end demo (``./scripts/demo.sh``)."""

from __future__ import annotations

import sys

from opencm_lab.demo.story import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

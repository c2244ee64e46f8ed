"""``python -m opencm.demo``: the README's end-to-end demo (``./scripts/demo.sh``)."""

from __future__ import annotations

import sys

from opencm.demo.story import run

if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))

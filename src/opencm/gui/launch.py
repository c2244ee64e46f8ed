"""The ``opencm-gui`` entry point: a clear message, not a traceback, when Qt is not installed.

``opencm install`` writes a menu entry whose ``Exec`` is ``opencm-gui``, and the script exists
in every install of opencm, but the desktop client needs the optional extra ``opencm[gui]``
(PySide6). This module imports nothing of Qt until it knows Qt is there.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from opencm.errors import EXIT_PROBLEMS

MISSING_QT = (
    "opencm-gui: the desktop client needs PySide6, which is not installed: "
    "install opencm with its gui extra (pip install 'opencm[gui]'), "
    "or connect from a terminal with `opencm connect PROFILE`"
)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        from opencm.gui.app import main as run
    except ModuleNotFoundError as error:
        if not (error.name or "").startswith(("PySide6", "shiboken6")):
            raise
        print(MISSING_QT, file=sys.stderr)
        return EXIT_PROBLEMS
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m opencm.gui``: the same as ``opencm-gui``."""

import sys

from opencm.gui.app import main

sys.exit(main())

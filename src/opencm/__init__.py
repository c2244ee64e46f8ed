"""opencm: an open Connection Manager for Linux.

The engine is organised by part: ``profile`` (the .cms/.cmp/.inf files), ``actions`` (custom
actions), ``session`` (the connection state machine), ``links`` (dialers), ``phonebook`` (POP
phone books and their administrator), ``pbs`` (the Phone Book Service), ``kit`` (building and
installing service profiles) and ``cli`` (the thin command-line front).
"""

__version__ = "0.1.0"

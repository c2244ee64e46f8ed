"""The ``opencm`` command line: a thin front over the engine."""

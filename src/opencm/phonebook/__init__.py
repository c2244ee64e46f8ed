"""Phone books: MS-CPSP ``.pbk``/``.pbr`` files, opencm's version and delta files, cabinets,
releases, the administrator's workspace and the client-side update.

Module map: :mod:`pbk` and :mod:`pbr` (Microsoft's published formats), :mod:`versionfile` and
:mod:`delta` (opencm's own formats, ``docs/phonebook-formats.md``), :mod:`cabinet` (Microsoft
cabinet writer and a guarded reader), :mod:`release` (full + delta cabs, signed),
:mod:`update` (client apply), :mod:`workspace` (SQLite), :mod:`importer`, :mod:`limits`,
:mod:`post`,
:mod:`store` (the publish store the PBA posts into and the Phone Book Service reads).
"""

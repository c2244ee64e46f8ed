"""opencm's Connection Manager Administration Kit and the profile installer.

- :mod:`.spec` reads and writes ``kit.toml`` (docs/kit-spec.md), :mod:`.newkit` makes a kit
  folder from it, :mod:`.build` turns it into the ``.cmp``/``.cms``/``.inf`` in CMAK's shape,
  keeping hand edits (:mod:`.reconcile`) and merging component profiles (:mod:`.merge`);
- :mod:`.package` makes and verifies the signed self-installing package, :mod:`.install`
  installs, updates and removes it under the roots of :mod:`.roots`
  (docs/profile-package.md);
- :mod:`.logon` is the allow list for custom actions at logon/boot.
"""

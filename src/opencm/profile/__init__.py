"""Service-profile files (.cms, .cmp, .inf): lossless INI and the profile model on top."""

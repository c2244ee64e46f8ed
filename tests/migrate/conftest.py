"""The kit tests' isolated install roots, for the import → build → install chains."""

from tests.kit.conftest import roots

__all__ = ["roots"]

"""An installed plug-in distribution for tests: a ``.dist-info`` beside its module on a
``sys.path`` folder, which ``importlib.metadata`` finds exactly as it finds a ``pip install``-ed
package (entry points included)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path


def install_distribution(
    site: Path, name: str, modules: Mapping[str, str], entry_points: str
) -> Path:
    """Write ``modules`` (module name → source) and ``<name>-1.0.dist-info`` with
    ``entry_points`` (the text of ``entry_points.txt``) into ``site``; returns ``site``."""
    site.mkdir(exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    dist = site / f"{name.replace('-', '_')}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points)
    return site

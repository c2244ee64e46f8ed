"""The import contracts in ``.importlinter`` hold for the tree and break on a back-edge.

Each test copies the product and the lab into a temporary folder, plants one forbidden import
there and runs the real ``lint-imports`` on the copy: the command must fail and name the import.
The repository itself is checked by ``scripts/test.sh``; this proves that check can fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = ROOT / ".importlinter"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _copy_tree(into: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "src" / "opencm", into / "opencm", ignore=ignore)
    shutil.copytree(ROOT / "testlab" / "opencm_lab", into / "opencm_lab", ignore=ignore)
    shutil.copy(CONTRACTS, into / ".importlinter")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    # The copy comes first on the path, ahead of the editable installs of the real tree.
    env = {**os.environ, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(tree / ".importlinter")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _plant(module: Path, code: str) -> None:
    """Append ``code`` to ``module``, the way a careless change would add it."""
    before = module.read_text("utf-8") if module.exists() else ""
    module.write_text(before + "\n\n" + code + "\n", "utf-8")


def test_every_part_of_opencm_has_a_layer() -> None:
    # A module the layers contract does not name is not checked at all: a new top-level module
    # or package must be given its place.
    contract = CONTRACTS.read_text("utf-8")
    layers = contract.split("[importlinter:contract:layers]", 1)[1].split("\n[", 1)[0]
    named = {
        name.strip(" ()")
        for line in layers.split("layers =", 1)[1].splitlines()
        for name in line.split("|")
        if name.strip()
    }
    parts = {
        f"opencm.{entry.stem}"
        for entry in (ROOT / "src" / "opencm").iterdir()
        if (entry.suffix == ".py" and entry.stem not in ("__init__", "__main__"))
        or (entry.is_dir() and (entry / "__init__.py").exists())
    }
    assert parts - named == set()


def test_the_copied_tree_keeps_every_contract(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    done = _lint(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 3 kept, 0 broken." in done.stdout


def test_the_desktop_front_end_may_import_qt(tmp_path: Path) -> None:
    _copy_tree(tmp_path)
    gui = tmp_path / "opencm" / "gui"
    gui.mkdir(exist_ok=True)
    _plant(gui / "__init__.py", "import PySide6  # noqa: F401")
    _plant(gui / "window.py", "from PySide6 import QtWidgets  # noqa: F401")
    done = _lint(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("module", "code", "expected"),
    [
        # A back-edge hidden in a function: profile reaching up into the session.
        (
            "opencm/profile/model.py",
            "def _sneaky() -> object:\n"
            "    from opencm.session.protocol import default_socket_path\n\n"
            "    return default_socket_path()",
            "opencm.profile.model -> opencm.session.protocol",
        ),
        # The phone book importing the service that serves it.
        (
            "opencm/phonebook/post.py",
            "from opencm.pbs.catalog import BookTable as _BookTable  # noqa: E402",
            "opencm.phonebook.post -> opencm.pbs.catalog",
        ),
        # A base module importing a part.
        (
            "opencm/fsutil.py",
            "from opencm.profile.ini import IniFile as _IniFile  # noqa: E402",
            "opencm.fsutil -> opencm.profile.ini",
        ),
        # The desktop front end and the CLI are siblings: neither imports the other.
        (
            "opencm/testing.py",
            "from opencm.cli.main import main as _main  # noqa: E402",
            "opencm.testing -> opencm.cli.main",
        ),
        # Qt outside the desktop front end.
        (
            "opencm/session/status.py",
            "import PySide6  # noqa: E402,F401",
            "opencm.session.status -> PySide6",
        ),
        # The product importing its test lab.
        (
            "opencm/links/openvpn.py",
            "import opencm_lab.lab  # noqa: E402,F401",
            "opencm.links.openvpn -> opencm_lab.lab",
        ),
    ],
)
def test_a_planted_import_breaks_a_contract(
    tmp_path: Path, module: str, code: str, expected: str
) -> None:
    _copy_tree(tmp_path)
    _plant(tmp_path / module, code)
    done = _lint(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 broken" in done.stdout, done.stdout
    assert expected in done.stdout, done.stdout

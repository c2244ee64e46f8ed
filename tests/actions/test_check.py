"""``opencm.actions.check.check_profile``: the whole profile check for a library caller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.actions.conftest import make_profile

#: A fresh interpreter that imports nothing of opencm but the check and the profile loader: no
#: CLI module has run, so nothing could have registered the action checks behind its back.
PROBE = """
import json, sys
from opencm.actions.check import check_profile
from opencm.profile.model import load_profile
problems = check_profile(load_profile(sys.argv[1]))
print(json.dumps({
    "problems": [problem.as_json() for problem in problems],
    "cli_loaded": sorted(m for m in sys.modules if m.startswith("opencm.cli")),
}))
"""


def test_a_library_caller_gets_the_action_findings(tmp_path: Path) -> None:
    make_profile(
        tmp_path,
        {"Connect Actions": ["0=true", "2=true"]},
        extra="RedialCount=often\n[Connection Manager]\nRedialCount=3\n",
    )
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(tmp_path / "CONTOSO.cmp")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(done.stdout)
    assert answer["cli_loaded"] == []
    messages = [problem["message"] for problem in answer["problems"]]
    # The actions' share: the gap in [Connect Actions] hides action 2.
    assert any(m.startswith("[Connect Actions]") and "gap" in m for m in messages), messages
    # The files' share: a repeated section and a number that is not one.
    assert any("repeats the section" in m for m in messages), messages
    assert any("RedialCount" in m and "often" in m for m in messages), messages
    cms = str(tmp_path / "CONTOSO" / "CONTOSO.cms")
    assert all(problem["path"] == cms for problem in answer["problems"])
    lines = [problem["line"] or 0 for problem in answer["problems"]]
    assert lines == sorted(lines)

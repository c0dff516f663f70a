"""The public API is typed end to end: ``mypy --strict`` on a user's script (tests/typed)
sees the function's signature in calls and its return type through handles and results."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    pytest.importorskip("mypy")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_users_script_is_typed_end_to_end() -> None:
    done = mypy("tests/typed/usage.py")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Success" in done.stdout


def test_a_wrong_return_type_is_caught(tmp_path: Path) -> None:
    """The check can fail: a result used as the wrong type is an error."""
    script = tmp_path / "wrong.py"
    script.write_text(
        "import slurmscope\n"
        "@slurmscope.task\n"
        "def add(a: int, b: int) -> int:\n"
        "    return a + b\n"
        "text: str = add(1, 2).get_result()\n"
        "texts: list[str] = add.map([(1, 2)]).get_results()\n"
    )
    done = mypy(str(script))
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.count("error: Incompatible types in assignment") == 2, done.stdout

"""How the command fails: :class:`CliError`, and every failure reported the one way (a line
on stderr, ``{"error": ..., "exit_code": ...}`` on stdout under ``--json``)."""

from __future__ import annotations

import json
import sys


class CliError(Exception):
    """An error the command reports in one line (``code``: the exit status)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int, as_json: bool) -> int:
    """Report ``message`` as the command's one error line; return the exit status."""
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"slurmscope: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": line, "exit_code": code}))
    return code

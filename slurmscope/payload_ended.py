"""What a job directory records of how its tasks ended, and why a task has no result.

``ended/*.json`` holds final states (state, reason, exit code) as a driver or the CLI saw
the scheduler tell them: each file written once, atomically, by the process that saw tasks
end, and read once the scheduler has forgotten them (a task that ended without a result has
nothing else to tell). ``ended/missing-<id>`` says since when scheduler job ``<id>`` has
been missing from the scheduler's answers (LOST comes after a grace counted from there, in
any process).

The worker imports this module to say why an upstream task has no result: standard library
only, on plain path strings, and ``json`` only when a record is read or written.
"""

from __future__ import annotations

import os
import time

from .payload import RESULTS, atomic_write
from .payload_guard import dir_mode, make_dir

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    #: A final state as recorded: ``(state, reason, exit code)``.
    FinalState = tuple[str, str | None, str | None]
    Directory = str | os.PathLike[str]

ENDED = "ended"


def record_ended(directory: Directory, ended: dict[int, FinalState]) -> None:
    """Record final ``(state, reason, exit code)`` of tasks, as this process saw them: one
    new file per call, written atomically, so that concurrent recorders never lose each
    other's records and readers never see half a file."""
    if not ended:
        return
    import json

    groups: dict[FinalState, list[int]] = {}
    for index, key in sorted(ended.items()):
        groups.setdefault(key, []).append(index)
    data = {
        "by": {"host": os.uname().nodename, "pid": os.getpid()},
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "states": [
            {"state": s, "reason": r, "exit_code": e, "indices": indices}
            for (s, r, e), indices in groups.items()
        ],
    }
    folder = os.path.join(directory, ENDED)
    _make_folder(folder)
    name = f"{time.time_ns()}-{os.getpid()}-{os.urandom(3).hex()}.json"
    atomic_write(os.path.join(folder, name), json.dumps(data).encode() + b"\n")


def recorded_states(directory: Directory) -> dict[int, FinalState]:
    """Every final state recorded in ``directory``: ``{index: (state, reason, exit code)}``;
    the earliest record of a task wins."""
    import json

    folder = os.path.join(directory, ENDED)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".json") and n[0] != ".")
    except OSError:
        return {}
    found: dict[int, FinalState] = {}
    for name in names:
        try:
            with open(os.path.join(folder, name), "rb") as fh:
                data = json.loads(fh.read())
        except (OSError, ValueError):
            continue
        for group in data.get("states", []):
            key = (group["state"], group.get("reason"), group.get("exit_code"))
            for index in group.get("indices", []):
                found.setdefault(int(index), key)
    return found


def missing_since(directory: Directory, job_id: str) -> float:
    """Since when (``time.time()``) scheduler job ``job_id`` has been seen missing from the
    scheduler's answers: the first process to see it records the moment, later processes
    read it."""
    path = os.path.join(directory, ENDED, f"missing-{job_id}")
    try:
        with open(path) as fh:
            return float(fh.read())
    except (OSError, ValueError):
        pass
    now = time.time()
    try:
        _make_folder(os.path.dirname(path))
        atomic_write(path, repr(now).encode())
    except OSError:
        pass
    return now


def forget_missing(directory: Directory, job_id: str) -> None:
    """The scheduler knows job ``job_id`` again: drop the note of :func:`missing_since`."""
    try:  # noqa: SIM105 - contextlib is one import more for every task
        os.unlink(os.path.join(directory, ENDED, f"missing-{job_id}"))
    except OSError:
        pass


def _make_folder(folder: str) -> None:
    """``folder`` in a job directory that exists (``OSError`` if it was removed), as
    private as the job directory (:func:`payload_guard.dir_mode`)."""
    if os.path.isdir(folder):
        return
    shared = bool(os.stat(os.path.dirname(folder)).st_mode & 0o050)
    try:  # noqa: SIM105 - contextlib is one import more for every task
        make_dir(folder, dir_mode(shared))
    except FileExistsError:
        pass


def describe_ended(ended: FinalState) -> str:
    """``("TIMEOUT", "TimeLimit", "0:15")`` -> ``"TIMEOUT (TimeLimit, exit code 0:15)"``."""
    state, reason, exit_code = ended
    details = [reason] if reason is not None and reason not in ("", "None") else []
    if exit_code not in (None, "", "0", "0:0"):
        details.append(f"exit code {exit_code}")
    return f"{state} ({', '.join(details)})" if details else state


def why_no_value(directory: Directory, index: int, outcome: dict[str, Any] | None) -> str:
    """Why task ``index`` has no value, given its outcome (``None``: no outcome file): it
    raised, it ended without a result (as recorded), its directory was removed, or it has
    not ended (as far as anyone saw)."""
    if outcome is not None:
        return f"it raised {outcome['type']}: {outcome['message']}"
    if not os.path.isdir(directory):
        return (
            "its job directory was removed (by `slurmscope clean --force`, or by hand); "
            "run that job again"
        )
    if not os.path.isdir(os.path.join(directory, RESULTS)):
        return "its results directory was removed; run that job again"
    ended = recorded_states(directory).get(index)
    if ended is not None:
        return f"it ended {describe_ended(ended)} without writing a result"
    return "it has not ended, as far as its job directory tells"

"""The job directory on the shared filesystem, as the driver and the CLI see it.

Layout of one submission's directory::

    manifest.json     what was submitted, its scheduler ids and the provenance of
                      every dependency (JSON, rewritten atomically)
    function.pkl      the payload, written once before the submission and read by the
    driver.pkl        worker inside every job (see slurmscope.payload)
    items.bin
    items.idx
    results/<i>.pkl   the outcome of task i, written atomically by the worker
    ended/*.json      final states (state, reason, exit code) as a driver or the CLI saw
                      the scheduler tell them: each file written once, atomically, by the
                      process that saw tasks end; read once the scheduler has forgotten
                      them (a task that ended without a result has nothing else to tell)
    ended/missing-<id>  since when scheduler job <id> has been missing from its answers
                      (LOST comes after a grace counted from there, in any process)
    logs/             the scheduler's stdout/stderr files

and, beside the submissions, ``by-id/<cluster>/<job id>``: a symbolic link from each
scheduler job id to its directory (:meth:`JobDirectory.register_id`, :meth:`JobDirectory.find`).

Standard library only, like the worker (which imports this module only to say why an
upstream task has no result).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from array import array
from collections.abc import Iterable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .payload import (
    DRIVER,
    FUNCTION,
    INDEX,
    ITEMS,
    RESULTS,
    atomic_write,
    dumps,
    read_outcome,
    result_file,
)

if TYPE_CHECKING:
    from .origin import DriverInfo

MANIFEST = "manifest.json"
LOGS = "logs"
ENDED = "ended"
BY_ID = "by-id"

#: How an outcome pickle (protocol 5) starts its first key, "ok"; the next opcode is
#: NEWTRUE (0x88) or NEWFALSE (0x89). See :meth:`JobDirectory.outcome_ok`.
_OK_KEY = b"\x8c\x02ok\x94"
#: How many bytes of an outcome file :meth:`JobDirectory.outcome_ok` reads first.
_OUTCOME_HEAD = 64

#: A final state as recorded in ``ended/``: ``(state, reason, exit code)``.
FinalState = tuple[str, str | None, str | None]


class JobDirectory:
    """One submission's directory. Cheap to construct; nothing is read until asked."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, name: str) -> JobDirectory:
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
        path = root / f"{stamp}-{safe}-{os.urandom(4).hex()}"
        path.mkdir()
        (path / RESULTS).mkdir()
        (path / LOGS).mkdir()
        return cls(path)

    def write_payload(
        self, function: bytes, items: Iterable[bytes], driver: DriverInfo | None = None
    ) -> int:
        """Write the function and the items with their offset index, and what the driver
        recorded for the worker (plain data); returns the number of items."""
        items = items if isinstance(items, list) else list(items)
        (self.path / FUNCTION).write_bytes(function)
        if driver is not None:
            (self.path / DRIVER).write_bytes(dumps(driver, protocol=5))
        (self.path / ITEMS).write_bytes(b"".join(items))
        offsets = array("Q", [0])  # a packed buffer, not a list of ints: 8 bytes per item
        offsets.extend(accumulate(map(len, items)))
        if sys.byteorder == "big":
            offsets.byteswap()  # the index is little-endian
        (self.path / INDEX).write_bytes(offsets.tobytes())
        return len(items)

    # -- results ---------------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    def finished(self) -> list[int]:
        """Indices of the tasks whose outcome file exists: one directory listing."""
        indices = []
        for name in os.listdir(self.path / RESULTS):
            stem, _, ext = name.partition(".")  # "12.pkl"; temporary files start with "."
            if ext == "pkl" and stem.isdigit():
                indices.append(int(stem))
        return indices

    def outcome_ok(self, index: int) -> bool | None:
        """Whether task ``index`` succeeded, from its outcome file (``None``: no file yet).

        Reads only the head of the file when it can: the outcome dict's first key is
        ``"ok"``, so a large result need not be loaded to know that it is one.
        """
        try:
            with open(result_file(str(self.path), index), "rb") as fh:
                head = fh.read(_OUTCOME_HEAD)
        except FileNotFoundError:
            return None
        at = head.find(_OK_KEY) + len(_OK_KEY)
        if head.startswith(b"\x80") and len(_OK_KEY) <= at < len(head):
            if head[at] == 0x88:
                return True
            if head[at] == 0x89:
                return False
        outcome = self.read_outcome(index)  # another pickle layout: read it whole
        return None if outcome is None else bool(outcome["ok"])

    def read_outcome(self, index: int) -> dict[str, Any] | None:
        """The outcome of task ``index``, or ``None`` (see :func:`payload.read_outcome`)."""
        return read_outcome(str(self.path), index)

    def why_no_value(self, index: int, outcome: dict[str, Any] | None) -> str:
        """Why task ``index`` has no value: it raised, it ended without a result (as
        recorded), its directory was removed, or it has not ended (as far as anyone saw)."""
        if outcome is not None:
            return f"it raised {outcome['type']}: {outcome['message']}"
        if not os.path.isdir(self.path):
            return (
                "its job directory was removed (by `slurmscope clean --force`, or by hand); "
                "run that job again"
            )
        if not os.path.isdir(self.results_dir):
            return "its results directory was removed; run that job again"
        ended = self.recorded_states().get(index)
        if ended is not None:
            return f"it ended {describe_ended(ended)} without writing a result"
        return "it has not ended, as far as its job directory tells"

    # -- final states seen by a driver or the CLI ------------------------------------------
    def record_ended(self, ended: dict[int, FinalState]) -> None:
        """Record final ``(state, reason, exit code)`` of tasks, as this process saw them:
        one new file per call, written atomically, so that concurrent recorders never lose
        each other's records and readers never see half a file."""
        if not ended:
            return
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
        folder = self.path / ENDED
        folder.mkdir(exist_ok=True)
        name = f"{time.time_ns()}-{os.getpid()}-{os.urandom(3).hex()}.json"
        atomic_write(folder / name, json.dumps(data).encode() + b"\n")

    def missing_since(self, job_id: str) -> float:
        """Since when (``time.time()``) scheduler job ``job_id`` has been seen missing from
        the scheduler's answers: the first process to see it records the moment, later
        processes read it."""
        path = self.path / ENDED / f"missing-{job_id}"
        try:
            return float(path.read_text())
        except (OSError, ValueError):
            pass
        now = time.time()
        try:
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, repr(now).encode())
        except OSError:
            pass
        return now

    def forget_missing(self, job_id: str) -> None:
        """The scheduler knows job ``job_id`` again: drop the note of :meth:`missing_since`."""
        with contextlib.suppress(OSError):
            os.unlink(self.path / ENDED / f"missing-{job_id}")

    def recorded_states(self) -> dict[int, FinalState]:
        """Every final state recorded in this directory: ``{index: (state, reason, exit
        code)}``; the earliest record of a task wins."""
        try:
            names = sorted(
                n for n in os.listdir(self.path / ENDED) if n.endswith(".json") and n[0] != "."
            )
        except OSError:
            return {}
        found: dict[int, FinalState] = {}
        for name in names:
            try:
                data = json.loads((self.path / ENDED / name).read_bytes())
            except (OSError, ValueError):
                continue
            for group in data.get("states", []):
                key = (group["state"], group.get("reason"), group.get("exit_code"))
                for index in group.get("indices", []):
                    found.setdefault(int(index), key)
        return found

    # -- manifest --------------------------------------------------------------------------
    def write_manifest(
        self, manifest: dict[str, Any], *, dependencies: Sequence[str] | None = None
    ) -> None:
        """Write the manifest; ``dependencies``, if given, is its ``"dependencies"`` list
        with every entry already encoded as JSON text (each is encoded once, however many
        submissions list it)."""
        # One line: json's fast C encoder only runs without ``indent``. ``jq .`` shows it.
        text = json.dumps(manifest, sort_keys=True, default=str)
        if dependencies is not None:
            comma = ", " if manifest else ""
            text = f'{text[:-1]}{comma}"dependencies": [{", ".join(dependencies)}]}}'
        atomic_write(self.path / MANIFEST, text.encode() + b"\n")

    def read_manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        return data

    # -- lookup by scheduler id ------------------------------------------------------------
    def register_id(self, root: Path, cluster_name: str, job_id: str) -> None:
        """Link ``by-id/<cluster_name>/<job_id>`` under ``root`` to this directory."""
        folder = root / BY_ID / cluster_name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / job_id
        tmp = folder / f".{job_id}.{os.urandom(4).hex()}"
        os.symlink(os.path.relpath(self.path, folder), tmp)
        os.replace(tmp, link)

    @staticmethod
    def find(root: Path, cluster_name: str, job_id: str) -> JobDirectory | None:
        """The directory of scheduler job ``job_id`` (or ``id_index``); ``None`` if none is
        registered. ``ValueError`` when ``job_id`` is not a job id."""
        link = root / BY_ID / cluster_name / split_job_id(job_id)[0]
        if not link.exists():
            return None
        return JobDirectory(link.resolve())


def split_job_id(text: str) -> tuple[str, int | None]:
    """``"12"`` -> ``("12", None)``, ``"12_3"`` -> ``("12", 3)``; ``ValueError`` for anything
    else (a job id is digits; an array task adds ``_`` and its index, digits too)."""
    job_id, sep, index = text.strip().partition("_")
    if not (job_id.isascii() and job_id.isdigit()) or (
        sep and not (index.isascii() and index.isdigit())
    ):
        raise ValueError(
            f"{text!r} is not a job id: give JOBID or JOBID_INDEX (such as 4270 or 4270_3), "
            "or a job directory"
        )
    return job_id, int(index) if sep else None


def describe_ended(ended: FinalState) -> str:
    """``("TIMEOUT", "TimeLimit", "0:15")`` -> ``"TIMEOUT (TimeLimit, exit code 0:15)"``."""
    state, reason, exit_code = ended
    details = [reason] if reason is not None and reason not in ("", "None") else []
    if exit_code not in (None, "", "0", "0:0"):
        details.append(f"exit code {exit_code}")
    return f"{state} ({', '.join(details)})" if details else state

"""The job directory on the shared filesystem.

Layout of one submission's directory::

    manifest.json     what was submitted, its scheduler ids and the provenance of
                      every dependency (JSON, rewritten atomically)
    function.pkl      the cloudpickled function, once
    driver.pkl        what the worker needs to see what the driver saw: its sys.path and
                      the source files of functions shipped by value (slurmscope.origin)
    items.bin         every item's pickled (args, kwargs), one after the other
    items.idx         little-endian uint64 offsets: item i is items.bin[idx[i]:idx[i+1]]
    results/<i>.pkl   the outcome of task i, written atomically (temp file + rename)
    ended/*.json      final states (state, reason, exit code) as a driver or the CLI saw
                      the scheduler tell them: each file written once, atomically, by the
                      process that saw tasks end; read once the scheduler has forgotten
                      them (a task that ended without a result has nothing else to tell)
    ended/missing-<id>  since when scheduler job <id> has been missing from its answers
                      (LOST comes after a grace counted from there, in any process)
    logs/             the scheduler's stdout/stderr files

This module is imported by the worker inside every job: standard library only, and only
the cheap parts of it (no ``pathlib``, ``dataclasses``, ``typing``, ``secrets`` or ``json``
at import; the worker reads and writes through the functions on plain path strings),
because every task of every map pays for each import.
"""

from __future__ import annotations

import os
import struct
import sys
import time
from itertools import accumulate

try:  # the C pickler that ``pickle`` re-exports, without the ``re`` & co. ``pickle`` imports
    from _pickle import dumps as _dumps
    from _pickle import loads as _loads
except ImportError:  # pragma: no cover - not CPython
    from pickle import dumps as _dumps
    from pickle import loads as _loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path
    from typing import Any

MANIFEST = "manifest.json"
FUNCTION = "function.pkl"
DRIVER = "driver.pkl"
ITEMS = "items.bin"
INDEX = "items.idx"
RESULTS = "results"
LOGS = "logs"
ENDED = "ended"
BY_ID = "by-id"

_OFFSET = struct.Struct("<Q")
#: How an outcome pickle (protocol 5) starts its first key, "ok"; the next opcode is
#: NEWTRUE (0x88) or NEWFALSE (0x89). See :meth:`JobDirectory.outcome_ok`.
_OK_KEY = b"\x8c\x02ok\x94"
_HEAD = 64


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 - contextlib is one import more for every task
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


# -- what the worker does, on plain path strings (no pathlib) ----------------------------------
def read_function(directory: str) -> bytes:
    with open(os.path.join(directory, FUNCTION), "rb") as fh:
        return fh.read()


def read_driver(directory: str) -> dict[str, Any] | None:
    """What the driver recorded for the worker (``None`` for a job directory without it)."""
    try:
        with open(os.path.join(directory, DRIVER), "rb") as fh:
            info: dict[str, Any] = _loads(fh.read())
    except FileNotFoundError:
        return None
    return info


def read_item(directory: str, index: int) -> bytes:
    """Item ``index`` alone: two offsets and one slice, whatever the number of items."""
    with open(os.path.join(directory, INDEX), "rb") as fh:
        fh.seek(index * _OFFSET.size)
        raw = fh.read(2 * _OFFSET.size)
    if len(raw) != 2 * _OFFSET.size:
        raise IndexError(f"item {index} is not in {directory}")
    start, end = _OFFSET.unpack_from(raw, 0)[0], _OFFSET.unpack_from(raw, _OFFSET.size)[0]
    with open(os.path.join(directory, ITEMS), "rb") as fh:
        fh.seek(start)
        return fh.read(end - start)


def result_file(directory: str, index: int) -> str:
    return os.path.join(directory, RESULTS, f"{index}.pkl")


def write_outcome(directory: str, index: int, outcome: dict[str, Any]) -> None:
    atomic_write(result_file(directory, index), _dumps(outcome, protocol=5))


class ResultRef:
    """Stands in an item for a job handle: the worker replaces it with that job's result.

    ``index`` is the task's index; ``size`` is set for a whole array, whose results arrive
    as a list in item order. Immutable. (A plain class rather than a dataclass: the worker
    imports this module, and ``dataclasses`` costs every task milliseconds to import.)
    """

    directory: str
    index: int
    size: int | None

    def __init__(self, directory: str, index: int = 0, size: int | None = None) -> None:
        self.__dict__.update(directory=directory, index=index, size=size)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ResultRef is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ResultRef is immutable: cannot delete {name!r}")

    def _key(self) -> tuple[str, int, int | None]:
        return (self.directory, self.index, self.size)

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ResultRef(directory={self.directory!r}, index={self.index!r}, size={self.size!r})"

    def load(self) -> Any:
        jobdir = JobDirectory(self.directory)
        if self.size is None:
            return jobdir.load_value(self.index)
        return [jobdir.load_value(i) for i in range(self.size)]


class UpstreamFailedError(RuntimeError):
    """Raised in a worker when a job it takes data from has no result."""


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


class JobDirectory:
    """One submission's directory. Cheap to construct; nothing is read until asked."""

    def __init__(self, path: Path | str) -> None:
        from pathlib import Path  # not at module level: the worker never needs it

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
        self, function: bytes, items: Iterable[bytes], driver: dict[str, Any] | None = None
    ) -> int:
        """Write the function and the items with their offset index, and what the driver
        recorded for the worker (plain data); returns the number of items."""
        items = items if isinstance(items, list) else list(items)
        (self.path / FUNCTION).write_bytes(function)
        if driver is not None:
            (self.path / DRIVER).write_bytes(_dumps(driver, protocol=5))
        (self.path / ITEMS).write_bytes(b"".join(items))
        from array import array  # a packed buffer, not a list of ints: 8 bytes per item

        offsets = array("Q", [0])
        offsets.extend(accumulate(map(len, items)))
        if sys.byteorder == "big":
            offsets.byteswap()  # the index is little-endian
        (self.path / INDEX).write_bytes(offsets.tobytes())
        return len(items)

    # -- reading the payload (worker side) -------------------------------------------------
    def read_function_bytes(self) -> bytes:
        return read_function(str(self.path))

    def read_item_bytes(self, index: int) -> bytes:
        """Item ``index`` alone: two offsets and one slice, whatever the number of items."""
        return read_item(str(self.path), index)

    def item_count(self) -> int:
        return (self.path / INDEX).stat().st_size // _OFFSET.size - 1

    # -- results ---------------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    def result_path(self, index: int) -> Path:
        return self.path / RESULTS / f"{index}.pkl"

    def write_outcome(self, index: int, outcome: dict[str, Any]) -> None:
        write_outcome(str(self.path), index, outcome)

    def has_outcome(self, index: int) -> bool:
        return self.result_path(index).exists()

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
            with open(self.result_path(index), "rb") as fh:
                head = fh.read(_HEAD)
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
        """The outcome of task ``index`` (``{"ok": True, "value": ...}`` or
        ``{"ok": False, "type", "message", "traceback", "exception"}``), or ``None``."""
        try:
            data = self.result_path(index).read_bytes()
        except FileNotFoundError:
            return None
        outcome: dict[str, Any] = _loads(data)
        return outcome

    def load_value(self, index: int) -> Any:
        outcome = self.read_outcome(index)
        if outcome is None or not outcome["ok"]:
            raise UpstreamFailedError(
                f"task {index} of {self.path} has no result: {self.why_no_value(index, outcome)}"
            )
        return outcome["value"]

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
    def record_ended(self, ended: dict[int, tuple[str, str | None, str | None]]) -> None:
        """Record final ``(state, reason, exit code)`` of tasks, as this process saw them:
        one new file per call, written atomically, so that concurrent recorders never lose
        each other's records and readers never see half a file."""
        if not ended:
            return
        import json

        groups: dict[tuple[str, str | None, str | None], list[int]] = {}
        for index, key in sorted(ended.items()):
            groups.setdefault(key, []).append(index)
        data = {
            "by": {"host": _hostname(), "pid": os.getpid()},
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
        try:  # noqa: SIM105 - contextlib is one import more for every task
            os.unlink(self.path / ENDED / f"missing-{job_id}")
        except OSError:
            pass

    def recorded_states(self) -> dict[int, tuple[str, str | None, str | None]]:
        """Every final state recorded in this directory: ``{index: (state, reason, exit
        code)}``; the earliest record of a task wins."""
        import json

        try:
            names = sorted(
                n for n in os.listdir(self.path / ENDED) if n.endswith(".json") and n[0] != "."
            )
        except OSError:
            return {}
        found: dict[int, tuple[str, str | None, str | None]] = {}
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
        import json  # not at module level: the worker never needs it

        # One line: json's fast C encoder only runs without ``indent``. ``jq .`` shows it.
        text = json.dumps(manifest, sort_keys=True, default=str)
        if dependencies is not None:
            comma = ", " if manifest else ""
            text = f'{text[:-1]}{comma}"dependencies": [{", ".join(dependencies)}]}}'
        atomic_write(self.path / MANIFEST, text.encode() + b"\n")

    def read_manifest(self) -> dict[str, Any]:
        import json

        data: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        return data

    # -- lookup by scheduler id ------------------------------------------------------------
    def register_id(self, root: Path, cluster_name: str, job_id: str) -> None:
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


def describe_ended(ended: tuple[str, str | None, str | None]) -> str:
    """``("TIMEOUT", "TimeLimit", "0:15")`` -> ``"TIMEOUT (TimeLimit, exit code 0:15)"``."""
    state, reason, exit_code = ended
    details = [reason] if reason not in (None, "", "None") else []
    if exit_code not in (None, "", "0", "0:0"):
        details.append(f"exit code {exit_code}")
    return f"{state} ({', '.join(details)})" if details else state


def _hostname() -> str:
    return os.uname().nodename

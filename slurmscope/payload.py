"""The job directory on the shared filesystem.

Layout of one submission's directory::

    manifest.json     what was submitted, its scheduler ids and the provenance of
                      every dependency (JSON, rewritten atomically)
    function.pkl      the cloudpickled function, once
    items.bin         every item's pickled (args, kwargs), one after the other
    items.idx         little-endian uint64 offsets: item i is items.bin[idx[i]:idx[i+1]]
    results/<i>.pkl   the outcome of task i, written atomically (temp file + rename)
    logs/             the scheduler's stdout/stderr files

This module is imported by the worker inside every job: standard library only.
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST = "manifest.json"
FUNCTION = "function.pkl"
ITEMS = "items.bin"
INDEX = "items.idx"
RESULTS = "results"
LOGS = "logs"
BY_ID = "by-id"

_OFFSET = struct.Struct("<Q")


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class ResultRef:
    """Stands in an item for a job handle: the worker replaces it with that job's result.

    ``index`` is the task's index; ``size`` is set for a whole array, whose results arrive
    as a list in item order.
    """

    directory: str
    index: int = 0
    size: int | None = None

    def load(self) -> Any:
        jobdir = JobDirectory(Path(self.directory))
        if self.size is None:
            return jobdir.load_value(self.index)
        return [jobdir.load_value(i) for i in range(self.size)]


class UpstreamFailedError(RuntimeError):
    """Raised in a worker when a job it takes data from has no result."""


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
        path = root / f"{stamp}-{safe}-{secrets.token_hex(4)}"
        path.mkdir()
        (path / RESULTS).mkdir()
        (path / LOGS).mkdir()
        return cls(path)

    def write_payload(self, function: bytes, items: Iterable[bytes]) -> int:
        """Write the function and the items with their offset index; returns the count."""
        (self.path / FUNCTION).write_bytes(function)
        offsets = [0]
        with open(self.path / ITEMS, "wb") as fh:
            for blob in items:
                fh.write(blob)
                offsets.append(offsets[-1] + len(blob))
        (self.path / INDEX).write_bytes(b"".join(_OFFSET.pack(o) for o in offsets))
        return len(offsets) - 1

    # -- reading the payload (worker side) -------------------------------------------------
    def read_function_bytes(self) -> bytes:
        return (self.path / FUNCTION).read_bytes()

    def read_item_bytes(self, index: int) -> bytes:
        """Item ``index`` alone: two offsets and one slice, whatever the number of items."""
        with open(self.path / INDEX, "rb") as fh:
            fh.seek(index * _OFFSET.size)
            raw = fh.read(2 * _OFFSET.size)
        if len(raw) != 2 * _OFFSET.size:
            raise IndexError(f"item {index} is not in {self.path}")
        start, end = _OFFSET.unpack_from(raw, 0)[0], _OFFSET.unpack_from(raw, _OFFSET.size)[0]
        with open(self.path / ITEMS, "rb") as fh:
            fh.seek(start)
            return fh.read(end - start)

    def item_count(self) -> int:
        return (self.path / INDEX).stat().st_size // _OFFSET.size - 1

    # -- results ---------------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    def result_path(self, index: int) -> Path:
        return self.path / RESULTS / f"{index}.pkl"

    def write_outcome(self, index: int, outcome: dict[str, Any]) -> None:
        atomic_write(self.result_path(index), pickle.dumps(outcome, protocol=5))

    def has_outcome(self, index: int) -> bool:
        return self.result_path(index).exists()

    def read_outcome(self, index: int) -> dict[str, Any] | None:
        """The outcome of task ``index`` (``{"ok": True, "value": ...}`` or
        ``{"ok": False, "type", "message", "traceback", "exception"}``), or ``None``."""
        try:
            data = self.result_path(index).read_bytes()
        except FileNotFoundError:
            return None
        outcome: dict[str, Any] = pickle.loads(data)
        return outcome

    def load_value(self, index: int) -> Any:
        outcome = self.read_outcome(index)
        if outcome is None or not outcome["ok"]:
            raise UpstreamFailedError(
                f"task {index} of {self.path} has no result "
                f"({'not finished' if outcome is None else outcome['type']})"
            )
        return outcome["value"]

    # -- manifest --------------------------------------------------------------------------
    def write_manifest(self, manifest: dict[str, Any]) -> None:
        data = json.dumps(manifest, indent=1, sort_keys=True, default=str).encode()
        atomic_write(self.path / MANIFEST, data)

    def read_manifest(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / MANIFEST).read_text())
        return data

    # -- lookup by scheduler id ------------------------------------------------------------
    def register_id(self, root: Path, cluster_name: str, job_id: str) -> None:
        folder = root / BY_ID / cluster_name
        folder.mkdir(parents=True, exist_ok=True)
        link = folder / job_id
        tmp = folder / f".{job_id}.{secrets.token_hex(4)}"
        os.symlink(os.path.relpath(self.path, folder), tmp)
        os.replace(tmp, link)

    @staticmethod
    def find(root: Path, cluster_name: str, job_id: str) -> JobDirectory | None:
        link = root / BY_ID / cluster_name / job_id.split("_")[0]
        if not link.exists():
            return None
        return JobDirectory(link.resolve())

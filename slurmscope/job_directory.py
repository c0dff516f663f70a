"""The job directory on the shared filesystem, as the driver and the CLI see it.

Layout of one submission's directory::

    manifest.json     what was submitted, its scheduler ids and the provenance of
                      every dependency (JSON, rewritten atomically)
    function.pkl      the payload, written once before the submission and read by the
    driver.pkl        worker inside every job (see slurmscope.payload)
    items.bin
    items.idx
    results/<i>.pkl   the outcome of task i, written atomically by the worker
    ended/            how tasks ended, as a driver or the CLI saw the scheduler tell it
                      (see slurmscope.payload_ended)
    logs/             the scheduler's stdout/stderr files

and, beside the submissions, ``by-id/<cluster>/<job id>``: a symbolic link from each
scheduler job id to its directory (:meth:`JobDirectory.register_id`, :meth:`JobDirectory.find`).

Standard library only, as all of the job directory layer; the worker does not import it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import accumulate
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import payload_ended, payload_guard
from .errors import UnsafeJobDirectoryError
from .payload import (
    CANCELLED,
    DRIVER,
    FUNCTION,
    INDEX,
    ITEM_CHECKS,
    ITEMS,
    RESULTS,
    atomic_write,
    dumps,
    read_outcome,
    result_file,
    write_new,
)

if TYPE_CHECKING:
    from .origin import DriverInfo
    from .payload_ended import FinalState

MANIFEST = "manifest.json"
LOGS = "logs"
BY_ID = "by-id"

#: How an outcome pickle (protocol 5) starts its first key, "ok"; the next opcode is
#: NEWTRUE (0x88) or NEWFALSE (0x89). See :meth:`JobDirectory.outcome_ok`.
_OK_KEY = b"\x8c\x02ok\x94"
#: How many bytes of an outcome file :meth:`JobDirectory.outcome_ok` reads first.
_OUTCOME_HEAD = 64


class PackedItems:
    """A map's pickled items already laid out as ``items.bin`` and ``items.idx`` hold them:
    their bytes end to end and the offset of each (8 bytes an item). A million items cost
    the bytes themselves, not a million ``bytes`` objects (about 50 bytes of overhead each).
    """

    def __init__(self) -> None:
        self.data = bytearray()
        self.offsets = array("Q", [0])
        #: Size of the largest item, in bytes.
        self.largest = 0

    def extend(self, blobs: list[bytes]) -> None:
        """Append items (a chunk of them: their list is dropped by the caller)."""
        sizes = list(map(len, blobs))
        if sizes:
            self.largest = max(self.largest, max(sizes))
        ends = accumulate(sizes, initial=len(self.data))
        next(ends)  # ``initial``: the last offset already in the index
        self.offsets.extend(ends)
        self.data += b"".join(blobs)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def size(self, index: int) -> int:
        return self.offsets[index + 1] - self.offsets[index]

    def first_over(self, limit: int) -> int:
        """The index of the first item larger than ``limit`` bytes (-1: none)."""
        offsets = self.offsets
        return next((i for i in range(len(self)) if offsets[i + 1] - offsets[i] > limit), -1)

    def __getitem__(self, index: int) -> bytes:
        return bytes(self.data[self.offsets[index] : self.offsets[index + 1]])


class JobDirectory:
    """One submission's directory. Cheap to construct; nothing is read until asked."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)

    # -- creation -------------------------------------------------------------------------
    @classmethod
    def create(cls, root: Path, name: str, share_with_group: bool = False) -> JobDirectory:
        """A new job directory under ``root``: ``0700`` (``0750`` when shared with the
        group) whatever the umask, as are its ``results/`` and ``logs/``."""
        root.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]
        path = root / f"{stamp}-{safe}-{os.urandom(4).hex()}"
        mode = payload_guard.dir_mode(share_with_group)
        for folder in (path, path / RESULTS, path / LOGS):
            payload_guard.make_dir(str(folder), mode)
        return cls(path)

    def check(self) -> None:
        """Refuse (``UnsafeJobDirectoryError``) a job directory someone else could have
        written into: see :mod:`slurmscope.payload_guard`. Checked once per process."""
        payload_guard.check_directory(str(self.path), f"the job directory {self.path}")

    def write_payload(
        self,
        function: bytes,
        items: Iterable[bytes] | PackedItems,
        driver: DriverInfo | None = None,
    ) -> int:
        """Write the function and the items with their offset index, and what the driver
        recorded for the worker (plain data); returns the number of items."""
        mode = payload_guard.file_mode(self.path.stat().st_mode)
        write_new(self.path / FUNCTION, function, mode)
        if driver is not None:
            write_new(self.path / DRIVER, dumps(driver, protocol=5), mode)
        if not isinstance(items, PackedItems):
            packed = PackedItems()
            packed.extend(items if isinstance(items, list) else list(items))
            items = packed
        write_new(self.path / ITEMS, items.data, mode)
        offsets = items.offsets
        if sys.byteorder == "big":
            offsets = array("Q", offsets)
            offsets.byteswap()  # the index is little-endian
        write_new(self.path / INDEX, offsets.tobytes(), mode)
        return len(items)

    def write_item_checks(self, checks: Iterable[tuple[str, str, str]]) -> None:
        """What each item of a packed map checks before it runs: ``(kind, index or "*",
        upstream job directory)`` (see :data:`slurmscope.payload.ITEM_CHECKS`)."""
        lines = "".join(f"{kind}\t{index}\t{where}\n" for kind, index, where in checks)
        if lines:
            write_new(self.path / ITEM_CHECKS, lines.encode(), self._file_mode())

    def _file_mode(self) -> int:
        return payload_guard.file_mode(self.path.stat().st_mode)

    # -- items of a packed map cancelled on their own --------------------------------------
    def cancel_item(self, index: int) -> None:
        """Mark item ``index`` cancelled: the worker of its pack skips it."""
        folder = self.path / CANCELLED
        if not folder.is_dir():
            with contextlib.suppress(FileExistsError):
                payload_guard.make_dir(str(folder), self.path.stat().st_mode & 0o750)
        atomic_write(folder / str(index), b"")

    def item_cancelled(self, index: int) -> bool:
        return os.path.exists(self.path / CANCELLED / str(index))

    # -- results ---------------------------------------------------------------------------
    @property
    def results_dir(self) -> Path:
        return self.path / RESULTS

    def finished(self) -> list[int]:
        """Indices of the tasks whose outcome file exists: one directory listing."""
        return list(self.iter_finished())

    def iter_finished(self) -> Iterator[int]:
        """:meth:`finished` one index at a time, the listing read as it goes (a million
        result files are not a million names in memory at once). ``OSError`` at the first
        ``next()`` when the directory cannot be listed."""
        with os.scandir(self.path / RESULTS) as entries:
            for entry in entries:
                stem, _, ext = entry.name.partition(".")  # "12.pkl"; temporary: ".12.pkl..."
                if ext == "pkl" and stem.isdigit():
                    yield int(stem)

    def outcome_ok(self, index: int) -> bool | None:
        """Whether task ``index`` succeeded, from its outcome file (``None``: no file yet).

        Reads only the head of the file when it can: the outcome dict's first key is
        ``"ok"``, so a large result need not be loaded to know that it is one. A file that
        fails the checks of :mod:`slurmscope.payload_guard` tells nothing (``None``): reading
        the result says why.
        """
        try:
            fh = payload_guard.open_file(result_file(str(self.path), index), str(self.path))
        except (FileNotFoundError, UnsafeJobDirectoryError):
            return None
        with fh:
            head = fh.read(_OUTCOME_HEAD)
        at = head.find(_OK_KEY) + len(_OK_KEY)
        if head.startswith(b"\x80") and len(_OK_KEY) <= at < len(head):
            if head[at] == 0x88:
                return True
            if head[at] == 0x89:
                return False
        outcome = self.read_outcome(index)  # another pickle layout: read it whole
        return None if outcome is None else bool(outcome["ok"])

    def read_outcome(self, index: int, each_file: bool = True) -> dict[str, Any] | None:
        """The outcome of task ``index``, or ``None`` (see :func:`payload.read_outcome`;
        ``each_file=False`` right after :meth:`files_private` said True)."""
        return read_outcome(str(self.path), index, each_file)

    def files_private(self) -> bool:
        """Whether no one else can reach or replace the result files: checked anew at each
        call (see :func:`payload_guard.files_private`)."""
        return payload_guard.files_private(str(self.path))

    # -- final states seen by a driver or the CLI (see slurmscope.payload_ended) -------------
    def record_ended(self, ended: dict[int, FinalState]) -> None:
        payload_ended.record_ended(self.path, ended)

    def recorded_states(self) -> dict[int, FinalState]:
        return payload_ended.recorded_states(self.path)

    def missing_since(self, job_id: str) -> float:
        return payload_ended.missing_since(self.path, job_id)

    def forget_missing(self, job_id: str) -> None:
        payload_ended.forget_missing(self.path, job_id)

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
        """The manifest, after the checks of :mod:`slurmscope.payload_guard` (what it names
        decides which directories are read next); ``FileNotFoundError`` when missing."""
        text = payload_guard.read_file(str(self.path / MANIFEST), str(self.path))
        if text is None:
            raise FileNotFoundError(f"{self.path / MANIFEST} does not exist")
        data: dict[str, Any] = json.loads(text)
        return data

    # -- lookup by scheduler id ------------------------------------------------------------
    def register_id(self, root: Path, cluster_name: str, job_id: str) -> None:
        """Link ``by-id/<cluster_name>/<job_id>`` under ``root`` to this directory (private
        folders, as the job directories; not in a folder someone else could write into,
        where :meth:`find` would refuse the link anyway)."""
        self.register_ids(root, cluster_name, [job_id])

    def register_ids(self, root: Path, cluster_name: str, job_ids: Sequence[str]) -> None:
        """:meth:`register_id` for every part of a map: the folders made and checked once."""
        folder = root / BY_ID / cluster_name
        mode = payload_guard.dir_mode(bool(self.path.stat().st_mode & 0o050))
        for path in (folder.parent, folder):
            with contextlib.suppress(FileExistsError):
                payload_guard.make_dir(str(path), mode)
            if payload_guard.problem(path.lstat(), directory=True) is not None:
                return
        target = os.path.relpath(self.path, folder)
        for job_id in job_ids:
            tmp = folder / f".{job_id}.{os.urandom(4).hex()}"
            os.symlink(target, tmp)
            os.replace(tmp, folder / job_id)

    @staticmethod
    def find(root: Path, cluster_name: str, job_id: str) -> JobDirectory | None:
        """The directory of scheduler job ``job_id`` (or ``id_index``); ``None`` if none is
        registered. ``ValueError`` when ``job_id`` is not a job id;
        ``UnsafeJobDirectoryError`` for a link someone else could have planted or one that
        leads out of ``root`` (:func:`payload_guard.check_link`)."""
        if os.sep in cluster_name or cluster_name in ("", ".", ".."):
            return None
        link = root / BY_ID / cluster_name / split_job_id(job_id)[0]
        if not payload_guard.CHECKS:
            return JobDirectory(link.resolve()) if link.exists() else None
        target = payload_guard.check_link(str(root), str(link))
        if target is None or not os.path.isdir(target):
            return None
        return JobDirectory(target)


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

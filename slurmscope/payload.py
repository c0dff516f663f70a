"""What a job reads and writes in its job directory: the payload and the outcome files.

The payload is what the driver writes before it submits (:mod:`slurmscope.job_directory`
lists the whole directory)::

    function.pkl      the cloudpickled function, once
    driver.pkl        what the worker needs to see what the driver saw: its sys.path and
                      the source files of functions shipped by value (slurmscope.origin)
    items.bin         every item's pickled (args, kwargs), one after the other
    items.idx         little-endian uint64 offsets: item i is items.bin[idx[i]:idx[i+1]]

and the worker writes ``results/<i>.pkl``, the outcome of task i, atomically (temp file +
rename). An item holds a :class:`ResultRef` where a job handle was given as an argument.

The worker imports this module inside every job: standard library only, and only the cheap
parts of it (no ``pathlib``, ``dataclasses``, ``typing``, ``secrets`` or ``json`` at
import; everything here works on plain path strings), because every task of every map pays
for each import.
"""

from __future__ import annotations

import os
import struct

from .payload_guard import file_mode, open_file, read_file

try:  # the C pickler that ``pickle`` re-exports, without the ``re`` & co. ``pickle`` imports
    from _pickle import dumps as dumps
    from _pickle import loads as loads
except ImportError:  # pragma: no cover - not CPython
    from pickle import dumps as dumps
    from pickle import loads as loads

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from .origin import DriverInfo

FUNCTION = "function.pkl"
DRIVER = "driver.pkl"
ITEMS = "items.bin"
INDEX = "items.idx"
RESULTS = "results"
#: Items of a packed map cancelled on their own: an empty file per item, ``cancelled/<i>``;
#: the worker skips them.
CANCELLED = "cancelled"
#: What each item of a packed map checks before it runs (docs/dependencies.md, Packed
#: maps): one line per check, ``kind<TAB>index<TAB>upstream job directory``, where index
#: ``*`` means "the item of the same index" (aftercorr).
ITEM_CHECKS = "item_checks.tsv"

#: One entry of ``items.idx``.
_OFFSET = struct.Struct("<Q")


#: How files are created: never through a link, never over an existing file.
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)


def write_new(
    path: str | os.PathLike[str], data: bytes | bytearray, mode: int | None = None
) -> None:
    """Write a new file ``path`` with exactly ``mode`` (default: that of its directory's
    files, :func:`payload_guard.file_mode`), whatever the umask."""
    path = os.fspath(path)
    if mode is None:
        mode = file_mode(os.stat(os.path.dirname(path) or ".").st_mode)
    fd = os.open(path, _CREATE | getattr(os, "O_CLOEXEC", 0), mode)
    with open(fd, "wb") as fh:
        os.fchmod(fd, mode)  # the umask may have taken bits off
        fh.write(data)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` so that readers see the old file or the whole new one, never a part;
    the file is private as its directory is (:func:`write_new`)."""
    folder, name = os.path.split(os.fspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
    try:
        write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        try:  # noqa: SIM105 - contextlib is one import more for every task
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def read_function(directory: str) -> bytes:
    """The pickled function (checked: :mod:`slurmscope.payload_guard`)."""
    with open_file(os.path.join(directory, FUNCTION), directory) as fh:
        return fh.read()


def read_driver(directory: str) -> DriverInfo | None:
    """What the driver recorded for the worker (``None`` for a job directory without it)."""
    data = read_file(os.path.join(directory, DRIVER), directory)
    if data is None:
        return None
    info: DriverInfo = loads(data)
    return info


def read_item(directory: str, index: int) -> bytes:
    """Item ``index`` alone: two offsets and one slice, whatever the number of items."""
    with open_file(os.path.join(directory, INDEX), directory) as fh:
        fh.seek(index * _OFFSET.size)
        raw = fh.read(2 * _OFFSET.size)
    if len(raw) != 2 * _OFFSET.size:
        raise IndexError(f"item {index} is not in {directory}")
    start, end = _OFFSET.unpack_from(raw, 0)[0], _OFFSET.unpack_from(raw, _OFFSET.size)[0]
    with open_file(os.path.join(directory, ITEMS), directory) as fh:
        fh.seek(start)
        return fh.read(end - start)


def result_file(directory: str, index: int) -> str:
    """The path of task ``index``'s outcome file."""
    return os.path.join(directory, RESULTS, f"{index}.pkl")


def write_outcome(directory: str, index: int, outcome: dict[str, Any]) -> None:
    atomic_write(result_file(directory, index), dumps(outcome, protocol=5))


def read_outcome(directory: str, index: int, each_file: bool = True) -> dict[str, Any] | None:
    """The outcome of task ``index`` (``{"ok": True, "value": ...}`` or
    ``{"ok": False, "type", "message", "traceback", "exception"}``), or ``None``.
    ``UnsafeJobDirectoryError`` when someone else could have written it (see
    :mod:`slurmscope.payload_guard`): it is not unpickled then."""
    data = read_file(result_file(directory, index), directory, each_file)
    if data is None:
        return None
    outcome: dict[str, Any] = loads(data)
    return outcome


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
        if not isinstance(other, ResultRef) or other.__class__ is not self.__class__:
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ResultRef(directory={self.directory!r}, index={self.index!r}, size={self.size!r})"


class UpstreamFailedError(RuntimeError):
    """Raised in a worker when a job it takes data from has no result."""

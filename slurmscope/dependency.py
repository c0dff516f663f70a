"""Dependency value types: kinds, provenance, merging, and rendering to Slurm syntax."""

from __future__ import annotations

import functools
import json
import os
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from .errors import DependencyError

#: The dependency kinds Slurm has. ``afterok`` is the default everywhere.
KINDS: tuple[str, ...] = ("afterok", "afterany", "afternotok", "after", "aftercorr", "singleton")

#: How a dependency was given.
VIA_SCOPE = "scope"
VIA_AFTER = "after()"
VIA_ARGUMENT_AFTER = "after="
VIA_DATA = "argument"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _stdlib_plumbing() -> tuple[frozenset[str], tuple[str, ...]]:
    """Files and folders of the standard library that only pass calls along: a ``with``
    statement, a thread, a pool, an event loop. Provenance names the user's frame above."""
    stdlib = os.path.dirname(os.__file__)
    files = frozenset(
        os.path.join(stdlib, name) for name in ("contextlib.py", "functools.py", "threading.py")
    )
    folders = tuple(os.path.join(stdlib, name) + os.sep for name in ("asyncio", "concurrent"))
    return files, (_PACKAGE_DIR, *folders)


_PLUMBING_FILES, _PLUMBING_FOLDERS = _stdlib_plumbing()


def _internal(filename: str) -> bool:
    """Frames of slurmscope itself and of the standard library's plumbing are skipped."""
    return filename.startswith(_PLUMBING_FOLDERS) or filename in _PLUMBING_FILES


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DependencyError(
            f"unknown dependency kind {kind!r}; use one of {', '.join(KINDS)} "
            "(afterok is the default)."
        )
    return kind


def never_satisfied(kind: str, succeeded: bool) -> str | None:
    """Why a ``kind`` dependency on a job that has ended (``succeeded``: every task of it
    COMPLETED) can never be satisfied; ``None`` when the ending satisfies it.

    ``after`` and ``afterany`` are satisfied by any ending, ``afterok`` (and ``aftercorr``,
    task by task) only by success, ``afternotok`` only by a failure.
    """
    if kind in ("afterok", "aftercorr") and not succeeded:
        return f"{kind} needs it to succeed, and it did not"
    if kind == "afternotok" and succeeded:
        return "afternotok needs it to fail, and it succeeded"
    return None


@dataclass(frozen=True)
class CallSite:
    """Where in the user's code something happened."""

    file: str
    line: int
    function: str
    thread: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line} in {self.function}() [thread {self.thread}]"


def user_frame() -> FrameType | None:
    """The first Python frame outside slurmscope (and the stdlib's plumbing) on the stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None and _internal(frame.f_code.co_filename):
        frame = frame.f_back
    return frame


_CONTEXTLIB = os.path.join(os.path.dirname(os.__file__), "contextlib.py")


def with_statement_key() -> Any:
    """What identifies the ``with`` statement (or ``ExitStack``) that enters or exits a
    context manager, the same at its ``__enter__`` and at its ``__exit__``: the ExitStack
    that holds it, else the Python frame (function or generator) that runs the ``with``."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        code = frame.f_code
        if code.co_filename == _CONTEXTLIB and code.co_name in (
            "enter_context",
            "__exit__",
            "__aexit__",
        ):
            owner = frame.f_locals.get("self")
            if type(owner).__name__ in ("ExitStack", "AsyncExitStack"):
                return ("ExitStack", id(owner))
        elif not _internal(code.co_filename):
            return (id(frame), code)
        frame = frame.f_back
    return None


def caller_site() -> CallSite:
    """The first frame outside slurmscope (and contextlib) on the current stack; for a call
    that a coroutine handed to a worker thread (``await asyncio.to_thread(task.map, ...)``,
    ``loop.run_in_executor``), which has no user frame of its own, the coroutine's ``await``."""
    frame = user_frame()
    thread = threading.current_thread().name
    if frame is None:
        frame = _awaiting_frame()
    if frame is None:
        return CallSite("<unknown>", 0, "<unknown>", thread)
    return CallSite(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, thread)


def _awaiting_frame() -> FrameType | None:
    """The user's coroutine frame that awaits the executor call this thread is running.

    From the executor's work item (a ``concurrent.futures`` frame) to the asyncio future
    chained to it, to the task waiting on that future, down its chain of awaits to the
    innermost coroutine outside slurmscope and asyncio.
    """
    import asyncio

    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        work = frame.f_locals.get("self") if frame.f_code.co_name == "run" else None
        if work is not None and hasattr(work, "future") and hasattr(work, "fn"):
            break
        frame = frame.f_back
    else:
        return None
    # The event loop's thread chains the futures and suspends the task just after handing
    # the call over, maybe after this thread started running it: wait for it a little.
    # (Up to 0.5 s in asyncio's own executor, 50 ms in a pool that may not be asyncio's.)
    for _ in range(100 if threading.current_thread().name.startswith("asyncio_") else 10):
        found = _awaiting(work.future, asyncio)
        if found is not False:
            return found  # type: ignore[return-value]
        time.sleep(0.005)
    return None


def _awaiting(future: Any, asyncio: Any) -> FrameType | None | bool:
    """See :func:`_awaiting_frame`; ``False`` while the chain is not complete yet."""
    waited = None
    for callback in list(getattr(future, "_done_callbacks", ())):
        for cell in getattr(callback, "__closure__", None) or ():
            value = cell.cell_contents
            if isinstance(value, asyncio.Future):
                waited = value
    if waited is None:
        return False
    try:
        tasks = asyncio.all_tasks(waited.get_loop())
    except RuntimeError:
        return None
    for task in tasks:
        if getattr(task, "_fut_waiter", None) is not waited:
            continue
        found = None
        coro: Any = task.get_coro()
        while coro is not None and getattr(coro, "cr_frame", None) is not None:
            if not _internal(coro.cr_frame.f_code.co_filename):
                found = coro.cr_frame
            coro = coro.cr_await
        return found
    return False


@dataclass(frozen=True)
class Provenance:
    """Where a dependency came from.

    ``via`` is ``"scope"`` (a ``with cluster.dependencies()`` block), ``"after()"``
    (``task.after(...)``), ``"after="`` (the ``after=`` argument) or ``"argument"`` (a job
    handle passed as an argument or inside an item: a data dependency).
    """

    via: str
    site: CallSite
    depth: int | None = None
    detail: str | None = None

    def describe(self) -> str:
        what = {
            VIA_SCOPE: "with cluster.dependencies() block",
            VIA_AFTER: "explicit .after()",
            VIA_ARGUMENT_AFTER: "after= argument",
            VIA_DATA: "job passed as argument",
        }.get(self.via, self.via)
        extra = []
        if self.depth is not None:
            extra.append(f"depth {self.depth}")
        if self.detail:
            extra.append(self.detail)
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{what}{tail} at {self.site}"

    def to_json(self) -> dict[str, Any]:
        return {
            "via": self.via,
            "file": self.site.file,
            "line": self.site.line,
            "function": self.site.function,
            "thread": self.site.thread,
            "depth": self.depth,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        site = CallSite(data["file"], data["line"], data["function"], data["thread"])
        return cls(data["via"], site, data.get("depth"), data.get("detail"))


@dataclass(frozen=True)
class Dependency:
    """One dependency of a submission: a kind, a target job and where it came from.

    ``target`` is the job handle (a ``Job`` or ``ArrayJob``), ``None`` for ``singleton``.
    ``target_id`` is its id as Slurm shows it (``"12"``, ``"12_3"`` for one array task).
    """

    kind: str
    target_id: str | None
    provenance: Provenance = field(compare=False)
    target: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.kind, self.target_id)

    def describe(self) -> str:
        on = f"{self.kind}:{self.target_id}" if self.target_id else self.kind
        return f"{on}  <- {self.provenance.describe()}"

    @functools.cached_property
    def json_text(self) -> str:
        """:meth:`to_json` as JSON text, encoded once: a scope's dependency is written in
        the manifest of every submission inside it."""
        return json.dumps(self.to_json(), sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target_id,
            "provenance": self.provenance.to_json(),
        }
        if self.target is not None:
            data["target_dir"] = str(self.target.directory)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dependency:
        return cls(data["kind"], data["target"], Provenance.from_json(data["provenance"]))


def merge(dependencies: Iterable[Dependency]) -> tuple[list[Dependency], list[Dependency]]:
    """Merge dependencies: order kept, duplicates dropped, the first provenance wins.

    Returns ``(kept, dropped)``; every dropped duplicate is returned so it can be logged.
    """
    kept: list[Dependency] = []
    dropped: list[Dependency] = []
    seen: set[tuple[str, str | None]] = set()
    for dep in dependencies:
        if dep.key in seen:
            dropped.append(dep)
        else:
            seen.add(dep.key)
            kept.append(dep)
    return kept, dropped


#: A backend-neutral dependency expression: every clause must hold (Slurm's ``,``).
DependencyClauses = tuple[tuple[str, tuple[str, ...]], ...]


def render(clauses: DependencyClauses) -> str:
    """Render clauses in Slurm's ``--dependency`` syntax (``afterok:1:2,afterany:3``)."""
    parts = []
    for kind, ids in clauses:
        parts.append(":".join((kind, *ids)) if ids else kind)
    return ",".join(parts)


def parse(text: str) -> DependencyClauses:
    """Parse Slurm's ``--dependency`` syntax (``,``-joined clauses only)."""
    if not text.strip():
        return ()
    clauses = []
    for clause in text.split(","):
        kind, *ids = clause.strip().split(":")
        check_kind(kind)
        clauses.append((kind, tuple(i.split("(")[0] for i in ids)))
    return tuple(clauses)


def clauses_for_part(dependencies: Sequence[Dependency], part: int) -> DependencyClauses:
    """The dependency clauses of one part of a (possibly split) submission.

    Each target knows its scheduler ids; an ``aftercorr`` on a split array depends part by
    part, since ``aftercorr`` pairs task ``i`` with task ``i`` of the same Slurm array.
    """
    grouped: dict[str, list[str]] = {}
    for dep in dependencies:
        ids = grouped.setdefault(dep.kind, [])
        if dep.kind == "singleton":
            continue
        if dep.kind == "aftercorr":
            ids.append(dep.target._part_ids()[part])
        elif dep.kind == "after" and hasattr(dep.target, "job_ids"):
            # A whole array, task by task: Slurm (22.05) never releases after:<array> once
            # the array was cancelled while pending, though "after" means "started or
            # cancelled"; it does release after:<array>_<i>.
            parts = dep.target._submission.parts
            ids.extend(f"{p.job_id}_{i}" for p in parts for i in range(p.count))
        else:
            ids.extend(dep.target._scheduler_ids())
    return tuple((kind, tuple(dict.fromkeys(ids))) for kind, ids in grouped.items())

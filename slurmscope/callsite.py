"""Where in the user's code something happened: the first frame outside slurmscope, and the
job (and slurmscope task) the process runs in, when it runs inside one."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType
from typing import Any

from . import running_task

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


@dataclass(frozen=True)
class EnclosingJob:
    """The job a process runs in: the Slurm job (or local backend job) whose variables its
    environment holds, and the slurmscope task the current thread runs, when it runs one.

    ``job_id`` is the job as Slurm shows it: ``"12_3"`` for task 3 of array job 12, else
    ``$SLURM_JOB_ID`` (``None`` for a task run inside the driver's own process, as
    :class:`slurmscope.testing.FakeBackend` runs them). ``task`` is the slurmscope task's
    index in its map (``job[task]``; it differs from the array index where a large map was
    split into several arrays) and ``directory`` its job directory; both ``None`` outside
    a slurmscope task (a driver script run as a job, an ``sbatch`` script, ``salloc``).
    """

    job_id: str | None
    task: int | None = None
    directory: str | None = None

    def __str__(self) -> str:
        if self.job_id is None:
            return f"task {self.task} of {self.directory}"
        return f"job {self.job_id}" + ("" if self.task is None else f" task {self.task}")

    def to_json(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "task": self.task, "directory": self.directory}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> EnclosingJob | None:
        if not data:
            return None
        return cls(data.get("job_id"), data.get("task"), data.get("directory"))


def enclosing_job(environ: Mapping[str, str] | None = None) -> EnclosingJob | None:
    """The job this process runs in (see :class:`EnclosingJob`), ``None`` outside any job:
    from ``SLURM_JOB_ID``, ``SLURM_ARRAY_JOB_ID`` and ``SLURM_ARRAY_TASK_ID`` (which Slurm
    and the local backend give every job and ``salloc`` its shell), and the slurmscope task
    the worker runs in this thread. ``environ`` defaults to the process's environment."""
    env = os.environ if environ is None else environ
    job_id = env.get("SLURM_JOB_ID") or None
    array_job, array_task = env.get("SLURM_ARRAY_JOB_ID"), env.get("SLURM_ARRAY_TASK_ID")
    if job_id and array_job and array_task:
        job_id = f"{array_job}_{array_task}"
    task = running_task.current()
    if task is None:
        return EnclosingJob(job_id) if job_id else None
    return EnclosingJob(job_id, task[1], task[0])


@dataclass(frozen=True)
class CallSite:
    """Where in the user's code something happened, and inside which job (``job``:
    ``None`` in a driver that runs outside any job)."""

    file: str
    line: int
    function: str
    thread: str
    job: EnclosingJob | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line} in {self.function}() [thread {self.thread}]"
        return where if self.job is None else f"{where} in {self.job}"

    def to_json(self) -> dict[str, Any]:
        """The site as plain values (``job`` is left out outside a job)."""
        data: dict[str, Any] = {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "thread": self.thread,
        }
        if self.job is not None:
            data["job"] = self.job.to_json()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallSite:
        job = EnclosingJob.from_json(data.get("job"))
        return cls(data["file"], data["line"], data["function"], data["thread"], job)


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
    """The first frame outside slurmscope (and contextlib) on the current stack, and the job
    the process runs in (:func:`enclosing_job`); for a call
    that a coroutine handed to a worker thread (``await asyncio.to_thread(task.map, ...)``,
    ``loop.run_in_executor``), which has no user frame of its own, the coroutine's ``await``."""
    frame = user_frame()
    thread = threading.current_thread().name
    job = enclosing_job()
    if frame is None:
        frame = _awaiting_frame()
    if frame is None:
        return CallSite("<unknown>", 0, "<unknown>", thread, job)
    return CallSite(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name, thread, job)


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

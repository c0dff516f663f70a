"""Which slurmscope task this thread (or this worker process) runs: set by the worker around
the task's function, read by checkpoints (where to save) and by call sites (a submission
made inside a task says which task made it).

The worker imports this module in every task: standard library only, ``os`` and
``contextvars`` at most.
"""

from __future__ import annotations

try:  # the C module ``contextvars`` re-exports, without its Python wrapper
    from _contextvars import ContextVar
except ImportError:  # pragma: no cover - not CPython
    from contextvars import ContextVar

#: (job directory, index) of the task this thread runs: a context variable, so that tasks
#: run in threads of one process (``slurmscope.testing.FakeBackend``) keep theirs apart.
_task: ContextVar[tuple[str, int] | None] = ContextVar("slurmscope_task", default=None)
#: The task the worker process runs (for threads the task starts, which do not inherit the
#: context variable): set only where the process runs one task (``python -m
#: slurmscope.worker``), never where tasks share a process.
_process_task: tuple[str, int] | None = None


def enter(directory: str, index: int, whole_process: bool) -> None:
    """The task ``index`` of job directory ``directory`` starts in this thread (and, with
    ``whole_process``, in every thread of this process: the worker runs one task)."""
    global _process_task
    _task.set((directory, index))
    if whole_process:
        _process_task = (directory, index)


def leave() -> None:
    """The task of this thread (and process) has ended."""
    global _process_task
    _process_task = None
    _task.set(None)


def current() -> tuple[str, int] | None:
    """(job directory, index) of the task this thread runs, ``None`` outside any task."""
    return _task.get() or _process_task

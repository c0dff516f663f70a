"""Per-thread output capture for tasks run in this process (by
:class:`slurmscope.testing.FakeBackend`): what a task's thread writes to ``sys.stdout`` and
``sys.stderr`` goes to that task's log files, every other thread's where it went before."""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from typing import TextIO, cast


class _Route:
    """Stands in for ``sys.stdout`` or ``sys.stderr`` while tasks run: writes from a task's
    thread go to its log file, every other thread's to the stream that was there before."""

    def __init__(self, name: str, before: TextIO) -> None:
        self.name, self.before = name, before

    def _target(self) -> TextIO:
        target: TextIO | None = getattr(_task_streams, self.name, None)
        return target if target is not None else self.before

    def __getattr__(self, name: str) -> object:  # write, flush, ...: the target's
        return getattr(self._target(), name)


_task_streams = threading.local()
_routing_lock = threading.Lock()
_routing: list[int] = [0]  # how many tasks run now


@contextlib.contextmanager
def captured(stdout: str, stderr: str) -> Iterator[None]:
    """Route this thread's ``sys.stdout``/``sys.stderr`` to the task's log files (appended,
    as Slurm does; the same file when both patterns are)."""
    with contextlib.ExitStack() as files:
        out = files.enter_context(open(stdout, "a"))  # noqa: SIM115 - the stack closes it
        err = out if stderr == stdout else files.enter_context(open(stderr, "a"))  # noqa: SIM115
        with _routing_lock:
            if _routing[0] == 0:
                sys.stdout = cast(TextIO, _Route("stdout", sys.stdout))
                sys.stderr = cast(TextIO, _Route("stderr", sys.stderr))
            _routing[0] += 1
        _task_streams.stdout, _task_streams.stderr = out, err
        try:
            yield
        finally:
            _task_streams.stdout = _task_streams.stderr = None
            with _routing_lock:
                _routing[0] -= 1
                for name in ("stdout", "stderr") if _routing[0] == 0 else ():
                    route = getattr(sys, name)
                    if isinstance(route, _Route):  # unless someone replaced it since
                        setattr(sys, name, route.before)

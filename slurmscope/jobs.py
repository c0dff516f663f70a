"""Job handles: :class:`Job` (one job, or one task of an array) and :class:`ArrayJob` (one
``task.map(items)``). Both are thin views of a shared
:class:`~slurmscope.submission.Submission`; array elements are made on access, never up
front. ``R`` is what the task's function returns.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, overload

from . import interrupt, reasons
from .diagnosis import item_log, log_paths, outcome_or_error
from .errors import JobCannotRunError, JobError
from .handle import Handle
from .runtime import Runtime
from .states import UNSUCCESSFUL_ENDINGS, TaskState
from .submission import Submission

R = TypeVar("R")


class Job(Handle, Generic[R]):
    """One submitted job, or one task of an array (``array[i]``)."""

    def __init__(self, submission: Submission, runtime: Runtime, index: int = 0) -> None:
        super().__init__(submission, runtime)
        self.index = index

    @property
    def job_id(self) -> str:
        """The scheduler's id: ``"12"``, or ``"12_3"`` for a task of an array."""
        return self.submission.task_id(self.index)

    @property
    def target_id(self) -> str:
        return self.job_id

    @property
    def indices(self) -> range:
        return range(self.index, self.index + 1)

    @property
    def state(self) -> str:
        """The scheduler's state name (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...)."""
        return self.status.state

    @property
    def status(self) -> TaskState:
        """State and reason, refreshed from the scheduler when it may have changed."""
        state = self.submission.states[self.index]
        if state is None or not state.terminal:
            self.runtime.poller.poll_now()
            state = self.submission.states[self.index]
        return state or TaskState("PENDING", "None")

    def done(self) -> bool:
        """True once the job has ended (asks the scheduler if it may have changed)."""
        return self.status.terminal

    def wait(self, timeout: float | None = None) -> Job[R]:
        """Block until the job has ended; raises ``TimeoutError`` after ``timeout`` seconds."""
        sub = self.submission
        try:
            ok = self.runtime.poller.wait(sub, self.indices, timeout)
        except KeyboardInterrupt:
            interrupt.on_interrupt(sub, self.runtime, f"job {self.job_id}")
            raise
        if not ok:
            raise TimeoutError(f"job {self.job_id} did not end within {timeout} s")
        if self.index in sub.stuck:
            raise sub.cannot_run_error([self.index])
        return self

    def get_result(self, timeout: float | None = None) -> R:
        """Wait, then return the function's result or re-raise its error."""
        self.wait(timeout)
        result: R = outcome_or_error(self, self.index)
        return result

    def result(self, timeout: float | None = None) -> R:
        """``concurrent.futures``-style alias of :meth:`get_result`."""
        return self.get_result(timeout)

    def cancel(self) -> None:
        """Cancel this job (or this one task of its array). Its dependents end too.

        An item of a packed map is cancelled on its own: its pack skips it if it has not
        started (one that runs already runs to its end); the pack's task is cancelled once
        each of its items is cancelled or ended."""
        sub = self.submission
        part, task = sub.task_of(self.index)
        if part.pack > 1:
            self._cancel_item()
            return
        with self.runtime.poller.cond:
            sub.mark_cancelled(self.indices)
        self.runtime.backend.cancel(part.job_id, task if sub.is_array else None)
        self.runtime.poller.poll_now()

    def _cancel_item(self) -> None:
        sub = self.submission
        part, task = sub.task_of(self.index)
        sub.directory.cancel_item(self.index)
        with self.runtime.poller.cond:
            sub.mark_cancelled(self.indices)
        mates = sub.pack_items(self.index)
        if all(i in sub.cancelled or sub.directory.outcome_ok(i) is not None for i in mates):
            self.runtime.backend.cancel(part.job_id, task)
        self.runtime.poller.poll_now()

    def log_paths(self) -> tuple[Path, Path]:
        """The stdout and stderr files of this task (of a packed map: of the Slurm task its
        pack shares, where the worker marks where each item's output starts)."""
        return log_paths(self.submission, self.index)

    def logs(self) -> tuple[str, str]:
        """What this task wrote so far to stdout and stderr (``""`` where nothing); of an
        item of a packed map, its own part of its pack's logs."""
        texts = []
        for path in self.log_paths():
            try:
                text = path.read_text(errors="replace")
            except OSError:
                text = ""
            texts.append(item_log(text, self.index) if self.submission.pack > 1 else text)
        return texts[0], texts[1]

    def __repr__(self) -> str:
        state = self.submission.states[self.index]
        shown = state.state if state else "SUBMITTED"
        return f"<Job {self.job_id} {self.submission.name} {shown}>"


class ArrayJob(Handle, Generic[R]):
    """One ``task.map(items)``: an array job (several when it exceeded MaxArraySize)."""

    whole_array: ClassVar[bool] = True

    @property
    def job_id(self) -> str:
        """The scheduler id of the (first) array; ``job_ids`` has every part's."""
        parts = self.submission.parts
        return parts[0].job_id if parts else ""

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The scheduler ids of every array behind this map (several past MaxArraySize)."""
        return tuple(p.job_id for p in self.submission.parts)

    @property
    def target_id(self) -> str:
        return "+".join(self.job_ids) or "<empty array>"

    @property
    def indices(self) -> range:
        return range(self.submission.size)

    @property
    def pack(self) -> int:
        """Items per Slurm array task (1: one task per item); see ``map(pack=...)``."""
        return self.submission.pack

    def __len__(self) -> int:
        """The number of items (tasks) of the map."""
        return self.submission.size

    @overload
    def __getitem__(self, index: int) -> Job[R]: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job[R]]: ...

    def __getitem__(self, index: int | slice) -> Job[R] | list[Job[R]]:
        """``array[i]``: a handle for task ``i`` (negative indices count from the end);
        ``array[a:b]``: a list of them. Handles are made on access."""
        size = self.submission.size
        if isinstance(index, slice):
            return [Job(self.submission, self.runtime, i) for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"array has {size} tasks; index {index} is out of range")
        return Job(self.submission, self.runtime, index)

    def __iter__(self) -> Iterator[Job[R]]:
        """Handles for every task, in item order, made one at a time."""
        for i in range(self.submission.size):
            yield Job(self.submission, self.runtime, i)

    @property
    def states(self) -> list[str]:
        """Every task's state, in item order."""
        self.runtime.poller.poll_now()
        return [s.state if s else "PENDING" for s in self.submission.states]

    @property
    def state(self) -> str:
        """One word for the whole array: PENDING, RUNNING, COMPLETED, or the worst ending."""
        states = set(self.states)
        if not states:
            return "COMPLETED"
        if states == {"COMPLETED"}:
            return "COMPLETED"
        if states & {"RUNNING", "COMPLETING"}:
            return "RUNNING"
        if "PENDING" in states or "SUBMITTED" in states:
            return "PENDING" if states <= {"PENDING", "SUBMITTED"} else "RUNNING"
        for bad in UNSUCCESSFUL_ENDINGS:
            if bad in states:
                return bad
        return sorted(states)[0]

    def counts(self) -> dict[str, int]:
        """How many tasks are in each state."""
        counts: dict[str, int] = {}
        for state in self.states:
            counts[state] = counts.get(state, 0) + 1
        return counts

    def done(self) -> bool:
        """True once every task has ended."""
        self.runtime.poller.poll_now()
        return self.submission.remaining == 0

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> ArrayJob[R]:
        """Block until every task has ended; one ``timeout`` for the whole array.

        ``progress`` shows a line of counts (done, running, pending, failed) while waiting:
        by default on a terminal (stderr is a tty) only; ``False`` turns it off.
        """
        poller = self.runtime.poller
        sub = self.submission
        show = _want_progress(progress) and sub.remaining > 0
        try:
            if not show:
                finished = poller.wait(sub, None, timeout)
            else:
                deadline = None if timeout is None else time.monotonic() + timeout
                finished = False
                while not finished:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    finished = poller.wait(sub, None, 0.5 if left is None else min(0.5, left))
                    _show_progress(self, final=finished)
        except KeyboardInterrupt:
            if show:
                interrupt.write("\n")  # end the progress line
            interrupt.on_interrupt(sub, self.runtime, f"array {self.target_id}")
            raise
        if not finished:
            raise TimeoutError(
                f"array {self.target_id} did not end within {timeout} s "
                f"({sub.remaining} of {len(self)} tasks unfinished)"
            )
        stuck = sub.never_runs()
        if stuck:
            raise sub.cannot_run_error(stuck)
        return self

    @property
    def requeued(self) -> list[int]:
        """Indices of tasks put back in the queue after they had started (a time limit a
        checkpointing task saw coming, a preemption, a node failure); each requeue is logged
        as ``slurmscope.task.requeued`` with its reason, and :attr:`requeues` says why."""
        return sorted(self.submission.requeued)

    def progress(self) -> dict[str, int]:
        """Counts of done, running, pending and failed tasks, from the last poll."""
        counts = {"done": 0, "running": 0, "pending": 0, "failed": 0}
        for state in self.submission.states:
            if state is None or state.state in ("PENDING", "UNKNOWN", "REQUEUED"):
                counts["pending"] += 1
            elif state.succeeded:
                counts["done"] += 1
            elif state.terminal:
                counts["failed"] += 1
            else:
                counts["running"] += 1
        return counts

    @overload
    def get_results(
        self,
        timeout: float | None = ...,
        *,
        return_exceptions: Literal[False] = ...,
        progress: bool | None = ...,
    ) -> list[R]: ...

    @overload
    def get_results(
        self,
        timeout: float | None = ...,
        *,
        return_exceptions: bool,
        progress: bool | None = ...,
    ) -> list[R | JobError]: ...

    def get_results(
        self,
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
        progress: bool | None = None,
    ) -> list[R] | list[R | JobError]:
        """Every task's result in item order.

        The first failed task re-raises (``TaskFailedError`` with its index and remote
        traceback); with ``return_exceptions=True`` errors are returned in place instead,
        as ``asyncio.gather`` does.
        """
        try:
            self.wait(timeout, progress=progress)
        except JobCannotRunError:
            if not return_exceptions:
                raise  # else each task that cannot run gets its own error, in place
        results: list[Any] = []
        # Checked once here: when no one else can reach the result files, each one need not
        # be checked on its own (slurmscope.payload_guard; benchmarks/guard_cost.py).
        each_file = not self.submission.directory.files_private()
        for i in range(len(self)):
            try:
                results.append(outcome_or_error(self, i, each_file))
            except JobError as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results

    def get_results_dir(self) -> Path:
        """The directory holding one ``<index>.pkl`` outcome file per task."""
        return self.submission.directory.results_dir

    def cancel(self) -> None:
        """Cancel every task of the map (every part, if it was split)."""
        with self.runtime.poller.cond:
            self.submission.mark_cancelled(self.indices)
        for part in self.submission.parts:
            self.runtime.backend.cancel(part.job_id)
        self.runtime.poller.poll_now()

    def __repr__(self) -> str:
        return (
            f"<ArrayJob {self.target_id} {self.submission.name} "
            f"{len(self)} tasks, {self.submission.remaining} unfinished>"
        )


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _show_progress(array: ArrayJob[Any], *, final: bool) -> None:
    counts = array.progress()
    sub = array.submission
    line = (
        f"{sub.name} {array.target_id}: {counts['done']}/{len(array)} done, "
        f"{counts['running']} running, {counts['pending']} pending"
        f"{reasons.summary(sub.states) if counts['pending'] else ''}, {counts['failed']} failed"
    )
    sys.stderr.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
    sys.stderr.flush()

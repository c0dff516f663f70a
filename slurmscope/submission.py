"""The record of one submission: its parts, dependencies and the last known state of every
task, kept up to date by the poller from the result files and the scheduler's answers.

A :class:`Submission` is shared by every handle of one ``task(...)`` or ``task.map(...)``
(array elements are views made on access). Its mutable fields are changed under the
poller's condition (:attr:`slurmscope.poller.Poller.cond`), by the poller and by
``cancel()`` alike.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from . import reasons
from .checkpoint import PREEMPTION, recorded_requeues, was_terminated
from .dependency import Dependency
from .errors import JobCannotRunError
from .job_directory import JobDirectory
from .log import log
from .states import TERMINAL_STATES, StateMap, TaskState, TaskStates

_COMPLETED = TaskState("COMPLETED", "None")
_FAILED = TaskState("FAILED", "NonZeroExitCode")
_LOST = TaskState("LOST", "not known to the scheduler and no result was written")
_CANCELLED = TaskState("CANCELLED", "cancelled through slurmscope")
#: An item of a running pack waiting for the items before it in its task.
_PACKED_BEHIND = TaskState("PENDING", "Packed")
#: A task not seen ended in a look at the result files this recent (seconds) has not ended
#: long ago: no need to read its file again (a job that ended since is still known to Slurm,
#: which keeps ended jobs for MinJobAge, 300 s by default).
_LOOKED_RECENTLY = 10.0


@dataclass(frozen=True)
class Part:
    """One scheduler job behind a submission: items ``offset .. offset+count-1``, ``pack``
    of them per array task (task ``t`` runs items ``offset + pack*t`` onwards)."""

    job_id: str
    offset: int
    count: int
    pack: int = 1

    @property
    def tasks(self) -> int:
        """How many array tasks the part has."""
        return -(-self.count // self.pack)


class Submission:
    """Shared state of one submission; changed under the poller's condition only."""

    def __init__(
        self,
        directory: JobDirectory,
        name: str,
        size: int,
        is_array: bool,
        parts: Sequence[Part],
        dependencies: Sequence[Dependency],
    ) -> None:
        self.directory = directory
        self.name = name
        self.size = size
        self.is_array = is_array
        self.parts = tuple(parts)
        self._offsets = [part.offset for part in self.parts]  # ascending: items in order
        self.dependencies = tuple(dependencies)
        self.states: list[TaskState | None] = [None] * size
        self.remaining = size
        #: When the poller last listed the result files (``time.monotonic()``).
        self.looked_at = 0.0
        self._missing_since: dict[str, float] = {}
        #: Indices of tasks the scheduler sent back to the queue after they had started.
        self.requeued: set[int] = set()
        #: Why each task was requeued, in order, as far as known: the job directory's
        #: records (time limit, preemption, node failure), else what the scheduler said.
        self.requeue_reasons: dict[int, list[str]] = {}
        #: RUNNING -> PENDING changes the poller saw, per task: a requeue the task recorded
        #: (and that was logged from its record) before the scheduler showed it is one.
        self._requeues_seen: dict[int, int] = {}
        #: Indices of tasks cancelled through a handle of this process.
        self.cancelled: set[int] = set()
        #: (scheduler job id, reason) pairs already logged as slurmscope.task.pending_reason.
        self._reasons_logged: set[tuple[str, str]] = set()
        self._request: str | None = None
        #: Indices the scheduler keeps pending for a reason that never clears by waiting.
        self.stuck: set[int] = set()

        #: Final states the scheduler told this process and not yet recorded in the job
        #: directory (see :meth:`record_ended`).
        self._unrecorded: dict[int, tuple[str, str | None, str | None]] = {}

    def request(self) -> str:
        """What the submission asked the scheduler for, as ``key=value, ...`` (from the
        manifest), for messages about a job that cannot run."""
        if self._request is None:
            try:
                asked = self.directory.read_manifest().get("resources") or {}
            except (OSError, ValueError):
                asked = {}
            partition = asked.pop("partition", None)
            shown = [f"{k}={v!r}" if k == "extra" else f"{k}={v}" for k, v in asked.items()]
            where = f"partition {partition}" if partition else "the default partition"
            self._request = f"{', '.join(shown) or 'the defaults'} in {where}"
        return self._request

    def never_runs(self, indices: Sequence[int] | range | None = None) -> list[int]:
        """Indices (of ``indices``, default all) the scheduler keeps pending for a reason
        that never clears by waiting."""
        if indices is None:
            return sorted(self.stuck)
        return [i for i in indices if i in self.stuck]

    def cannot_run_error(self, indices: list[int]) -> JobCannotRunError:
        """The error for tasks that never run (all share one reason in practice: the first
        one's is named)."""
        first = self.states[indices[0]]
        reason = reasons.name(first.reason if first else None)
        part, _ = self.locate(indices[0])
        return JobCannotRunError(
            part.job_id if self.is_array else self.task_id(indices[0]),
            indices if self.is_array else None,
            reason,
            reasons.meaning(reason),
            self.request(),
        )

    def _note_reason(self, job_id: str, index: int, state: TaskState) -> None:
        """Log a pending reason worth knowing, once per scheduler job and reason."""
        reason = reasons.name(state.reason)
        if (job_id, reason) in self._reasons_logged:
            return
        self._reasons_logged.add((job_id, reason))
        never = reasons.never_clears(reason)
        log.warning(
            "slurmscope.task.pending_reason",
            task=self.name,
            job_id=job_id,
            index=index if self.is_array else None,
            reason=reason,
            meaning=reasons.meaning(reason),
            never_clears=never,
            request=self.request(),
            hint="waiting cannot help: cancel it, change the request and submit again"
            if never
            else "it may wait for long",
        )

    def load_recorded(self) -> None:
        """Take the final states recorded in the job directory (by this or another process,
        when it saw the tasks end): the scheduler may have forgotten them since."""
        for index, (state, reason, exit_code) in self.directory.recorded_states().items():
            if 0 <= index < self.size and self.states[index] is None:
                known = self.states[index] = TaskState(state, reason, exit_code)
                if known.terminal:
                    self.remaining -= 1

    def outcomes_from_directory(self, indices: Sequence[int]) -> list[bool | None]:
        """Whether each task succeeded, from the job directory alone: its outcome file, else
        the final state recorded when a process saw it end; ``None``: neither tells."""
        try:
            with_file = set(self.directory.finished())
        except OSError:
            with_file = set()
        recorded: dict[int, tuple[str, str | None, str | None]] | None = None
        out: list[bool | None] = []
        for index in indices:
            ok = self.directory.outcome_ok(index) if index in with_file else None
            if ok is None:
                if recorded is None:
                    recorded = self.directory.recorded_states()
                ended = recorded.get(index)
                if ended is not None and ended[0] in TERMINAL_STATES:
                    ok = ended[0] == "COMPLETED"
            out.append(ok)
        return out

    def record_ended(self) -> None:
        """Record in the job directory the final states the scheduler told since the last
        call (a warning, not an error, if the directory cannot be written)."""
        ended, self._unrecorded = self._unrecorded, {}
        try:
            self.directory.record_ended(ended)
        except OSError as exc:
            log.warning(
                "slurmscope.record_ended.failed", directory=str(self.directory.path), error=str(exc)
            )

    def locate(self, index: int) -> tuple[Part, int]:
        """The part holding global item ``index``, and the index within that part (a
        binary search: a map of a million items has a thousand parts)."""
        number = bisect.bisect_right(self._offsets, index) - 1
        if number >= 0:
            part = self.parts[number]
            if index < part.offset + part.count:
                return part, index - part.offset
        raise IndexError(index)

    def task_of(self, index: int) -> tuple[Part, int]:
        """The part holding item ``index``, and the array task (within it) that runs it."""
        part, local = self.locate(index)
        return part, local // part.pack

    @property
    def pack(self) -> int:
        """Items per array task (1: unpacked)."""
        return self.parts[0].pack if self.parts else 1

    def task_id(self, index: int) -> str:
        part, task = self.task_of(index)
        return f"{part.job_id}_{task}" if self.is_array else part.job_id

    def pack_items(self, index: int) -> range:
        """The items that share the array task of item ``index`` (itself alone, unpacked)."""
        part, task = self.task_of(index)
        first = part.offset + task * part.pack
        return range(first, min(first + part.pack, part.offset + part.count))

    def update(self, answer: StateMap, lost_after: float) -> bool:
        """Apply a backend answer; returns True when anything changed. A job the scheduler
        does not know for ``lost_after`` seconds, with no result written, is LOST."""
        changed = False
        grace = lost_after
        recorded: dict[int, tuple[str, str | None, str | None]] | None = None
        requeues = recorded_requeues(str(self.directory.path))
        for part in self.parts:
            known = answer.get(part.job_id)
            if known is None:
                # Forgotten by the scheduler, or a controller restarting: only call it lost
                # when it stays missing for a while, as told by the job directory, so that a
                # later process (the CLI, `clean`) need not watch for that long itself.
                since = self._missing_since.get(part.job_id)
                if since is None:
                    since = self._missing_since[part.job_id] = self.directory.missing_since(
                        part.job_id
                    )
                job_gone = time.time() - since >= grace
            else:
                if self._missing_since.pop(part.job_id, None) is not None:
                    self.directory.forget_missing(part.job_id)  # it was a controller's blip
                job_gone = False
            behind: dict[int, int] = {}  # running task -> the item it runs now
            bulk_changed, rest = self._bulk(known, part)
            changed |= bulk_changed
            for local in rest:
                index = part.offset + local
                old = self.states[index]
                if old is not None and old.terminal:
                    continue
                new = known.get(local // part.pack) if known is not None else None
                if part.pack > 1 and new is not None:
                    new = self._packed(part, local, new, behind)
                seen = new is not None and new.terminal  # the scheduler says it ended
                if new is None or new.state == "UNKNOWN":
                    if recorded is None:
                        recorded = self.directory.recorded_states()
                    new = self._from_directory(index, recorded, job_gone=job_gone) or new
                    if new is None and index in self.cancelled:
                        # Slurm drops the record of a pending array task it cancels
                        new, seen = _CANCELLED, True
                if new is None or new == old:
                    continue
                if new.state == "PENDING" and not reasons.is_routine(new.reason):
                    self._note_reason(part.job_id, index, new)
                if seen:
                    self._unrecorded[index] = (new.state, new.reason, new.exit_code)
                if old is not None and old.state == "RUNNING" and new.state == "PENDING":
                    seen_before = self._requeues_seen.get(index, 0)
                    self._requeues_seen[index] = seen_before + 1
                    if seen_before >= len(self.requeue_reasons.get(index, [])):
                        # not logged yet from the task's own record (read in an earlier poll)
                        self._requeued(index, self._why_requeued(index, new, requeues))
                self.states[index] = new
                changed = True
                if new.never_runs and index not in self.cancelled:  # a cancel ends it
                    self.stuck.add(index)
                elif self.stuck:
                    self.stuck.discard(index)
                if new.terminal:
                    self.remaining -= 1
        return self._note_requeues(requeues) or changed

    def _packed(self, part: Part, local: int, task: TaskState, behind: dict[int, int]) -> TaskState:
        """The state of item ``part.offset + local`` of a packed part whose task is in state
        ``task``: its outcome file when written; else, in a running task, RUNNING for the
        first item without an outcome and PENDING (reason ``Packed``) for those after it;
        else the task's state (CANCELLED for an item cancelled on its own)."""
        index = part.offset + local
        if index in self.cancelled:
            return _CANCELLED
        if task.state != "RUNNING" and not task.terminal:
            return task  # a pending pack: its items have no outcome yet (no file to read)
        ok = self.directory.outcome_ok(index)
        if ok is not None:
            return _COMPLETED if ok else _FAILED
        if self.directory.item_cancelled(index):  # by another process
            return _CANCELLED
        if task.state != "RUNNING":
            return task
        number = local // part.pack
        if number not in behind:
            behind[number] = index  # the items before it in its pack all have outcomes
        return task if behind[number] == index else _PACKED_BEHIND

    def _bulk(
        self, known: Mapping[int, TaskState] | None, part: Part
    ) -> tuple[bool, Iterable[int]]:
        """Apply the spans of tasks an answer gives as one state (an array's pending tasks)
        at once where every task of the span had that state already, or none yet; returns
        whether anything changed and the indices within ``part`` left to look at one by one.
        A span of packed tasks stands for their items; a running pack is looked at item by
        item (its items differ), as are spans holding an item cancelled on its own.
        Told in C (``list.count`` by identity: backends answer interned states,
        :func:`~slurmscope.states.task_state`), so that a poll of a million pending tasks
        does not visit each."""
        if not isinstance(known, TaskStates) or not known.spans:
            return False, range(part.count)
        pack = part.pack
        changed = False
        done: list[tuple[int, int]] = []
        states = self.states
        for span, state in known.spans:
            if (
                span.step != 1
                or span.start < 0
                or span.stop > part.tasks
                or state.terminal
                or state.state == "UNKNOWN"
                or any(i in span for i in known.single)  # a task told apart wins
                or (pack > 1 and state.state == "RUNNING")
            ):
                continue
            first, last = span.start * pack, min(span.stop * pack, part.count)  # its items
            low, high = part.offset + first, part.offset + last
            if pack > 1 and any(low <= i < high for i in self.cancelled):
                continue
            current = states[low:high]
            if current.count(state) == last - first:
                done.append((first, last))
            elif current.count(None) == last - first:  # first seen: nothing to compare
                states[low:high] = [state] * (last - first)
                changed = True
                if state.state == "PENDING" and not reasons.is_routine(state.reason):
                    self._note_reason(part.job_id, low, state)
                if state.never_runs:
                    self.stuck.update(i for i in range(low, high) if i not in self.cancelled)
                done.append((first, last))
        if not done:
            return changed, range(part.count)
        gaps: list[range] = []
        at = 0
        for start, stop in sorted(done):
            if start > at:
                gaps.append(range(at, start))
            at = max(at, stop)
        gaps.append(range(at, part.count))
        return changed, itertools.chain.from_iterable(gaps)

    def _note_requeues(self, requeues: dict[int, list[str]]) -> bool:
        """Requeues the job directory records that were not seen happen (a task that
        requeued itself between two polls): each logged once, with its reason."""
        changed = False
        for index, reasons_ in requeues.items():
            known = self.requeue_reasons.get(index, [])
            for number in range(len(known), len(reasons_)):
                self._requeued(index, reasons_[number])
                changed = True
            if reasons_:  # the records say better than the scheduler
                self.requeue_reasons.setdefault(index, [])[: len(reasons_)] = reasons_
        return changed

    def _why_requeued(self, index: int, new: TaskState, requeues: dict[int, list[str]]) -> str:
        """Why task ``index``, seen go from RUNNING back to PENDING, was requeued: the job
        directory's record (the task's own requeue), else a preemption if its last run was
        sent SIGTERM (the next run records it), else what the scheduler says."""
        number = len(self.requeue_reasons.get(index, []))
        told = requeues.get(index, [])
        if number < len(told):
            return told[number]
        if was_terminated(str(self.directory.path), index):
            return PREEMPTION
        return f"scheduler: {new.reason}"

    def _requeued(self, index: int, reason: str) -> None:
        """Task ``index`` was requeued (seen by the poller, or recorded by the task)."""
        reasons_ = self.requeue_reasons.setdefault(index, [])
        reasons_.append(reason)
        self.requeued.add(index)
        log.warning(
            "slurmscope.task.requeued",
            task=self.name,
            job_id=self.task_id(index),
            index=index,
            reason=reason,
            requeues=len(reasons_),
            hint="it will run again (from its last checkpoint, if it saved one)",
        )

    def unfinished_outcomes(self) -> dict[int, bool]:
        """Outcome files of tasks not yet known to have ended: ``{index: succeeded}``.

        One listing of the results directory, then the head of each new file. Reads the
        filesystem only (call it without the poller's lock held); :meth:`record_outcomes`
        applies the answer.
        """
        started = time.monotonic()
        found: dict[int, bool] = {}
        try:
            self._read_outcomes(found)
        except OSError:  # not there (yet), or the filesystem hiccuped: the scheduler tells
            return found
        self.looked_at = started
        return found

    def _read_outcomes(self, found: dict[int, bool]) -> None:
        states = self.states
        for index in self.directory.iter_finished():
            if not 0 <= index < self.size:
                continue
            old = states[index]
            if old is not None and old.terminal:
                continue
            ok = self.directory.outcome_ok(index)
            if ok is not None:
                found[index] = ok

    def looked_recently(self) -> bool:
        """Whether the states in memory reflect the result files of moments ago."""
        return time.monotonic() - self.looked_at < _LOOKED_RECENTLY

    def record_outcomes(self, found: dict[int, bool]) -> bool:
        """A task whose outcome file is written has ended, whatever the scheduler says yet
        (the worker exits right after writing it). Returns True when anything changed."""
        changed = False
        for index, ok in found.items():
            old = self.states[index]
            if old is not None and old.terminal:
                continue
            self.states[index] = _COMPLETED if ok else _FAILED
            self.stuck.discard(index)
            self.remaining -= 1
            changed = True
        return changed

    def _from_directory(
        self,
        index: int,
        recorded: dict[int, tuple[str, str | None, str | None]],
        *,
        job_gone: bool,
    ) -> TaskState | None:
        """A task the scheduler did not mention: its outcome file tells, if there is one;
        else the final state a process recorded when it saw the task end. LOST only when
        neither tells and the scheduler has not known the job for a while."""
        ok = self.directory.outcome_ok(index)  # nothing unpickled that failed the checks
        if ok is not None:
            return _COMPLETED if ok else _FAILED
        ended = recorded.get(index)
        if ended is not None:
            return TaskState(*ended)
        return _LOST if job_gone else None

    def outcome(self, index: int | None = None) -> bool | None:
        """Whether task ``index`` (``None``: every task) ended well (True) or badly (False);
        ``None`` while undecided. An empty array has succeeded."""
        if index is None:
            if self.remaining == 0:
                return all(s is not None and s.succeeded for s in self.states)
        else:
            state = self.states[index]
            if state is not None and state.terminal:
                return state.succeeded
        if self.looked_recently():
            return None
        # The poller may not have caught up (or the scheduler forgot the job): the result
        # files and the recorded final states decide once every task has one.
        outcomes = self.outcomes_from_directory(range(self.size) if index is None else [index])
        if any(o is None for o in outcomes):
            return None
        return all(outcomes)

    def mark_cancelled(self, indices: Sequence[int] | range) -> None:
        """Tasks cancelled through a handle of this process (call with the poller's
        condition held): a cancel ends them, even those that were stuck pending."""
        self.cancelled.update(indices)
        if len(indices) == self.size:
            self.stuck.clear()
        else:
            self.stuck.difference_update(indices)

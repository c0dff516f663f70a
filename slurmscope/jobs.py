"""Job handles and the one poller per cluster that watches them.

A :class:`Submission` is the shared record of one ``task(...)`` or ``task.map(...)``: its
job directory, its scheduler ids (one per part when a large map was split over several
arrays), its dependencies, and the last known state of every task. :class:`Job` and
:class:`ArrayJob` are thin views of it; array elements are made on access, never up front.
"""

from __future__ import annotations

import pickle
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from . import interrupt, reasons
from .backends.base import Backend
from .dependency import Dependency, never_satisfied
from .errors import (
    ArrayAlreadySubmittedError,
    JobCannotRunError,
    JobError,
    JobNotCompletedError,
    TaskFailedError,
)
from .graph import Graph
from .log import log
from .payload import JobDirectory
from .states import TERMINAL_STATES, UNSUCCESSFUL_ENDINGS, TaskState
from .tree import key, trees

if TYPE_CHECKING:
    from .cluster import Cluster

_COMPLETED = TaskState("COMPLETED", "None")
_FAILED = TaskState("FAILED", "NonZeroExitCode")
_LOST = TaskState("LOST", "not known to the scheduler and no result was written")
_CANCELLED = TaskState("CANCELLED", "cancelled through slurmscope")
#: However fast results arrive, the scheduler is asked at least this often (seconds): a job
#: cancelled or killed elsewhere writes no result, and only the scheduler can tell.
_LONGEST_WITHOUT_QUERY = 60.0
#: A task not seen ended in a look at the result files this recent (seconds) has not ended
#: long ago: no need to read its file again (a job that ended since is still known to Slurm,
#: which keeps ended jobs for MinJobAge, 300 s by default).
_LOOKED_RECENTLY = 10.0


@dataclass(frozen=True)
class Part:
    """One scheduler job behind a submission: items ``offset .. offset+count-1``."""

    job_id: str
    offset: int
    count: int


class Submission:
    """Shared state of one submission. Thread-safe through the poller's condition."""

    def __init__(
        self,
        cluster: Cluster,
        directory: JobDirectory,
        name: str,
        size: int,
        is_array: bool,
        parts: Sequence[Part],
        dependencies: Sequence[Dependency],
    ) -> None:
        self.cluster = cluster
        self.directory = directory
        self.name = name
        self.size = size
        self.is_array = is_array
        self.parts = tuple(parts)
        self.dependencies = tuple(dependencies)
        self.states: list[TaskState | None] = [None] * size
        self.remaining = size
        #: When the poller last listed the result files (``time.monotonic()``).
        self.looked_at = 0.0
        self._missing_since: dict[str, float] = {}
        #: Indices of tasks the scheduler sent back to the queue after they had started.
        self.requeued: set[int] = set()
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
                self.states[index] = TaskState(state, reason, exit_code)
                if self.states[index].terminal:
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
        """The part holding global item ``index``, and the index within that part."""
        for part in self.parts:
            if part.offset <= index < part.offset + part.count:
                return part, index - part.offset
        raise IndexError(index)

    def task_id(self, index: int) -> str:
        part, local = self.locate(index)
        return f"{part.job_id}_{local}" if self.is_array else part.job_id

    def update(self, answer: Any) -> bool:
        """Apply a backend answer; returns True when anything changed."""
        changed = False
        grace = self.cluster.backend.lost_after
        recorded: dict[int, tuple[str, str | None, str | None]] | None = None
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
            for local in range(part.count):
                index = part.offset + local
                old = self.states[index]
                if old is not None and old.terminal:
                    continue
                new = known.get(local) if known is not None else None
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
                    log.warning(
                        "slurmscope.task.requeued",
                        task=self.name,
                        job_id=self.task_id(index),
                        index=index,
                        reason=new.reason,
                        hint="the scheduler requeued it (node failure?); it will run again",
                    )
                    self.requeued.add(index)
                self.states[index] = new
                changed = True
                if new.never_runs and index not in self.cancelled:  # a cancel ends it
                    self.stuck.add(index)
                elif self.stuck:
                    self.stuck.discard(index)
                if new.terminal:
                    self.remaining -= 1
        return changed

    def unfinished_outcomes(self) -> dict[int, bool]:
        """Outcome files of tasks not yet known to have ended: ``{index: succeeded}``.

        One listing of the results directory, then the head of each new file. Reads the
        filesystem only (call it without the poller's lock held); :meth:`record_outcomes`
        applies the answer.
        """
        started = time.monotonic()
        try:
            indices = self.directory.finished()
        except OSError:  # not there (yet), or the filesystem hiccuped: the scheduler tells
            return {}
        found: dict[int, bool] = {}
        states = self.states
        for index in indices:
            if not 0 <= index < self.size:
                continue
            old = states[index]
            if old is not None and old.terminal:
                continue
            ok = self.directory.outcome_ok(index)
            if ok is not None:
                found[index] = ok
        self.looked_at = started
        return found

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
        outcome = self.directory.read_outcome(index)
        if outcome is not None:
            return _COMPLETED if outcome["ok"] else _FAILED
        ended = recorded.get(index)
        if ended is not None:
            return TaskState(*ended)
        return _LOST if job_gone else None


class Poller:
    """Watches all unfinished jobs of one cluster: their result files first, the scheduler
    when those cannot tell.

    Every look (every ``poll_interval``, backing off while nothing changes) lists the result
    directories: a task whose outcome file is there has ended, and that costs the scheduler
    nothing. The scheduler is asked about all unfinished jobs in one call only when a query
    is due (``query_interval``, backing off while its answers do not change) *and* no result
    arrived for that long: while results keep coming, tasks are evidently running, and only
    what the files cannot show (a task cancelled, killed, requeued, or waiting on a
    dependency) needs the scheduler. So a map's queries do not grow with its tasks.
    """

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.cond = threading.Condition()
        self._watched: list[Submission] = []
        self._thread: threading.Thread | None = None
        self._interval = backend.poll_interval[0]
        self._query_bounds = backend.query_interval or backend.poll_interval
        self._query_interval = self._query_bounds[0]
        self._last_asked = 0.0  # the last scheduler query (for poll_now)
        self._last_query = 0.0  # the last query, or the moment a new job put it off
        self._last_queried = time.monotonic()  # the last query, or this poller's creation
        self._last_progress = 0.0
        self._next_look = 0.0  # when the polling thread wakes up next
        #: Scheduler queries made so far.
        self.polls = 0

    def watch(self, submission: Submission) -> None:
        if submission.remaining == 0:
            return
        with self.cond:
            self._watched.append(submission)
            self._interval = self.backend.poll_interval[0]
            self._query_interval = self._query_bounds[0]
            now = time.monotonic()
            if now - self._last_queried < self._query_bounds[1]:
                self._last_query = now  # just submitted: nothing to ask yet (never for long)
            self._ensure_thread()
            if self._next_look - now > self._interval:  # else it looks soon enough anyway
                self.cond.notify_all()

    def _ensure_thread(self) -> None:
        """Start the polling thread if it is not running (call with ``cond`` held)."""
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="slurmscope-poller", daemon=True
            )
            self._thread.start()

    def unfinished(self) -> list[Submission]:
        """Every watched submission not yet ended, in the order they were watched."""
        with self.cond:
            return [s for s in self._watched if s.remaining > 0]

    def poll_now(self) -> None:
        """One look at everything watched, scheduler included, unless one happened moments
        ago (for ``job.state`` and friends: the caller wants the scheduler's word now)."""
        if time.monotonic() - self._last_asked >= self.backend.poll_interval[0]:
            self._poll()

    def _query_due(self, now: float) -> float:
        """Seconds until a scheduler query is due (0 or less: due now)."""
        quiet_since = max(self._last_query, self._last_progress)
        due = min(quiet_since + self._query_interval, self._last_queried + _LONGEST_WITHOUT_QUERY)
        return due - now

    def _poll(self, query: bool = True) -> bool:
        """Look at the result files of every unfinished watched job, then, if ``query``,
        ask the backend about the jobs still unfinished, in one call.

        Files and scheduler are read without holding the lock, so that submitting threads
        and waiters are never held up by a slow filesystem or a restarting controller.
        """
        with self.cond:
            self._watched = [s for s in self._watched if s.remaining > 0]
            watched = list(self._watched)
        if not watched:
            return False
        found = [s.unfinished_outcomes() for s in watched]
        with self.cond:
            progress = False
            for submission, outcomes in zip(watched, found, strict=True):
                progress |= submission.record_outcomes(outcomes)
            if progress:
                self._last_progress = time.monotonic()
                self._watched = [s for s in self._watched if s.remaining > 0]
                self.cond.notify_all()
        unfinished = [s for s in watched if s.remaining > 0]
        if not query or not unfinished:
            return progress
        ids = [part.job_id for s in unfinished for part in s.parts]
        self.polls += 1
        self._last_query = self._last_queried = self._last_asked = time.monotonic()
        try:
            answer = self.backend.states(ids)
        except Exception as exc:  # the scheduler may be restarting: keep waiting
            log.warning("slurmscope.poll.failed", error=str(exc), retry_in=self._query_interval)
            return progress
        with self.cond:
            changed = False
            for submission in unfinished:
                changed |= submission.update(answer)
            for submission in unfinished:
                # What the scheduler said, kept: it forgets ended jobs (MinJobAge), and a
                # later process must not read a job that ended without a result as pending,
                # then lost. Written before any waiter wakes up to it: a driver that exits
                # right after wait() has recorded what it saw. (Rare and small: only tasks
                # the scheduler, not a result file, told ended.)
                submission.record_ended()
            low, high = self._query_bounds
            self._query_interval = low if changed else min(high, self._query_interval * 1.5)
            self._watched = [s for s in self._watched if s.remaining > 0]
            self.cond.notify_all()
        return progress or changed

    def _loop(self) -> None:
        low, high = self.backend.poll_interval
        while True:
            changed = self._poll(query=self._query_due(time.monotonic()) <= 0)
            with self.cond:
                if not self._watched:
                    self._thread = None
                    return
                self._interval = low if changed else min(high, self._interval * 1.5)
                now = time.monotonic()
                timeout = min(self._interval, max(self._query_due(now), low))
                self._next_look = now + timeout
                self.cond.wait(timeout=timeout)

    def wait(self, submission: Submission, indices: range | None, timeout: float | None) -> bool:
        """Wait until the given tasks (all when ``None``) are terminal; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def done() -> bool:
            # Ended, or pending for a reason that never clears: waiting cannot change it.
            if indices is None:
                return submission.remaining == len(submission.stuck)
            states, stuck = submission.states, submission.stuck
            return all(i in stuck or ((s := states[i]) is not None and s.terminal) for i in indices)

        with self.cond:
            while not done():
                if submission.remaining > 0 and submission not in self._watched:
                    self._watched.append(submission)
                self._ensure_thread()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self.cond.wait(timeout=remaining if remaining is not None else 1.0)
        return True


_NOT_KNOWN = "the scheduler did not tell; no result or recorded end in the job directory"


def task_rows(handle: Job | ArrayJob) -> list[tuple[int, str, str, str]]:
    """(index, scheduler id, state, reason) of every task of ``handle``, as last polled."""
    jobs = list(handle) if isinstance(handle, ArrayJob) else [handle]
    rows = []
    for job in jobs:
        state = job._submission.states[job.index]
        if state is None:  # the scheduler did not answer, or no longer knows it (not yet LOST)
            rows.append((job.index, job.job_id, "UNKNOWN", _NOT_KNOWN))
            continue
        reason = (state.reason or "") if state.reason != "None" else ""
        rows.append((job.index, job.job_id, state.state, reason))
    return rows


def _want_progress(progress: bool | None) -> bool:
    if progress is not None:
        return progress
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _show_progress(array: ArrayJob, *, final: bool) -> None:
    counts = array.progress()
    sub = array._submission
    line = (
        f"{sub.name} {array._target_id()}: {counts['done']}/{len(array)} done, "
        f"{counts['running']} running, {counts['pending']} pending"
        f"{reasons.summary(sub.states) if counts['pending'] else ''}, {counts['failed']} failed"
    )
    sys.stderr.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
    sys.stderr.flush()


class _Handle:
    """What a Job and an ArrayJob share."""

    _submission: Submission

    @property
    def cluster(self) -> Cluster:
        """The cluster this job was submitted to."""
        return self._submission.cluster

    @property
    def directory(self) -> Path:
        """The job directory (manifest, payload, results, logs)."""
        return self._submission.directory.path

    @property
    def dependencies(self) -> tuple[Dependency, ...]:
        """Every dependency this job was submitted with, each with its provenance."""
        return self._submission.dependencies

    def explain(self) -> str:
        """Where each dependency of this job came from, one line each."""
        lines = [f"{self!r}"]
        if not self.dependencies:
            lines.append("  (no dependencies)")
        for dep in self.dependencies:
            lines.append(f"  {dep.describe()}")
        return "\n".join(lines)

    def graph(self, *, downstream: bool = False) -> Graph:
        """The dependency graph of this job: it and every job upstream of it (with
        ``downstream``, also every job under the cluster's root that waits on them), each
        with its state, each dependency with its kind and provenance. ``str(graph)`` is
        DOT text, ``graph.to_mermaid()`` Mermaid, ``graph.svg()``/``graph.png()``/
        ``graph.save(path)`` render it with Graphviz; Jupyter shows it as a picture."""
        cluster = self.cluster

        def rows_of(directory: JobDirectory, asked: str) -> list[tuple[int, str, str, str]]:
            mine = key(directory.path) == key(self.directory)
            handle = self if mine else cluster.attach(directory.path)
            cluster._poller._poll()
            return task_rows(handle)

        downstream_of = cluster.root if downstream else None
        return Graph.from_trees(trees([(self._submission.directory, "")], rows_of, downstream_of))

    def after(self, *jobs: Any, **kwargs: Any) -> Any:
        """Always raises :class:`ArrayAlreadySubmittedError`: Slurm fixes dependencies at submit
        time. Use ``task.after(job).map(items)`` or ``task.map(items, after=[job])``."""
        raise ArrayAlreadySubmittedError(self._target_id())

    def _target_id(self) -> str:
        raise NotImplementedError

    def _raise_outcome(self, index: int) -> Any:
        """The result of task ``index``, or the error that explains why there is none."""
        sub = self._submission
        outcome = sub.directory.read_outcome(index)
        job_id = sub.locate(index)[0].job_id
        position = index if sub.is_array else None
        if outcome is not None:
            if outcome["ok"]:
                return outcome["value"]
            error = TaskFailedError(
                job_id, position, outcome["type"], outcome["message"], outcome["traceback"]
            )
            cause = None
            if outcome.get("exception") is not None:
                try:
                    cause = pickle.loads(outcome["exception"])
                except Exception:
                    cause = None
            raise error from cause
        if index in sub.stuck:
            raise sub.cannot_run_error([index])
        state = sub.states[index] or TaskState("UNKNOWN")
        reason = state.reason if state.reason not in (None, "None") else None
        upstream: list[str] = []
        detail = ""
        if reason and "Dependency" in reason:
            lines = _failed_dependencies(self, index, upstream, depth=0, seen=set())
            if lines:
                detail = "It has a dependency that can never be satisfied:\n" + "\n".join(lines)
            elif "NeverSatisfied" in reason:
                detail = (
                    "Slurm says a dependency of it can never be satisfied; `slurmscope explain "
                    f"{sub.task_id(index)}` shows each dependency and how its job ended."
                )
        if not detail:
            detail = _log_tail(_log_paths(sub, index)[1])
            how = _how_it_ended(state.exit_code)
            if how is None and state.terminal:
                how = self.cluster.backend.exit_status(sub.task_id(index))
            if how:
                reason = f"{reason}, {how}" if reason else how
        error2 = JobNotCompletedError(job_id, position, state.state, reason, detail)
        error2.upstream = upstream
        raise error2


def _how_it_ended(exit_code: str | None) -> str | None:
    """Slurm's ``"status:signal"`` in words: ``"0:9"`` -> "killed by signal 9"."""
    status, _, sig = (exit_code or "").partition(":")
    if sig.isdigit() and int(sig):
        return f"killed by signal {sig}"
    if status.isdigit() and int(status):
        return f"exit code {status}"
    return None


def _log_paths(sub: Submission, index: int) -> tuple[Path, Path]:
    part, local = sub.locate(index)
    stem = f"{part.job_id}_{local}" if sub.is_array else part.job_id
    logs = sub.directory.path / "logs"
    return logs / f"{stem}.out", logs / f"{stem}.err"


def _log_tail(path: Path, lines: int = 8) -> str:
    try:
        text = path.read_text(errors="replace").strip()
    except OSError:
        return ""
    if not text:
        return ""
    tail = "\n".join("    " + line for line in text.splitlines()[-lines:])
    return f"Last lines of {path}:\n{tail}"


def _never_satisfied(dep: Dependency, index: int) -> tuple[bool, str]:
    """Whether ``dep`` can no longer be satisfied for task ``index``, and what happened, in
    the words of its kind (``afternotok`` on a job that succeeded is not a failure)."""
    target = dep.target
    if target is None:
        return False, ""
    if dep.kind == "aftercorr" and isinstance(target, ArrayJob):
        element = target[index]
        outcome = element._known_outcome()
        why = None if outcome is None else never_satisfied(dep.kind, outcome)
        return why is not None, f"task {index} ({element.job_id}) {element.status.state}; {why}"
    outcome = target._known_outcome()
    why = None if outcome is None else never_satisfied(dep.kind, outcome)
    if why is None:
        return False, ""
    if outcome is False and isinstance(target, ArrayJob):
        bad = [i for i, st in enumerate(target._submission.states) if st and not st.succeeded]
        shown = ", ".join(str(i) for i in bad[:10]) + (" ..." if len(bad) > 10 else "")
        return True, f"tasks {shown} did not complete; {why}"
    if outcome is False:
        return True, f"ended {target.status.state}; {why}"
    return True, f"succeeded; {why}"


def _failed_dependencies(
    handle: _Handle, index: int, upstream: list[str], depth: int, seen: set[str]
) -> list[str]:
    """The chain of dependencies that can never be satisfied, down to the root cause."""
    lines = []
    pad = "  " * (depth + 1)
    for dep in handle.dependencies:
        never, what = _never_satisfied(dep, index)
        if not never or dep.target_id in seen:
            continue
        seen.add(dep.target_id or "")
        target = dep.target
        upstream.append(dep.target_id or "")
        lines.append(
            f"{pad}{dep.kind}:{dep.target_id} ({target._submission.name}: {what}), "
            f"given by {dep.provenance.describe()}"
        )
        if depth < 10:
            lines.extend(
                _failed_dependencies(target, _upstream_index(dep, index), upstream, depth + 1, seen)
            )
    return lines


def _upstream_index(dep: Dependency, index: int) -> int:
    """Which task of ``dep.target`` to explain next: the paired one for ``aftercorr``, the
    task itself for one task, else the first task of the array that did not succeed."""
    target = dep.target
    if isinstance(target, Job):
        return target.index
    if dep.kind == "aftercorr":
        return index
    states = target._submission.states
    return next((i for i, st in enumerate(states) if st is not None and not st.succeeded), 0)


class Job(_Handle):
    """One submitted job, or one task of an array (``array[i]``)."""

    def __init__(self, submission: Submission, index: int = 0) -> None:
        self._submission = submission
        self.index = index

    @property
    def job_id(self) -> str:
        """The scheduler's id: ``"12"``, or ``"12_3"`` for a task of an array."""
        return self._submission.task_id(self.index)

    def _target_id(self) -> str:
        return self.job_id

    def _scheduler_ids(self) -> tuple[str, ...]:
        return (self.job_id,)

    def _part_ids(self) -> tuple[str, ...]:
        return (self.job_id,)

    def _result_ref(self) -> Any:
        from .payload import ResultRef

        return ResultRef(str(self.directory), self.index)

    def _known_outcome(self) -> bool | None:
        """True/False once the job has ended well/badly, ``None`` while undecided."""
        state = self._submission.states[self.index]
        if state is not None and state.terminal:
            return state.succeeded
        if self._submission.looked_recently():
            return None
        return self._submission.outcomes_from_directory([self.index])[0]

    @property
    def state(self) -> str:
        """The scheduler's state name (PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ...)."""
        return self.status.state

    @property
    def status(self) -> TaskState:
        """State and reason, refreshed from the scheduler when it may have changed."""
        state = self._submission.states[self.index]
        if state is None or not state.terminal:
            self.cluster._poller.poll_now()
            state = self._submission.states[self.index]
        return state or TaskState("PENDING", "None")

    def done(self) -> bool:
        """True once the job has ended (asks the scheduler if it may have changed)."""
        return self.status.terminal

    def wait(self, timeout: float | None = None) -> Job:
        """Block until the job has ended; raises ``TimeoutError`` after ``timeout`` seconds."""
        sub = self._submission
        try:
            ok = self.cluster._poller.wait(sub, range(self.index, self.index + 1), timeout)
        except KeyboardInterrupt:
            interrupt.on_interrupt(self._submission, f"job {self.job_id}")
            raise
        if not ok:
            raise TimeoutError(f"job {self.job_id} did not end within {timeout} s")
        if self.index in sub.stuck:
            raise sub.cannot_run_error([self.index])
        return self

    def get_result(self, timeout: float | None = None) -> Any:
        """Wait, then return the function's result or re-raise its error."""
        self.wait(timeout)
        return self._raise_outcome(self.index)

    def result(self, timeout: float | None = None) -> Any:
        """``concurrent.futures``-style alias of :meth:`get_result`."""
        return self.get_result(timeout)

    def cancel(self) -> None:
        """Cancel this job (or this one task of its array). Its dependents end too."""
        sub = self._submission
        part, local = sub.locate(self.index)
        sub.cancelled.add(self.index)
        sub.stuck.discard(self.index)
        self.cluster.backend.cancel(part.job_id, local if sub.is_array else None)
        self.cluster._poller.poll_now()

    def log_paths(self) -> tuple[Path, Path]:
        """The stdout and stderr files of this task."""
        return _log_paths(self._submission, self.index)

    def __repr__(self) -> str:
        state = self._submission.states[self.index]
        shown = state.state if state else "SUBMITTED"
        return f"<Job {self.job_id} {self._submission.name} {shown}>"


class ArrayJob(_Handle):
    """One ``task.map(items)``: an array job (several when it exceeded MaxArraySize)."""

    def __init__(self, submission: Submission) -> None:
        self._submission = submission

    @property
    def job_id(self) -> str:
        """The scheduler id of the (first) array; ``job_ids`` has every part's."""
        parts = self._submission.parts
        return parts[0].job_id if parts else ""

    @property
    def job_ids(self) -> tuple[str, ...]:
        """The scheduler ids of every array behind this map (several past MaxArraySize)."""
        return tuple(p.job_id for p in self._submission.parts)

    def _target_id(self) -> str:
        return "+".join(self.job_ids) or "<empty array>"

    def _scheduler_ids(self) -> tuple[str, ...]:
        return self.job_ids

    def _part_ids(self) -> tuple[str, ...]:
        return self.job_ids

    def _result_ref(self) -> Any:
        from .payload import ResultRef

        return ResultRef(str(self.directory), 0, size=len(self))

    def _known_outcome(self) -> bool | None:
        """True/False once every task has ended (False if any failed), else ``None``."""
        sub = self._submission
        if sub.remaining == 0:
            return all(s is not None and s.succeeded for s in sub.states)
        if sub.looked_recently():
            return None
        # The poller may not have caught up (or the scheduler forgot the job): the result
        # files and the recorded final states decide once every task has one.
        outcomes = sub.outcomes_from_directory(range(sub.size))
        if any(o is None for o in outcomes):
            return None
        return all(outcomes)

    def __len__(self) -> int:
        """The number of items (tasks) of the map."""
        return self._submission.size

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        """``array[i]``: a handle for task ``i`` (negative indices count from the end);
        ``array[a:b]``: a list of them. Handles are made on access."""
        size = self._submission.size
        if isinstance(index, slice):
            return [Job(self._submission, i) for i in range(*index.indices(size))]
        if index < 0:
            index += size
        if not 0 <= index < size:
            raise IndexError(f"array has {size} tasks; index {index} is out of range")
        return Job(self._submission, index)

    def __iter__(self) -> Iterator[Job]:
        """Handles for every task, in item order, made one at a time."""
        for i in range(self._submission.size):
            yield Job(self._submission, i)

    @property
    def states(self) -> list[str]:
        """Every task's state, in item order."""
        self.cluster._poller.poll_now()
        return [s.state if s else "PENDING" for s in self._submission.states]

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
        self.cluster._poller.poll_now()
        return self._submission.remaining == 0

    def wait(self, timeout: float | None = None, *, progress: bool | None = None) -> ArrayJob:
        """Block until every task has ended; one ``timeout`` for the whole array.

        ``progress`` shows a line of counts (done, running, pending, failed) while waiting:
        by default on a terminal (stderr is a tty) only; ``False`` turns it off.
        """
        poller = self.cluster._poller
        sub = self._submission
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
            interrupt.on_interrupt(sub, f"array {self._target_id()}")
            raise
        if not finished:
            raise TimeoutError(
                f"array {self._target_id()} did not end within {timeout} s "
                f"({sub.remaining} of {len(self)} tasks unfinished)"
            )
        stuck = sub.never_runs()
        if stuck:
            raise sub.cannot_run_error(stuck)
        return self

    @property
    def requeued(self) -> list[int]:
        """Indices of tasks the scheduler put back in the queue after they had started
        (a node failure, for example); each is logged as ``slurmscope.task.requeued``."""
        return sorted(self._submission.requeued)

    def progress(self) -> dict[str, int]:
        """Counts of done, running, pending and failed tasks, from the last poll."""
        counts = {"done": 0, "running": 0, "pending": 0, "failed": 0}
        for state in self._submission.states:
            if state is None or state.state in ("PENDING", "UNKNOWN", "REQUEUED"):
                counts["pending"] += 1
            elif state.succeeded:
                counts["done"] += 1
            elif state.terminal:
                counts["failed"] += 1
            else:
                counts["running"] += 1
        return counts

    def get_results(
        self,
        timeout: float | None = None,
        *,
        return_exceptions: bool = False,
        progress: bool | None = None,
    ) -> list[Any]:
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
        results = []
        for i in range(len(self)):
            try:
                results.append(self._raise_outcome(i))
            except JobError as exc:
                if not return_exceptions:
                    raise
                results.append(exc)
        return results

    def get_results_dir(self) -> Path:
        """The directory holding one ``<index>.pkl`` outcome file per task."""
        return self._submission.directory.results_dir

    def cancel(self) -> None:
        """Cancel every task of the map (every part, if it was split)."""
        self._submission.cancelled.update(range(len(self)))
        self._submission.stuck.clear()
        for part in self._submission.parts:
            self.cluster.backend.cancel(part.job_id)
        self.cluster._poller.poll_now()

    def __repr__(self) -> str:
        return (
            f"<ArrayJob {self._target_id()} {self._submission.name} "
            f"{len(self)} tasks, {self._submission.remaining} unfinished>"
        )

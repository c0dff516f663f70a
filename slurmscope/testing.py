"""An in-process fake scheduler, for testing code that uses slurmscope without a cluster:
``slurmscope.Cluster(FakeBackend(), root=tmp_path)``. It records every submission, runs the
tasks through slurmscope's worker in dependency order, says whatever state a test scripts,
and counts queries and cancels. docs/testing.md says exactly what it emulates."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from . import packing, worker
from .backends.base import Backend
from .capture import captured
from .dependency import never_satisfied, render
from .errors import SubmissionError
from .spec import JobSpec, Resources
from .states import TERMINAL_STATES, StateMap, TaskState

__all__ = ["FakeBackend", "FakeJob", "JobRef", "Script"]

_PENDING = TaskState("PENDING", "None")
_WAITING = TaskState("PENDING", "Dependency")
_THROTTLED = TaskState("PENDING", "JobArrayTaskLimit")
_NEVER = TaskState("PENDING", "DependencyNeverSatisfied")
_KILLED = TaskState("CANCELLED", "DependencyNeverSatisfied")
_RUNNING = TaskState("RUNNING", "None")
_COMPLETED = TaskState("COMPLETED", "None", "0:0")
_FAILED = TaskState("FAILED", "NonZeroExitCode", "1:0")
_CANCELLED = TaskState("CANCELLED", "None")


class _HasJobId(Protocol):
    @property
    def job_id(self) -> str: ...


#: A job as the fake's methods take it: a job id (``"3"``, ``"3_1"`` for task 1 of array 3)
#: or a handle (``Job``, ``ArrayJob``, ``array[1]``).
JobRef = str | _HasJobId
#: ``script(job, index)``: the state task ``index`` of ``job`` is in (a :class:`TaskState`,
#: or a state name such as ``"FAILED"``), or ``None`` to leave it to the fake.
Script = Callable[["FakeJob", int], TaskState | str | None]


@dataclass(eq=False)
class FakeJob:
    """One submission the fake received, and the fake's own state of each of its tasks."""

    job_id: str
    """The id the fake gave it: ``"1"``, ``"2"``, ... in submission order."""
    spec: JobSpec
    """Exactly what the backend was asked to submit."""
    tasks: list[TaskState]
    """The fake's own state of each task (a scripted or set state wins over it)."""
    call: tuple[str, int] | None = field(default=None, repr=False)
    """``(job directory, offset)`` of slurmscope's worker command; ``None`` for another."""
    _cancelling: set[int] = field(default_factory=set, repr=False, init=False)

    @property
    def name(self) -> str:
        """The job name (``--job-name``): the task's name unless ``job_name=`` was given."""
        return self.spec.name

    @property
    def resources(self) -> Resources:
        """What the job asked for (``mem`` normalised as Slurm gets it: ``"4G"``, ``"500M"``)."""
        return self.spec.resources

    @property
    def size(self) -> int:
        """How many tasks: the array's size, 1 for a single job."""
        return len(self.tasks)

    @property
    def dependency(self) -> str:
        """The ``--dependency`` value the scheduler got (``"afterok:1,afterany:2"``), or ``""``."""
        return render(self.spec.dependencies)


class FakeBackend(Backend):
    """A scheduler in this process, for tests: records, runs (optionally) and is scriptable.

    :param run: run each task in this process once its dependencies allow (``worker.run``
        on a background thread, its output captured in the task's log files); ``False``:
        record only (tasks stay PENDING until scripted, or run one by one by
        :meth:`run_task`).
    :param script: ``script(job, index)`` says the state of a task (see :data:`Script`);
        it is called often, from several threads, with the fake's lock held.
    :param workers: how many tasks run at once.
    :param on_submit: called with each :class:`~slurmscope.spec.JobSpec` before it is
        recorded; raising :class:`~slurmscope.SubmissionError` there fails the submission.
    :param poll_interval: bounds of the poller's interval between two looks (seconds).
    :param query_interval: bounds of the interval between two state queries (``None``:
        as ``poll_interval``).
    :param max_array_size: Slurm's ``MaxArraySize`` to imitate (larger maps are split).
    """

    kind = "fake"
    cluster_name = "fake"

    def __init__(
        self,
        *,
        run: bool = True,
        script: Script | None = None,
        workers: int = 1,
        on_submit: Callable[[JobSpec], object] | None = None,
        poll_interval: tuple[float, float] = (0.005, 0.05),
        query_interval: tuple[float, float] | None = None,
        max_array_size: int | None = None,
    ) -> None:
        self.run, self.script, self.workers, self.on_submit = run, script, workers, on_submit
        self.poll_interval, self.query_interval = poll_interval, query_interval
        self._max_array_size = max_array_size
        self.jobs: dict[str, FakeJob] = {}
        """Every submission, by job id, in submission order (``len(jobs)``: submissions)."""
        self.queries = 0
        """How many times slurmscope asked for states (one query covers many jobs)."""
        self.cancels: list[tuple[str, int | None]] = []
        """Every cancel asked: ``(job_id, index)``, ``index`` ``None`` for the whole job."""
        self._pinned: dict[tuple[str, int | None], TaskState] = {}
        self._cond = threading.Condition(threading.RLock())
        self._threads: list[threading.Thread] = []
        self._closed = False
        self._holds = 0

    # -- the backend interface ---------------------------------------------------------------
    @property
    def max_array_size(self) -> int | None:
        return self._max_array_size

    def submit(self, spec: JobSpec) -> str:
        """Record ``spec`` (and queue its tasks when running); refuse what Slurm refuses:
        an array over ``max_array_size``, a dependency on a job it does not know."""
        self.refuse_impossible(spec)
        size = spec.array.size if spec.array else 1
        if self._max_array_size is not None and size > self._max_array_size:
            raise SubmissionError(
                f"Invalid job array specification: {size} tasks is over MaxArraySize "
                f"{self._max_array_size}"
            )
        if self.on_submit is not None:
            self.on_submit(spec)
        call = _worker_call(spec.command)
        if self.run and call is None:
            raise SubmissionError(f"FakeBackend runs slurmscope's worker only, not {spec.command}")
        with self._cond:
            if self._closed:
                raise SubmissionError("this FakeBackend is closed; create a new one.")
            for kind, ids in spec.dependencies:
                unknown = [i for i in ids if i.partition("_")[0] not in self.jobs]
                if unknown:
                    raise SubmissionError(f"Job dependency problem: {kind}:{unknown[0]}")
            job_id = str(len(self.jobs) + 1)
            self.jobs[job_id] = FakeJob(job_id, spec, [_PENDING] * size, call)
            if self.run and not self._threads:
                for number in range(self.workers):
                    thread = threading.Thread(
                        target=self._work, name=f"slurmscope-fake-{number}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
            self._cond.notify_all()
        return job_id

    def states(self, job_ids: Sequence[str]) -> StateMap:
        """The state of every task of the given jobs (scripted states win); counted."""
        with self._cond:
            self.queries += 1
            self._settle()
            return {
                job_id: {i: self._state(job, i) for i in range(job.size)}
                for job_id in job_ids
                if (job := self.jobs.get(job_id)) is not None
            }

    def cancel(self, job_id: str, index: int | None = None) -> None:
        """Pending tasks (and those set PENDING or RUNNING by :meth:`set_state`) end
        CANCELLED at once; a running task runs to its end (a thread cannot be killed), then
        is CANCELLED. Every call is recorded in :attr:`cancels`."""
        with self._cond:
            self.cancels.append((job_id, index))
            job = self.jobs.get(job_id)
            if job is not None:
                for i in range(job.size) if index is None else (index,):
                    pin = self._pinned.get((job_id, i)) or self._pinned.get((job_id, None))
                    if pin is not None and not pin.terminal:  # a said wait ends too
                        self._pinned[(job_id, i)] = _CANCELLED
                    if job.tasks[i].state == "PENDING":
                        job.tasks[i] = _CANCELLED
                    elif job.tasks[i].state == "RUNNING":
                        job._cancelling.add(i)
            self._cond.notify_all()

    def close(self) -> None:
        """Stop the runner threads (after the tasks they run now); no new submissions."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)

    def recorded_dependencies(self, job_id: str) -> str | None:
        job = self.jobs.get(job_id.partition("_")[0])
        return None if job is None else job.dependency

    # -- for tests ---------------------------------------------------------------------------
    def job(self, ref: JobRef) -> FakeJob:
        """The submission behind a job id or handle (an array task's: its array's).

        :raises KeyError: nothing with that id was submitted here.
        """
        return self._resolve(ref)[0]

    def set_state(
        self, ref: JobRef, state: TaskState | str | None, *, index: int | None = None
    ) -> None:
        """Say from now on that a job's tasks (or task ``index``; ``array[i]`` names one)
        are in ``state`` (``"FAILED"``, ``TaskState("PENDING", "PartitionConfig")``...);
        ``None`` lets the fake say again. A task with a said state is not run; dependents
        go by the said state. The runner may start a task as soon as it is submitted: to
        fail a task that must not run, set it inside :meth:`hold`, or use ``script``."""
        job, task = self._resolve(ref)
        key = (job.job_id, task if index is None else index)
        with self._cond:  # a whole job's state replaces those said of its tasks
            for old in [k for k in self._pinned if k[0] == key[0] and key[1] in (None, k[1])]:
                del self._pinned[old]
            if state is not None:
                self._pinned[key] = TaskState(state) if isinstance(state, str) else state
            self._cond.notify_all()

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Start no task inside the block (running ones go on). slurmscope sends the
        scheduler no dependency on a job that has already ended (it decides it itself), so
        submit a pipeline inside ``hold()`` to assert on the dependencies it declares."""
        with self._cond:
            self._holds += 1
        try:
            yield
        finally:
            with self._cond:
                self._holds -= 1
                self._cond.notify_all()

    def run_task(self, ref: JobRef, index: int | None = None) -> TaskState:
        """Run one task now, in this thread, whatever its state, and return the fake's
        state of it after (``COMPLETED``, ``FAILED`` or ``CANCELLED``)."""
        job, task = self._resolve(ref)
        index = index if index is not None else task or 0
        if job.call is None:
            raise ValueError(f"job {job.job_id} does not run slurmscope's worker")
        with self._cond:
            job.tasks[index] = _RUNNING
        return self._execute(job, index)

    # -- the scheduler -----------------------------------------------------------------------
    def _resolve(self, ref: JobRef) -> tuple[FakeJob, int | None]:
        job_id = ref if isinstance(ref, str) else ref.job_id
        base, _, task = job_id.partition("_")
        job = self.jobs.get(base)
        if job is None:
            raise KeyError(f"no job {job_id} was submitted to this FakeBackend")
        return job, int(task) if task else None

    def _said(self, job: FakeJob, index: int) -> TaskState | None:
        if self._pinned:
            said = self._pinned.get((job.job_id, index)) or self._pinned.get((job.job_id, None))
            if said is not None:
                return said
        said_by_script = self.script(job, index) if self.script is not None else None
        return TaskState(said_by_script) if isinstance(said_by_script, str) else said_by_script

    def _state(self, job: FakeJob, index: int) -> TaskState:
        return self._said(job, index) or job.tasks[index]

    def _ended(self, job: FakeJob) -> bool:
        return all(self._state(job, i).state in TERMINAL_STATES for i in range(job.size))

    def _settle(self) -> list[tuple[FakeJob, int]]:
        """Give every pending task its reason (cancelling those whose dependencies can
        never be satisfied, as ``--kill-on-invalid-dep`` does); return the runnable ones."""
        runnable: list[tuple[FakeJob, int]] = []
        seen: dict[tuple[str, str, int | None], str] = {}
        for job in self.jobs.values():
            throttle = job.spec.array.throttle if job.spec.array else None
            running = sum(t.state == "RUNNING" for t in job.tasks) if throttle else 0
            for index, own in enumerate(job.tasks):
                if own.state != "PENDING" or self._said(job, index) is not None:
                    continue
                status = self._dependency_status(job, index, seen)
                if status == "never":
                    job.tasks[index] = _KILLED if job.spec.kill_on_invalid_dep else _NEVER
                elif status == "wait":
                    job.tasks[index] = _WAITING
                elif throttle is not None and running >= throttle:
                    job.tasks[index] = _THROTTLED
                else:
                    job.tasks[index] = _PENDING
                    runnable.append((job, index))
                    running += 1
        return runnable

    def _dependency_status(
        self, job: FakeJob, index: int, seen: dict[tuple[str, str, int | None], str]
    ) -> str:
        """``"ok"``, ``"wait"`` or ``"never"``: every clause must hold (Slurm's ``,``)."""
        found = set()
        for kind, ids in job.spec.dependencies:
            if kind == "singleton":  # every earlier job of the same name has ended
                mine = (j for j in self.jobs.values() if j.name == job.name)
                earlier = (j for j in mine if int(j.job_id) < int(job.job_id))
                found.add("wait" if any(not self._ended(j) for j in earlier) else "ok")
            for target in ids:
                key = (kind, target, index if kind == "aftercorr" else None)
                if key not in seen:
                    seen[key] = self._clause_status(kind, self._targets(kind, target, index))
                found.add(seen[key])
        return "never" if "never" in found else "wait" if "wait" in found else "ok"

    def _targets(self, kind: str, target: str, index: int) -> list[TaskState]:
        """The states of the tasks a clause on ``target`` is about (none where the fake
        knows no such task: then it is satisfied, as on Slurm for a forgotten job)."""
        base, _, task = target.partition("_")
        job = self.jobs.get(base)
        size = job.size if job is not None else 0
        if task or kind == "aftercorr":
            indices: Sequence[int] = [int(task) if task else index]
        else:
            indices = range(size)
        return [self._state(job, i) for i in indices if job is not None and i < size]

    @staticmethod
    def _clause_status(kind: str, states: list[TaskState]) -> str:
        if not states:
            return "ok"
        if kind == "after":  # started or ended
            return "wait" if any(s.state == "PENDING" for s in states) else "ok"
        if not all(s.terminal for s in states):
            return "wait"
        return "never" if never_satisfied(kind, all(s.succeeded for s in states)) else "ok"

    def _work(self) -> None:
        while True:
            with self._cond:
                if self._closed:
                    return
                batch = [] if self._holds else self._settle()
                if not batch:
                    self._cond.wait(0.02)  # a script may change its answers at any time
                    continue
            for job, index in batch:
                with self._cond:
                    if self._closed or self._holds:
                        break
                    if not self._claimable(job, index):
                        continue  # cancelled, scripted or run by another worker since
                    job.tasks[index] = _RUNNING
                self._execute(job, index)

    def _claimable(self, job: FakeJob, index: int) -> bool:
        throttle = job.spec.array.throttle if job.spec.array else None
        if throttle and sum(t.state == "RUNNING" for t in job.tasks) >= throttle:
            return False
        return job.tasks[index].state == "PENDING" and self._said(job, index) is None

    def _execute(self, job: FakeJob, index: int) -> TaskState:
        assert job.call is not None
        directory, offset = job.call
        task_id = f"{job.job_id}_{index}" if job.spec.array else job.job_id
        out, err = (
            pattern.replace("%A", job.job_id).replace("%a", str(index)).replace("%j", task_id)
            for pattern in (job.spec.stdout, job.spec.stderr)
        )
        try:
            with captured(out, err):
                setting = job.spec.environment.get(packing.ENVIRONMENT, "")
                code = worker.run_pack(directory, offset, index, setting)
        except OSError:  # the log files could not be opened: the job could not start
            code = 1
        with self._cond:
            cancelled = index in job._cancelling
            state = _CANCELLED if cancelled else _COMPLETED if code == 0 else _FAILED
            job.tasks[index] = state
            self._cond.notify_all()
        return state


def _worker_call(command: Sequence[str]) -> tuple[str, int] | None:
    """``(job directory, offset)`` of ``python -m slurmscope.worker DIR [OFFSET]``."""
    args = list(command)
    rest = args[args.index("slurmscope.worker") + 1 :] if "slurmscope.worker" in args else []
    return (rest[0], int(rest[1]) if len(rest) > 1 else 0) if rest else None

"""The embedded local scheduler: Slurm's semantics, in-process, with no cluster at all.

It is a real scheduler, not a shortcut: every task runs in a subprocess through the same
command a Slurm job runs (the worker, with ``SLURM_ARRAY_TASK_ID`` and friends set;
:mod:`~slurmscope.backends.local_processes`), and it honours every dependency kind
(:mod:`~slurmscope.backends.local_jobs`), array throttles, time limits, cancellation and
``--kill-on-invalid-dep`` (dependents of failed jobs are cancelled with the reason
``DependencyNeverSatisfied``). At most as many CPUs as the machine has are in use at once.

Job ids come from a counter file under the state directory, locked with ``flock``, so they
are unique across processes sharing the same root. When a job ends, its final task states
are written next to that counter (like Slurm's accounting), so another process can still
ask for them (:mod:`~slurmscope.backends.local_accounting`). At interpreter exit the
scheduler waits for submitted work, as ``concurrent.futures`` does; Ctrl-C during that
wait cancels what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys
import threading
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..dependency import render
from ..errors import SubmissionError
from ..limits import PartitionLimits
from ..log import log
from ..spec import JobSpec, Resources, time_to_seconds
from ..states import StateMap, TaskState
from . import local_processes as processes
from .base import Backend
from .local_accounting import Accounting
from .local_jobs import LocalJob, LocalTask, dependency_status, find, flag_count

_TICK = 0.02

#: The options ``Cluster('local', ...)`` passes to this backend.
OPTIONS: tuple[str, ...] = ("cpus", "max_array_size")


def create(root: Path, **options: Any) -> LocalBackend:
    """The embedded scheduler, keeping its state under ``root/.local``."""
    return LocalBackend(root / ".local", **options)


def reachable(timeout: float = 0.0) -> tuple[bool, str]:
    """The embedded scheduler is always there."""
    return True, "the embedded scheduler runs in this process"


class LocalBackend(Backend):
    """Runs jobs as subprocesses of this process, scheduled like Slurm would."""

    kind = "local"
    sparse_arrays = True
    cluster_name = "local"
    poll_interval = (0.02, 0.5)
    lost_after = 0.0

    def __init__(
        self,
        state_dir: Path,
        *,
        cpus: int | None = None,
        max_array_size: int | None = None,
    ) -> None:
        self.accounting = Accounting(state_dir)
        self.state_dir = self.accounting.state_dir
        self.cpus = cpus or os.cpu_count() or 1
        self._max_array_size = max_array_size
        self._jobs: dict[str, LocalJob] = {}
        self._order: list[LocalJob] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        atexit.register(self._drain_at_exit)
        _live.add(self)

    # -- the seam ----------------------------------------------------------------------------
    @property
    def max_array_size(self) -> int | None:
        return self._max_array_size

    def request_limits(self, resources: Resources) -> list[PartitionLimits]:
        """One partition, whatever its name: this machine's CPUs and memory, no MaxTime."""
        return [PartitionLimits("local", True, self.cpus, _memory_mib())]

    def submit(self, spec: JobSpec) -> str:
        self.refuse_impossible(spec)
        cpus = spec.resources.cpus_per_task or 1
        size = spec.array.size if spec.array else 1
        if self._max_array_size is not None and size > self._max_array_size:
            raise SubmissionError(
                f"Invalid job array specification: {size} tasks is over MaxArraySize "
                f"{self._max_array_size}"
            )
        time_limit = time_to_seconds(spec.resources.time) if spec.resources.time else None
        with self._cond:
            if self._closed:
                raise SubmissionError("the local backend is closed; create a new Cluster.")
            for _kind, ids in spec.dependencies:
                for dep_id in ids:
                    if find(self._jobs, dep_id) is None:
                        raise SubmissionError(
                            f"Job dependency problem: job {dep_id} is not known to the local "
                            "scheduler (it belongs to another process or has been forgotten)."
                        )
            job_id = self.accounting.next_id()
            self.accounting.submitted(job_id, size)
            self._seq += 1
            job = LocalJob(job_id, self._seq, spec, cpus, float(time_limit) if time_limit else None)
            nodes, ntasks = (
                flag_count(spec.resources.extra, ("--nodes", "-N")),
                flag_count(spec.resources.extra, ("--ntasks", "-n")),
            )
            if nodes > 1 or ntasks * cpus > self.cpus:
                # One node of self.cpus CPUs: Slurm (22.05) accepts such a request, made
                # through extra=[...] flags, and keeps it pending with this reason.
                job.never_reason = "PartitionConfig"
            job.tasks = {i: LocalTask(i) for i in (spec.array.indices if spec.array else (0,))}
            self._jobs[job_id] = job
            self._order.append(job)
            self._ensure_thread()
            self._cond.notify_all()
        return job_id

    def states(self, job_ids: Sequence[str]) -> StateMap:
        answer: dict[str, dict[int, TaskState]] = {}
        missing = []
        with self._cond:
            for job_id in job_ids:
                job = self._jobs.get(job_id)
                if job is None:
                    missing.append(job_id)
                    continue
                answer[job_id] = {i: TaskState(t.state, t.reason) for i, t in job.tasks.items()}
        for job_id in missing:
            recorded = self.accounting.states(job_id)
            if recorded is not None:
                answer[job_id] = recorded
        return answer

    def cancel(self, job_id: str, index: int | None = None) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                # Another process's job: leave a request its scheduler acts on.
                self.accounting.request_cancel(job_id, index)
                return
            processes.cancel(job.tasks.values() if index is None else [job.tasks[index]])
            self._cond.notify_all()

    def close(self) -> None:
        """Cancel everything still pending or running and stop the scheduler thread."""
        with self._cond:
            self._closed = True
            for job in self._order:
                processes.cancel(job.tasks.values())
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        atexit.unregister(self._drain_at_exit)

    def preempt(self, job_id: str, index: int | None = None) -> None:
        """Preempt running tasks of a job (a test hook): SIGTERM, SIGKILL after a grace
        time, then requeued, as Slurm's ``PreemptMode=REQUEUE`` does."""
        with self._cond:
            job = self._jobs[job_id]
            for task in job.tasks.values() if index is None else [job.tasks[index]]:
                processes.preempt(task)
            self._cond.notify_all()

    # -- what ``scontrol show job`` would say ----------------------------------------------------
    def recorded_dependencies(self, job_id: str) -> str | None:
        """The dependencies the scheduler holds for one of its jobs (``None``: not its job)."""
        with self._cond:
            job = self._jobs.get(job_id)
            return None if job is None else render(job.spec.dependencies)

    # -- the scheduler -----------------------------------------------------------------------
    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._loop, name="slurmscope-local-scheduler", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        while True:
            with self._cond:
                self._take_cancel_requests()
                self._reap()
                self._schedule()
                self._record_ended()
                active = any(not job.ended() for job in self._order)
                if not active and self._closed:
                    return
                self._cond.wait(timeout=_TICK if active else 1.0)

    def _take_cancel_requests(self) -> None:
        """Cancel requests other processes left for jobs of this one (``slurmscope cancel``)."""
        for name in self.accounting.cancel_requests():
            job_id, _, index = name.partition("_")
            job = self._jobs.get(job_id)
            if job is None:
                continue
            self.accounting.take_cancel_request(name)
            processes.cancel(job.tasks.values() if not index else [job.tasks[int(index)]])

    def _reap(self) -> None:
        now = time.monotonic()
        for job in self._order:
            for task in job.tasks.values():
                if task.state != "RUNNING" or task.proc is None:
                    continue
                code = task.proc.poll()
                if code is not None:
                    processes.ended(task, code, job.checkpointing)
                else:
                    processes.watch(job, task, now)

    def _schedule(self) -> None:
        free = self.cpus - sum(
            job.cpus
            for job in self._order
            for task in job.tasks.values()
            if task.state == "RUNNING"
        )
        variables = {"SLURM_CLUSTER_NAME": self.cluster_name, "SLURMSCOPE_BACKEND": self.kind}
        for job in self._order:
            pending = [t for t in job.tasks.values() if t.state == "PENDING"]
            if not pending:
                continue
            running = sum(1 for t in job.tasks.values() if t.state == "RUNNING")
            throttle = job.spec.array.throttle if job.spec.array else None
            for task in pending:
                if job.never_reason:
                    task.reason = job.never_reason
                    continue
                status = dependency_status(job, task.index, self._jobs, self._order)
                if status == "never":
                    if job.spec.kill_on_invalid_dep:
                        task.state, task.reason = "CANCELLED", "DependencyNeverSatisfied"
                    else:
                        task.reason = "DependencyNeverSatisfied"
                    continue
                if status == "wait":
                    task.reason = "Dependency"
                    continue
                if throttle is not None and running >= throttle:
                    task.reason = "JobArrayTaskLimit"
                    continue
                if job.cpus > free:
                    task.reason = "Resources"
                    continue
                processes.start(job, task, variables)
                running += 1
                free -= job.cpus

    def _record_ended(self) -> None:
        for job in self._order:
            if not job.recorded and job.ended():
                job.recorded = True
                self.accounting.ended(job)

    # -- interpreter exit --------------------------------------------------------------------
    def _drain_at_exit(self) -> None:
        """At interpreter exit, wait for the jobs still queued or running, as
        ``concurrent.futures`` does, saying so on stderr; Ctrl-C cancels them. Jobs that
        can never start here are cancelled at once (waiting for them would never end)."""
        with self._cond:
            never = [job for job in self._order if job.never_reason and not job.ended()]
            for job in never:
                processes.cancel(job.tasks.values())
            active = [job for job in self._order if not job.ended()]
            # Those already being cancelled (killed, not yet reaped) end in moments.
            waiting = [job for job in active if not job.being_cancelled()]
        if never:
            _say(
                f"cancelled local job(s) {_ids(never)} at exit: they can never start here "
                f"({never[0].never_reason})"
            )
        if not active:
            return
        if waiting:
            log.info(
                "slurmscope.local.waiting_at_exit",
                jobs=len(waiting),
                hint="press Ctrl-C to cancel them",
            )
            _say(
                f"waiting for {len(waiting)} local job(s) still queued or running before the "
                f"program exits ({_ids(waiting)}); press Ctrl-C to cancel them"
            )
        try:
            with self._cond:
                while any(not job.ended() for job in self._order):
                    self._cond.wait(timeout=0.1)
        except KeyboardInterrupt:
            with self._cond:
                left = [job for job in self._order if not job.ended()]
            _say(f"cancelling local job(s) still queued or running: {_ids(left)}")
        self.close()


#: The local schedulers of this process that may still run jobs.
_live: weakref.WeakSet[LocalBackend] = weakref.WeakSet()


def close_all() -> None:
    """Cancel everything the local schedulers of this process still run, and stop them: a
    local driver job (``slurmscope run``) being cancelled takes its jobs with it."""
    for backend in list(_live):
        backend.close()


def _say(text: str) -> None:
    """One line on stderr (at exit nobody may have configured logging)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"slurmscope: {text}", file=sys.stderr, flush=True)


def _ids(jobs: Sequence[LocalJob], shown: int = 10) -> str:
    text = ", ".join(job.id for job in jobs[:shown])
    return text + (f" and {len(jobs) - shown} more" if len(jobs) > shown else "")


def _memory_mib() -> int | None:
    """This machine's memory in MiB (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return None

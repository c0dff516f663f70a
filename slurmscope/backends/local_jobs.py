"""The local scheduler's records of its jobs, and the decisions made from them alone:
whether a task's dependencies are met, as Slurm decides it."""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ..checkpoint import ENVIRONMENT as CHECKPOINTING
from ..spec import JobSpec
from ..states import TERMINAL_STATES


@dataclass
class LocalTask:
    """One task of a local job (a job that is no array has task 0 only)."""

    index: int
    state: str = "PENDING"
    reason: str | None = "None"
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    cancel_requested: bool = False
    timed_out: bool = False
    #: Sent the checkpoint warning (SIGUSR1) this run.
    warned: bool = False
    #: Being preempted (through ``LocalBackend.preempt``): requeued once it exits.
    preempted: bool = False
    #: Times requeued (``SLURM_RESTART_COUNT`` of its next run).
    restarts: int = 0


@dataclass
class LocalJob:
    """A job the local scheduler holds."""

    id: str
    seq: int
    spec: JobSpec
    cpus: int
    time_limit: float | None
    tasks: dict[int, LocalTask] = field(default_factory=dict)
    recorded: bool = False
    #: Why the job can never start here (it pends with this reason, as under Slurm).
    never_reason: str | None = None

    @property
    def warning(self) -> float | None:
        """Seconds before its time limit a checkpointing task is warned (SIGUSR1)."""
        seconds = self.spec.resources.checkpoint_warning
        return float(seconds) if seconds is not None and self.time_limit else None

    @property
    def checkpointing(self) -> bool:
        """Whether the job's tasks checkpoint (and may ask to be requeued)."""
        return CHECKPOINTING in self.spec.environment

    @property
    def is_array(self) -> bool:
        return self.spec.array is not None

    @property
    def name(self) -> str:
        return self.spec.resources.job_name or self.spec.name

    def task_id(self, index: int) -> str:
        return f"{self.id}_{index}" if self.is_array else self.id

    def ended(self) -> bool:
        return all(t.state in TERMINAL_STATES for t in self.tasks.values())

    def being_cancelled(self) -> bool:
        """Whether every task has ended or is being killed."""
        return all(
            t.cancel_requested or t.state not in ("PENDING", "RUNNING") for t in self.tasks.values()
        )


def find(jobs: Mapping[str, LocalJob], dep_id: str) -> tuple[LocalJob, int | None] | None:
    """The job ``dep_id`` names (``12``, or one task ``12_3``) and the task, if one."""
    job_id, _, task = dep_id.partition("_")
    job = jobs.get(job_id)
    if job is None:
        return None
    if task:
        if int(task) not in job.tasks:
            return None
        return job, int(task)
    return job, None


def dependency_status(
    job: LocalJob, index: int, jobs: Mapping[str, LocalJob], order: Sequence[LocalJob]
) -> str:
    """``"ok"``, ``"wait"`` or ``"never"`` for task ``index`` of ``job``, given every job
    known (``jobs`` by id, ``order`` as submitted)."""
    result = "ok"
    for kind, ids in job.spec.dependencies:
        if kind == "singleton":
            status = _singleton_status(job, order)
        else:
            status = "ok"
            for dep_id in ids:
                one = _one_status(kind, find(jobs, dep_id), index)
                if one == "never":
                    return "never"
                if one == "wait":
                    status = "wait"
        if status == "never":
            return "never"
        if status == "wait":
            result = "wait"
    return result


def _one_status(kind: str, found: tuple[LocalJob, int | None] | None, index: int) -> str:
    if found is None:  # forgotten: Slurm treats a vanished dependency as satisfied
        return "ok"
    target, only = found
    if kind == "aftercorr":
        task = target.tasks.get(index if only is None else only)
        tasks = [] if task is None else [task]
    else:
        tasks = list(target.tasks.values()) if only is None else [target.tasks[only]]
    states = [t.state for t in tasks]
    ended = all(s in TERMINAL_STATES for s in states)
    if kind == "after":
        return "ok" if all(s != "PENDING" for s in states) else "wait"
    if not ended:
        return "wait"
    if kind == "afterany":
        return "ok"
    all_ok = all(s == "COMPLETED" for s in states)
    if kind in ("afterok", "aftercorr"):
        return "ok" if all_ok else "never"
    if kind == "afternotok":
        return "never" if all_ok else "ok"
    return "ok"


def _singleton_status(job: LocalJob, order: Sequence[LocalJob]) -> str:
    for other in order:
        if other.seq >= job.seq:
            break
        if other.name == job.name and not other.ended():
            return "wait"
    return "ok"


def flag_count(extra: Sequence[str], names: tuple[str, str]) -> int:
    """The (minimum) count an ``extra=[...]`` list gives a flag such as ``--nodes=3``,
    ``-N 2-4`` or ``-n3``; 1 when it is not there."""
    long, short = names
    flags = list(extra)
    for i, flag in enumerate(flags):
        name, sep, value = flag.partition("=")
        if name in names:
            if not sep:
                value = flags[i + 1] if i + 1 < len(flags) else ""
        elif flag.startswith(short) and not flag.startswith(long) and len(flag) > 2:
            value = flag[2:]
        else:
            continue
        low = value.split("-")[0].split(":")[0]
        if low.isdigit():
            return max(1, int(low))
    return 1

"""The backend seam: plain specs in, plain ids and states out.

A backend never sees a job handle, a scope or a provenance: it submits a
:class:`~slurmscope.spec.JobSpec`, answers the states of many jobs in one call, cancels,
and reports its limits. Everything above it is the same for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .. import limits, reasons
from ..errors import UnsatisfiableRequestError
from ..spec import JobSpec, Resources

#: The ways a job ends without success, worst first: the state an array shows when its
#: tasks ended in several of them. (LOST is slurmscope's: the scheduler forgot a job that
#: wrote no result and that nobody saw end.)
UNSUCCESSFUL_ENDINGS = (
    "FAILED",
    "TIMEOUT",
    "OUT_OF_MEMORY",
    "NODE_FAIL",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
    "CANCELLED",
    "LOST",
)
#: Slurm job states after which a job never runs again: the one definition that every part
#: of slurmscope (handles, poller, CLI, ``clean``, backends) uses.
TERMINAL_STATES = frozenset({"COMPLETED", *UNSUCCESSFUL_ENDINGS})


@dataclass(frozen=True)
class TaskState:
    """The scheduler's view of one task (an array task, or the one task of a job)."""

    state: str
    reason: str | None = None
    #: How the task's process ended, as Slurm shows it (``"1:0"``, ``"0:9"``); ``None``
    #: where the backend does not tell.
    exit_code: str | None = None

    @property
    def terminal(self) -> bool:
        """True once the task can never run again (COMPLETED, FAILED, CANCELLED, ...)."""
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        """True when the task COMPLETED (exit code 0, result written)."""
        return self.state == "COMPLETED"

    @property
    def never_runs(self) -> bool:
        """True while the task is PENDING for a reason that never clears by waiting
        (``PartitionConfig``, ``PartitionTimeLimit``, ``BadConstraints``...; see
        :mod:`slurmscope.reasons`). It is not terminal: the scheduler still holds it."""
        return self.state == "PENDING" and reasons.never_clears(self.reason)


#: job id -> {task index: state}; a single job has the one index 0.
StateMap = Mapping[str, Mapping[int, TaskState]]


class Backend(ABC):
    """One way to reach a scheduler."""

    #: ``"local"``, ``"sbatch"`` or ``"pyslurm"``.
    kind: str = ""
    #: The scheduler's cluster name; job ids are unique within it.
    cluster_name: str = ""
    #: Bounds in seconds of the interval between two looks at the result files (the poller
    #: backs off between them while nothing changes).
    poll_interval: tuple[float, float] = (0.5, 10.0)
    #: Bounds in seconds of the interval between two queries of the scheduler; ``None``: the
    #: same as ``poll_interval``. Queries also wait while results keep arriving.
    query_interval: tuple[float, float] | None = None
    #: Seconds a job must stay unknown to the scheduler, with no result written, before
    #: it is called LOST (a restarting controller may answer with nothing for a while).
    lost_after: float = 60.0

    @abstractmethod
    def submit(self, spec: JobSpec) -> str:
        """Submit ``spec`` and return the scheduler's job id. Raises ``SubmissionError``."""

    @abstractmethod
    def states(self, job_ids: Sequence[str]) -> StateMap:
        """States of all tasks of the given jobs, in one query.

        Jobs the scheduler no longer knows are absent from the answer; so are array tasks
        it has forgotten. The caller falls back on the job directory for those.
        """

    @abstractmethod
    def cancel(self, job_id: str, index: int | None = None) -> None:
        """Cancel a job, or one task of an array."""

    @property
    def max_array_size(self) -> int | None:
        """How many tasks one array may hold (Slurm's ``MaxArraySize``); ``None``: no limit."""
        return None

    def request_limits(self, resources: Resources) -> list[limits.PartitionLimits] | None:
        """The limits of the partitions a request may run in (read once per backend), or
        ``None`` where they are not known: then the scheduler alone judges the request."""
        return None

    def refuse_impossible(self, spec: JobSpec) -> None:
        """Raise :class:`UnsatisfiableRequestError` when ``spec`` can never run in any
        partition it may go to. Every backend calls it first thing in :meth:`submit`."""
        problem = limits.refusal(spec.resources, self.request_limits(spec.resources))
        if problem:
            raise UnsatisfiableRequestError(spec.name, problem, self.kind)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds. Submitted jobs are not cancelled."""

    def describe(self) -> Mapping[str, object]:
        return {"backend": self.kind, "cluster": self.cluster_name}

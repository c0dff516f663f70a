"""The backend seam: plain specs in, plain ids and states out.

A backend never sees a job handle, a scope or a provenance: it submits a
:class:`~slurmscope.spec.JobSpec`, answers the states of many jobs in one call, cancels,
and reports its limits. Everything above it is the same for every backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from .. import limits
from ..errors import ClusterFullError, UnsatisfiableRequestError
from ..spec import JobSpec, Resources
from ..states import StateMap


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
    #: Whether ``submit`` takes an array of some indices only (``ArraySpec.only``): a
    #: resumed run then submits again only the tasks of an array that did not succeed.
    sparse_arrays: bool = False

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

    #: How many submissions of one split map may be in flight at once (the parts of a map
    #: larger than ``MaxArraySize``): more than one where a submission waits on something
    #: other than this process (the ``sbatch`` command's start and the controller's answer).
    parallel_submissions: int = 1

    def job_capacity(self, count: bool) -> limits.JobCapacity | None:
        """The controller's ``MaxJobCount`` and, when ``count``, the job records it holds
        now (every array task counts); ``None`` where there is no such limit or it is not
        known: then the scheduler alone judges."""
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

    def capacity_for(self, tasks: int, parts: int) -> limits.JobCapacity | None:
        """The controller's capacity as a map of ``tasks`` tasks in ``parts`` arrays needs
        to know it: the jobs in the system are counted only for maps that are large against
        the limit or split (:func:`limits.needs_count`); a small one the controller refuses
        itself. ``None`` where there is no such limit."""
        capacity = self.job_capacity(count=False)
        if capacity is not None and limits.needs_count(tasks, parts, capacity.max_job_count):
            capacity = self.job_capacity(count=True) or capacity
        return capacity

    def refuse_too_many(
        self, name: str, tasks: int, parts: int, capacity: limits.JobCapacity | None = None
    ) -> None:
        """Raise :class:`ClusterFullError` when the controller would refuse ``tasks`` more
        tasks (in ``parts`` arrays) for its ``MaxJobCount``: before anything of a map is
        submitted, so that a split map is never left half-submitted. ``capacity``: as
        :meth:`capacity_for` gave it for this map already (not asked again)."""
        if capacity is None:
            capacity = self.capacity_for(tasks, parts)
        if capacity is None:
            return
        problem = limits.job_count_refusal(tasks, capacity)
        if problem:
            raise ClusterFullError(name, problem, self.kind)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds. Submitted jobs are not cancelled."""

    # -- optional capabilities: a backend that cannot tell answers None -------------------
    def node_hosts(self) -> Sequence[str] | None:
        """The host names of the cluster's nodes (to check that the job root is on a
        filesystem they see), or ``None`` where every task runs on this machine."""
        return None

    def exit_status(self, job_id: str) -> str | None:
        """How a task that ended without a result ended, in words ("exit code 1", "killed
        by signal 9"), where the scheduler keeps more than its state; else ``None``."""
        return None

    def recorded_dependencies(self, job_id: str) -> str | None:
        """The dependency expression the scheduler recorded for ``job_id`` (as
        ``scontrol show job`` prints it), or ``None`` where it cannot tell."""
        return None


class BackendModule(Protocol):
    """What every module under ``slurmscope.backends`` offers, so that a cluster builds
    each backend the same way."""

    #: The keyword options ``create`` takes (checked before anything is built).
    OPTIONS: tuple[str, ...]

    def create(self, root: Path, **options: Any) -> Backend:
        """The backend, with ``root`` the cluster's job root (where the local backend
        keeps its own state) and ``options`` among :attr:`OPTIONS`."""
        ...

    def reachable(self, timeout: float = ...) -> tuple[bool, str]:
        """Whether a scheduler answers here, and why not (for auto-detection)."""
        ...

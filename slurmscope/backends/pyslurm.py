"""The pyslurm backend: Slurm's C API in-process, through the pyslurm bindings.

One RPC per submitted array instead of a fork of ``sbatch``, and one RPC
(``pyslurm.Jobs.load()``) for the states of every unfinished job. It submits the very batch
script the sbatch backend submits, built into a ``pyslurm.JobSubmitDescription`` from the
same backend-neutral :class:`~slurmscope.spec.JobSpec`
(:mod:`~slurmscope.backends.pyslurm_description`).

**One thread.** pyslurm holds the GIL during every RPC and libslurm keeps process-wide state
(its configuration, its connection settings, ``errno``). So every pyslurm call of a backend,
the ``import pyslurm`` included, runs on one thread the backend owns
(``slurmscope-pyslurm``): driver threads put a callable on its queue and wait for its
future. Many threads may submit at once; their RPCs run one after the other, each built
only from its own spec. Retries of transient controller errors sleep on the caller's
thread, not on the RPC thread, so one caller backing off does not hold up the others.

**What pyslurm is used for, and its quirks handled here** (pyslurm 25.11):

- ``JobSubmitDescription(...).submit()`` returns the job id. Dependencies are given as
  Slurm's string, never as a dict: a dict is modified in place by ``submit()`` (its
  ``satisfy`` key is popped), so a retried submission would lose it. A new description is
  built for every attempt. ``time_limit`` goes as whole minutes (an int) when the spec
  holds plain minutes: pyslurm hands a digit *string* to a C integer and fails.
- ``Jobs.load()`` answers every job of the cluster in one RPC. ``Job.array_task_id`` reads
  back as ``None`` for task 0 (pyslurm maps the value 0 to "unset"), the same as for the
  one record that holds an array's still-pending tasks; the latter is told apart by its
  ``array_tasks_waiting`` range. ``Job.load(array_id)`` returns only the first record of
  an array, so it is never used for states.
- ``Job(id).cancel()`` cancels a job or a whole array. It takes an integer id only: a
  started array task can be reached by its own id, but the still-pending tasks of an array
  have none. So cancelling *one task* of an array goes through ``scancel JOBID_INDEX``.
  pyslurm judges the kill RPC by the thread's ``errno``, which libslurm leaves set after
  calls that succeed: an error it raises is believed only if the job has not ended.
- ``pyslurm.Nodes.load()`` gives the nodes' hostnames, for the check that the job
  directory root is shared with them (as the sbatch backend does with ``sinfo``).
- ``pyslurm.Partitions.load()`` and ``pyslurm.Nodes.load()`` are read once, on the first
  submission, for the partitions' limits (``Partition.max_time`` in minutes,
  ``max_cpus_per_node``, ``max_memory_per_node`` in MiB, ``is_default``; ``Node.partitions``,
  ``effective_cpus``, ``real_memory``): a request that can never run is refused at submit.
  pyslurm gives ``"UNLIMITED"`` (a string) or ``None`` where there is no limit.
- ``pyslurm.slurmctld.Config.load()`` is read once, for ``MaxArraySize``
  (``Config.max_array_size``), the cluster's name and the controller's Slurm version.
- ``pyslurm.RPCError`` carries ``errno`` and ``msg`` (``slurm_strerror``); they become
  :class:`~slurmscope.errors.SubmissionError` with Slurm's message. Transient ones
  (controller unreachable, busy, timed out) are retried with backoff.

**Configuration and versions** (:mod:`~slurmscope.backends.pyslurm_import`). libslurm
reads ``$SLURM_CONF`` (or ``slurm_conf=``) once per process, at ``import pyslurm``; a file
it cannot read would end the process, so it is checked first. pyslurm X.Y builds only
against Slurm X.Y; a mismatch raises :class:`~slurmscope.errors.BackendUnavailableError`
naming the fallback, ``Cluster('sbatch')``. Without pyslurm installed slurmscope loses
nothing but this backend (``pip install 'slurmscope[pyslurm]'``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, TypeVar

from .. import limits
from ..errors import BackendUnavailableError, ClusterFullError, SchedulerError, SubmissionError
from ..log import log
from ..spec import JobSpec, Resources
from ..states import TERMINAL_STATES, StateMap, TaskStates
from ._slurm import (
    ALREADY_ENDED_ERRNOS,
    ESLURM_DEPENDENCY,
    ESLURM_INVALID_ARRAY,
    ESLURM_INVALID_PARTITION_NAME,
    FULL_ERRNOS,
    FULL_RANGES,
    VERSION_ERRNOS,
    check_scancel,
    count_array_range,
    is_transient,
    local_node_names,
    partial_output,
    retry_transient,
    slurm_conf_problem,
    tasks_per_array,
)
from .base import Backend
from .pyslurm_description import description_fields
from .pyslurm_environment import given_environment_only
from .pyslurm_import import bad_conf, mismatch, probe
from .pyslurm_records import JobRecord, dependency_text, job_records, load_limits
from .pyslurm_thread import RPCThread

T = TypeVar("T")

_HINTS = {
    ESLURM_INVALID_PARTITION_NAME: "check partition= (sinfo lists the partitions)",
    ESLURM_DEPENDENCY: "a dependency names a job Slurm does not accept",
    ESLURM_INVALID_ARRAY: "the array is larger than MaxArraySize or malformed",
}


def reachable(timeout: float = 10.0) -> tuple[bool, str]:
    """Whether pyslurm imports, matches the cluster's Slurm, and the controller answers.

    Never ends the calling process: the first import is tried in a child process.
    """
    rpc = RPCThread("slurmscope-pyslurm-probe")
    try:
        _, info = rpc.run(probe, None, timeout, timeout=timeout)
    except BackendUnavailableError as exc:
        log.info("slurmscope.pyslurm.unusable", reason=str(exc))
        return False, str(exc)
    except FutureTimeout:
        return False, f"the Slurm controller did not answer pyslurm within {timeout} s"
    finally:
        rpc.close(wait=False)
    return True, (
        f"pyslurm {info.pyslurm_version} imports and the controller answers "
        f"(Slurm {info.slurm_version}, cluster {info.cluster_name})"
    )


#: The options ``Cluster('pyslurm', ...)`` passes to this backend.
OPTIONS: tuple[str, ...] = ("retries", "retry_delay", "slurm_conf")


def create(root: Path, **options: Any) -> PyslurmBackend:
    """The pyslurm backend (``root``, the cluster's job root, is not its concern)."""
    return PyslurmBackend(**options)


class PyslurmBackend(Backend):
    """Talks to Slurm through pyslurm's C bindings, on one dedicated thread."""

    kind = "pyslurm"
    sparse_arrays = True
    poll_interval = (0.25, 5.0)
    #: Seconds one ``scancel`` (of one array task) may take.
    scancel_timeout = 60.0

    def __init__(
        self, *, retries: int = 6, retry_delay: float = 0.5, slurm_conf: str | None = None
    ) -> None:
        """``slurm_conf`` points at another cluster's slurm.conf (default: ``$SLURM_CONF``
        or Slurm's own default). libslurm reads it once per process, at ``import pyslurm``:
        every pyslurm cluster of a process must use the same one."""
        problem = slurm_conf_problem(slurm_conf)
        if problem:
            raise bad_conf(problem)
        self.retries = retries
        self.retry_delay = retry_delay
        self.calls: dict[str, int] = {"submit": 0, "load": 0, "cancel": 0}
        self._rpc = RPCThread("slurmscope-pyslurm")
        self._partitions: dict[str, limits.PartitionLimits] | None = None
        self._limits_lock = threading.Lock()
        try:
            self._pyslurm, self._info = self._rpc.run(probe, slurm_conf)
        except BaseException:
            self._rpc.close()
            raise
        self.cluster_name = self._info.cluster_name
        self.pyslurm_version = self._info.pyslurm_version
        self.slurm_version = self._info.slurm_version
        log.info(
            "slurmscope.pyslurm.ready",
            pyslurm=self.pyslurm_version,
            slurm=self.slurm_version,
            cluster=self.cluster_name,
        )

    @property
    def rpc_thread(self) -> threading.Thread | None:
        """The thread every pyslurm call of this backend runs on (``None`` until first use)."""
        return self._rpc.thread

    @property
    def max_array_size(self) -> int | None:
        return tasks_per_array(self._info.max_array_size or 1001, self._info.scheduler_parameters)

    def job_capacity(self, count: bool) -> limits.JobCapacity | None:
        """``MaxJobCount`` from the configuration read at start; the jobs in the system from
        one ``Jobs.load()`` (an array's pending tasks are one record with their range)."""
        if not self._info.max_job_count:
            return None
        if not count:
            return limits.JobCapacity(self._info.max_job_count)
        try:
            return self._call("load", self._capacity)
        except self._pyslurm.RPCError as exc:
            log.info("slurmscope.limits.unknown", backend=self.kind, error=str(exc.msg))
            return limits.JobCapacity(self._info.max_job_count)

    def _capacity(self) -> limits.JobCapacity:
        """On the RPC thread: every job record, each pending-tasks record counted by its
        range, as slurmctld counts them."""
        held = 0
        for job in self._load_jobs().values():
            waiting = job.array_tasks_waiting if job.array_task_id is None else None
            held += count_array_range(waiting) if waiting else 1
        return limits.JobCapacity(self._info.max_job_count or 0, held)

    def close(self) -> None:
        """Stop the RPC thread; a later call (a handle still waiting) starts a new one."""
        self._rpc.close()

    def request_limits(self, resources: Resources) -> list[limits.PartitionLimits] | None:
        """From ``pyslurm.Partitions.load()`` and ``pyslurm.Nodes.load()``, read once."""
        with self._limits_lock:
            if self._partitions is None:
                try:
                    self._partitions = self._call("load", self._load_limits)
                except self._pyslurm.RPCError as exc:  # Slurm judges alone, as before
                    log.info("slurmscope.limits.unknown", backend=self.kind, error=str(exc.msg))
                    self._partitions = {}
        return limits.for_request(resources, self._partitions)

    # -- the seam -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        self.refuse_impossible(spec)
        fields = description_fields(spec, self._info.rlimits, self._info.hydra_bootstrap)
        if "nodes" not in fields:
            # Without nodes, JobSubmitDescription pins the job to exactly one node (min =
            # max = 1), where sbatch leaves the count to Slurm: give Slurm the same room.
            known = self.request_limits(spec.resources) or []
            most = max((part.nodes for part in known), default=1)
            if most > 1:
                fields["nodes"] = f"1-{most}"
        pyslurm = self._pyslurm

        tasks = len(spec.array.indices) if spec.array else 1

        def submit() -> int:
            # A new description every attempt, and dependencies as a string: pyslurm
            # modifies a dependency dict in place.
            try:
                with given_environment_only(pyslurm.JobSubmitDescription):
                    job_id: int = pyslurm.JobSubmitDescription(**fields).submit()
            except pyslurm.RPCError as exc:
                if exc.errno in FULL_ERRNOS:  # retried unless the controller is full
                    problem = limits.job_count_refusal(tasks, self._capacity())
                    if problem:
                        raise ClusterFullError(spec.name, problem, self.kind) from exc
                raise
            return job_id

        try:
            job_id = self._call("submit", submit)
        except pyslurm.RPCError as exc:
            raise self._error("Slurm refused the job", exc) from exc
        except (ValueError, TypeError) as exc:  # pyslurm's own checks, before any RPC
            raise SubmissionError(f"pyslurm refused the job description: {exc}") from exc
        return str(job_id)

    def states(self, job_ids: Sequence[str]) -> StateMap:
        if not job_ids:
            return {}
        try:
            records = self._call("load", self._load_all, retries=0)  # the poller backs off
        except self._pyslurm.RPCError as exc:
            raise self._error("pyslurm.Jobs.load() failed", exc, SchedulerError) from exc
        wanted = set(job_ids)
        answer: dict[str, TaskStates] = {}
        for job_id, spans, state in records:
            if job_id in wanted:
                tasks = answer.setdefault(job_id, TaskStates())
                for span in spans:
                    tasks.add(span, state)
        return answer

    def cancel(self, job_id: str, index: int | None = None) -> None:
        if index is not None:
            # pyslurm.Job takes an integer id, and pending array tasks have none of their
            # own. One task goes to scancel as JOBID_INDEX.
            self._scancel(f"{job_id}_{index}")
            return
        pyslurm = self._pyslurm
        try:
            self._call("cancel", self._cancel_job, int(job_id))
        except pyslurm.RPCError as exc:
            if exc.errno in ALREADY_ENDED_ERRNOS:
                return
            raise self._error(f"cancelling job {job_id} failed", exc, SchedulerError) from exc

    def _cancel_job(self, job_id: int) -> None:
        """``Job(id).cancel()``, on the RPC thread, believed only when the job says so.

        pyslurm decides whether the kill RPC failed from the thread's ``errno`` (not from
        the RPC's return code), and libslurm does not clear ``errno`` on success: a cancel
        that worked can raise with whatever an earlier call (or a socket call inside this
        one) left there. So a raised error counts only if the job has not in fact ended or
        been cancelled.
        """
        pyslurm = self._pyslurm
        try:
            pyslurm.Job(job_id).cancel()
        except pyslurm.RPCError as exc:
            states = [
                job.state
                for job in self._load_jobs().values()
                if job.id == job_id or job.array_id == job_id
            ]
            if all(state in TERMINAL_STATES for state in states):
                log.info(
                    "slurmscope.pyslurm.stale_errno",
                    job_id=job_id,
                    errno=exc.errno,
                    error=exc.msg,
                    states=sorted(set(states)),
                )
                return
            raise

    def node_hosts(self) -> Sequence[str] | None:
        """The cluster's nodes (``pyslurm.Nodes.load()``) for the check that the root is
        shared: a node whose ``NodeAddr`` is this machine counts as this machine."""
        pyslurm = self._pyslurm
        try:
            nodes = self._call(
                "load",
                lambda: [(n.hostname or n.name, n.address) for n in pyslurm.Nodes.load().values()],
            )
        except pyslurm.RPCError:
            return []
        return local_node_names(nodes)

    # -- introspection for tests and the CLI ------------------------------------------------
    def recorded_dependencies(self, job_id: str) -> str | None:
        """The dependencies Slurm holds for a job, in Slurm's syntax (from ``Job.load``)."""
        pyslurm = self._pyslurm
        try:
            deps = self._call("load", lambda: pyslurm.Job.load(int(job_id)).dependencies)
        except pyslurm.RPCError as exc:
            raise self._error(f"pyslurm.Job.load({job_id}) failed", exc, SchedulerError) from exc
        return dependency_text(deps)

    # -- on the RPC thread --------------------------------------------------------------------
    def _load_jobs(self) -> Mapping[int, Any]:
        """``Jobs.load()`` with array task ranges in full (``SLURM_BITSTR_LEN=0``), not cut
        at 64 characters with "...". libslurm reads the variable once, at the first range it
        formats, which happens inside some load; so it is set for every load, and only then:
        pyslurm copies every ``SLURM_*`` variable of the process into the jobs it submits,
        which must not get it."""
        saved = {name: os.environ.get(name) for name in FULL_RANGES}
        os.environ.update(FULL_RANGES)
        try:
            jobs: Mapping[int, Any] = self._pyslurm.Jobs.load()
            return jobs
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _load_all(self) -> list[JobRecord]:
        """Every job record as (job id as submitted, task indices, state)."""
        return job_records(self._load_jobs().values())

    def _load_limits(self) -> dict[str, limits.PartitionLimits]:
        """Every partition's limits (on the RPC thread)."""
        return load_limits(self._pyslurm)

    # -- calls, retries and errors ------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, retries: int | None = None) -> T:
        """Run ``fn`` on the RPC thread; retry transient Slurm errors with backoff."""

        def attempt() -> T:
            self.calls[what] = self.calls.get(what, 0) + 1
            try:
                return self._rpc.run(fn, *args)
            except self._pyslurm.RPCError as exc:
                if exc.errno in VERSION_ERRNOS:
                    raise BackendUnavailableError(
                        mismatch(f"pyslurm {self.pyslurm_version}: {exc.msg}")
                    ) from exc
                raise

        return retry_transient(
            attempt,
            transient=self._transient_fields,
            retries=self.retries if retries is None else retries,
            delay=self.retry_delay,  # sleeps on the caller's thread: the RPC thread serves others
            command=f"pyslurm {what}",
        )

    def _transient_fields(self, exc: Exception) -> dict[str, object] | None:
        if isinstance(exc, self._pyslurm.RPCError) and is_transient(str(exc.msg), exc.errno):
            return {"error": exc.msg, "errno": exc.errno}
        return None

    def _error(
        self, what: str, exc: Any, kind: type[SubmissionError | SchedulerError] = SubmissionError
    ) -> SubmissionError | SchedulerError:
        hint = _HINTS.get(exc.errno)
        if exc.errno == ESLURM_INVALID_ARRAY:
            hint = f"{hint}; MaxArraySize is {self.max_array_size}"
        tail = f"; {hint}" if hint else ""
        return kind(f"{what}: {exc.msg} (Slurm errno {exc.errno}{tail})")

    def _scancel(self, target: str) -> None:
        scancel = shutil.which("scancel")
        if scancel is None:
            raise SchedulerError(
                f"cannot cancel array task {target}: pyslurm has no call for one task of an "
                "array and scancel is not on PATH. Cancel the whole array instead."
            )
        log.info("slurmscope.pyslurm.cancel_task", target=target, via="scancel")
        self.calls["scancel"] = self.calls.get("scancel", 0) + 1
        timeout = self.scancel_timeout
        try:
            proc = subprocess.run(
                [scancel, target], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            said = partial_output(exc)
            raise SchedulerError(
                f"scancel {target} did not finish within {timeout} s"
                + (f"; it said: {said}" if said else "")
            ) from exc
        check_scancel(target, proc)

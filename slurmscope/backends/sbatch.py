"""The Slurm command-line backend: ``sbatch``, ``squeue``, ``scontrol``, ``scancel``.

One ``sbatch --parsable`` per submitted array (the script comes on stdin: no temporary
files), one ``squeue`` per poll for every unfinished job of the cluster, ``scontrol show
config`` once for ``MaxArraySize`` and the cluster's name. Transient controller errors are
retried with backoff; permanent ones raise :class:`~slurmscope.errors.SubmissionError` with
Slurm's own message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .. import limits
from ..dependency import render
from ..errors import BackendUnavailableError, ClusterFullError, SchedulerError, SubmissionError
from ..log import log
from ..spec import JobSpec, Resources
from ..states import (
    TERMINAL_STATES,
    StateMap,
    TaskState,
    TaskStates,
    exit_code_in_words,
    task_state,
)
from ._slurm import (
    FULL_MESSAGES,
    FULL_RANGES,
    array_range_spans,
    check_scancel,
    count_array_range,
    is_transient,
    local_node_names,
    partial_output,
    retry_transient,
    scheduler_parameters,
    slurm_conf_problem,
    tasks_per_array,
    users_ranges,
)
from .base import Backend
from .inherited import child_environment
from .sbatch_output import (
    configuration,
    key_values,
    partition_limits,
    wait_status_exit_code,
)
from .slurm_request import batch_script, requested, requeueable

_RANGE = re.compile(r"^(\d+)_\[(.+)\]$")


def reachable(timeout: float = 10.0, slurm_conf: str | None = None) -> tuple[bool, str]:
    """Whether the Slurm CLI is here and the controller answers ``scontrol ping``."""
    env = _environment(slurm_conf)
    if not shutil.which("sbatch") or not shutil.which("scontrol"):
        return False, "sbatch or scontrol is not on PATH"
    problem = slurm_conf_problem(slurm_conf)
    if problem:
        return False, problem
    try:
        out = subprocess.run(
            ["scontrol", "ping"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        said = partial_output(exc)
        return False, f"scontrol ping did not answer within {timeout} s" + (
            f"; it said: {said}" if said else ""
        )
    except OSError as exc:
        return False, f"scontrol ping failed: {exc}"
    text = (out.stdout + out.stderr).strip()
    if out.returncode == 0 and "UP" in text:
        return True, f"sbatch on PATH and the controller answers ({text.splitlines()[0]})"
    return False, f"the Slurm controller does not answer: {text or out.returncode}"


def _environment(slurm_conf: str | None) -> dict[str, str]:
    env = dict(os.environ)
    if slurm_conf:
        env["SLURM_CONF"] = str(slurm_conf)
    return env


#: The options ``Cluster('sbatch', ...)`` passes to this backend.
OPTIONS: tuple[str, ...] = ("retries", "command_timeout", "slurm_conf")


def create(root: Path, **options: Any) -> SbatchBackend:
    """The sbatch backend (``root``, the cluster's job root, is not its concern)."""
    return SbatchBackend(**options)


def sbatch_arguments(spec: JobSpec) -> list[str]:
    """The ``sbatch`` command line for ``spec`` (the script comes on stdin)."""
    r = spec.resources
    args = [
        "sbatch",
        "--parsable",
        f"--job-name={r.job_name or spec.name}",
        f"--output={spec.stdout}",
        f"--error={spec.stderr}",
        f"--chdir={spec.workdir}",
        "--export=ALL",
    ]
    if spec.kill_on_invalid_dep:
        args.append("--kill-on-invalid-dep=yes")
    if spec.array is not None:
        args.append(f"--array={spec.array.render()}")
    if spec.dependencies:
        args.append(f"--dependency={render(spec.dependencies)}")
    args.extend(f"{option.flag}={value}" for option, value in requested(r))
    if requeueable(r):
        args.extend(("--requeue", "--open-mode=append"))  # every run's output kept
    args.extend(r.extra)
    return args


class SbatchBackend(Backend):
    """Talks to Slurm through its command-line tools."""

    kind = "sbatch"
    sparse_arrays = True
    #: Result files are looked at often (cheap); every squeue costs slurmctld three RPCs
    #: and a process here, so it is asked only when the files have been quiet for a while.
    poll_interval = (0.25, 2.0)
    query_interval = (2.0, 5.0)
    #: ``sbatch`` processes of one split map run at once: each spends most of its time
    #: starting and waiting for the controller, which takes submissions one at a time.
    parallel_submissions = 4

    def __init__(
        self,
        *,
        retries: int = 6,
        command_timeout: float = 60.0,
        slurm_conf: str | None = None,
    ) -> None:
        """``slurm_conf`` points at another cluster's slurm.conf (default: ``$SLURM_CONF``
        or Slurm's own default)."""
        self.slurm_conf = slurm_conf
        problem = slurm_conf_problem(slurm_conf)
        if problem:
            raise BackendUnavailableError(
                f"the sbatch backend cannot read Slurm's configuration: {problem}. Point "
                "slurm_conf= (or SLURM_CONF) at the cluster's slurm.conf, or leave both unset "
                "to use Slurm's default."
            )
        ok, why = reachable(slurm_conf=slurm_conf)
        if not ok:
            raise BackendUnavailableError(
                f"the sbatch backend cannot reach Slurm: {why}. Start the cluster (for tests: "
                "scripts/slurm-cluster start), set SLURM_CONF, or use Cluster('local')."
            )
        self.retries = retries
        self.command_timeout = command_timeout
        self.calls: dict[str, int] = {"sbatch": 0, "squeue": 0, "scancel": 0, "scontrol": 0}
        self._config: dict[str, str] | None = None
        self._partitions: dict[str, limits.PartitionLimits] | None = None
        self._lock = threading.Lock()
        self.cluster_name = self.config().get("ClusterName", "slurm")

    # -- configuration ------------------------------------------------------------------------
    def config(self) -> dict[str, str]:
        """``scontrol show config``, read once."""
        with self._lock:
            if self._config is None:
                out = self._run(["scontrol", "show", "config"], what="scontrol")
                self._config = configuration(out)
            return self._config

    def request_limits(self, resources: Resources) -> list[limits.PartitionLimits] | None:
        """From ``scontrol show partition`` and ``scontrol show node``, read once."""
        with self._lock:
            if self._partitions is None:
                try:
                    parts = self._run(
                        ["scontrol", "--oneliner", "show", "partition"], what="scontrol"
                    )
                    nodes = self._run(["scontrol", "--oneliner", "show", "node"], what="scontrol")
                    self._partitions = partition_limits(parts, nodes)
                except SchedulerError as exc:  # Slurm judges alone, as before
                    log.info("slurmscope.limits.unknown", backend=self.kind, error=str(exc))
                    self._partitions = {}
        return limits.for_request(resources, self._partitions)

    @property
    def max_array_size(self) -> int | None:
        config = self.config()
        value = config.get("MaxArraySize", "1001").split()[0]
        size = int(value) if value.isdigit() else 1001
        return tasks_per_array(size, scheduler_parameters(config.get("SchedulerParameters", "")))

    def job_capacity(self, count: bool) -> limits.JobCapacity | None:
        """``MaxJobCount`` from ``scontrol show config``; the jobs in the system from one
        ``squeue --states=all`` of every job (pending array tasks as one range a record)."""
        value = self.config().get("MaxJobCount", "").split()[0:1]
        if not value or not value[0].isdigit():
            return None
        if not count:
            return limits.JobCapacity(int(value[0]))
        proc = self._call(
            ["squeue", "--noheader", "--states=all", "--format=%i"],
            what="squeue",
            env={**_environment(self.slurm_conf), **FULL_RANGES},
        )
        if proc.returncode != 0:
            log.info("slurmscope.limits.unknown", backend=self.kind, error=proc.stderr.strip())
            return limits.JobCapacity(int(value[0]))
        held = 0
        for line in proc.stdout.split():
            _, _, index = line.partition("_")
            held += count_array_range(index) if index.startswith("[") else 1
        return limits.JobCapacity(int(value[0]), held)

    # -- the seam -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        self.refuse_impossible(spec)
        args = sbatch_arguments(spec)
        # The environment as it is now (sbatch --export=ALL sends the current one), not as
        # it was when the backend was made; inside a job, without what describes that job
        # (sbatch would apply it to this one, and pass it on).
        env = users_ranges(child_environment(_environment(self.slurm_conf)))
        env.update(spec.environment)
        out = self._run(
            args,
            what="sbatch",
            stdin=batch_script(spec),
            env=env,
            submit=True,
            full=lambda: self._full(spec),
        )
        job_id = out.strip().split(";")[0]
        if not job_id.isdigit():
            raise SubmissionError(f"sbatch printed {out!r} instead of a job id")
        return job_id

    def states(self, job_ids: Sequence[str]) -> StateMap:
        if not job_ids:
            return {}
        wanted = set(job_ids)
        proc = self._call(
            [
                "squeue",
                "--noheader",
                # No --array: an array's pending tasks come as one line, 12_[5-999999], not
                # as a line each (a million lines for a map of a million pending tasks).
                "--states=all",
                # Each field ends with "|" and has no width: nothing padded, nothing cut.
                "--Format=JobArrayID:|,State:|,Reason:|,exit_code:",
                f"--jobs={','.join(job_ids)}",
            ],
            what="squeue",
            retries=0,  # the poller backs off and asks again
            env={**_environment(self.slurm_conf), **FULL_RANGES},
        )
        if proc.returncode != 0:
            if "Invalid job id" in proc.stderr:  # every one of them is forgotten
                return {}
            raise SchedulerError(f"squeue failed: {proc.stderr.strip()}")
        answer: dict[str, TaskStates] = {}
        # One TaskState per (state, reason, exit code), shared: the poller keeps every
        # task's state.
        shared: dict[tuple[str, str, str], TaskState] = {}
        for line in proc.stdout.splitlines():
            fields = line.strip().split("|")
            if len(fields) < 3:
                continue
            ident, state, reason = fields[:3]
            status = fields[3] if len(fields) > 3 else ""
            state = state.split()[0].rstrip("+")
            task = shared.get((state, reason, status))
            if task is None:
                task = shared[state, reason, status] = task_state(
                    state,
                    reason,
                    wait_status_exit_code(status) if state in TERMINAL_STATES else None,
                )
            job_id, _, index = ident.partition("_")
            if job_id not in wanted:
                continue
            tasks = answer.setdefault(job_id, TaskStates())
            if not index:
                tasks.add(range(1), task)
            elif (m := _RANGE.match(ident)) is not None:
                for span in array_range_spans(m.group(2)):
                    tasks.add(span, task)
            else:
                tasks.add(range(int(index), int(index) + 1), task)
        return answer

    def cancel(self, job_id: str, index: int | None = None) -> None:
        target = job_id if index is None else f"{job_id}_{index}"
        check_scancel(target, self._call(["scancel", target], what="scancel"))

    def node_hosts(self) -> Sequence[str] | None:
        """The cluster's nodes for the check that the root is shared (``sinfo``): a node
        whose ``NodeAddr`` is this machine counts as this machine, whatever its hostname."""
        proc = self._call(["sinfo", "--noheader", "--Node", "--format=%n %o"], what="sinfo")
        if proc.returncode != 0:
            return []
        pairs = [(line.split() + ["", ""])[:2] for line in proc.stdout.splitlines() if line.strip()]
        return local_node_names((host or None, addr or None) for host, addr in pairs)

    # -- introspection for tests and the CLI ------------------------------------------------
    def show_job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` of one job (or array task) as a dict of its fields."""
        return key_values(
            self._run(["scontrol", "show", "job", "--oneliner", job_id], what="scontrol")
        )

    def exit_status(self, job_id: str) -> str | None:
        """How a task ended, from ``scontrol show job``: "killed by signal 9", "exit code 7"."""
        try:
            code = self.show_job(job_id).get("ExitCode", "")
        except SchedulerError:
            return None
        return exit_code_in_words(code)

    def recorded_dependencies(self, job_id: str) -> str | None:
        """The dependency expression Slurm holds for a job (``scontrol show job``)."""
        value = self.show_job(job_id).get("Dependency", "(null)")
        return "" if value == "(null)" else value

    def _full(self, spec: JobSpec) -> None:
        """After sbatch gave up on a controller that kept saying "try again": raise
        :class:`ClusterFullError` if that is because it holds ``MaxJobCount`` jobs (trying
        again would only wait two more minutes per attempt)."""
        capacity = self.job_capacity(count=True)
        tasks = len(spec.array.indices) if spec.array else 1
        problem = None if capacity is None else limits.job_count_refusal(tasks, capacity)
        if problem:
            raise ClusterFullError(spec.name, problem, self.kind)

    # -- running commands ---------------------------------------------------------------------
    def _call(
        self,
        args: list[str],
        *,
        what: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        retries: int | None = None,
        full: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a Slurm command; retry transient controller errors with backoff (``full``,
        if given, is asked first when the controller refused for lack of room, and raises
        where retrying cannot help)."""

        def attempt() -> subprocess.CompletedProcess[str]:
            self.calls[what] = self.calls.get(what, 0) + 1
            try:
                proc = subprocess.run(
                    args,
                    input=stdin,
                    capture_output=True,
                    text=True,
                    env=_environment(self.slurm_conf) if env is None else env,
                    timeout=self.command_timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                said = partial_output(exc)  # what it printed is often the real reason
                proc = subprocess.CompletedProcess(
                    args,
                    1,
                    "",
                    f"Socket timed out (command ran over {self.command_timeout} s)"
                    + (f"; it said: {said}" if said else ""),
                )
            if proc.returncode != 0 and is_transient(proc.stderr):
                if full is not None and any(m in proc.stderr for m in FULL_MESSAGES):
                    full()
                raise _Transient(proc)
            return proc

        try:
            return retry_transient(
                attempt,
                transient=_transient_fields,
                retries=self.retries if retries is None else retries,
                delay=0.5,
                command=what,
            )
        except _Transient as last:  # still failing after the retries: Slurm's answer
            return last.proc

    def _run(
        self,
        args: list[str],
        *,
        what: str,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        submit: bool = False,
        full: Callable[[], None] | None = None,
    ) -> str:
        proc = self._call(args, what=what, stdin=stdin, env=env, full=full)
        if proc.returncode != 0:
            message = proc.stderr.strip() or proc.stdout.strip()
            if submit:
                raise SubmissionError(f"Slurm refused the job: {message}")
            raise SchedulerError(f"{' '.join(args[:3])} failed: {message}")
        return proc.stdout


class _Transient(Exception):
    """A Slurm command failed in a way worth trying again."""

    def __init__(self, proc: subprocess.CompletedProcess[str]) -> None:
        super().__init__(proc.stderr)
        self.proc = proc


def _transient_fields(exc: Exception) -> dict[str, object] | None:
    return {"error": exc.proc.stderr.strip()} if isinstance(exc, _Transient) else None

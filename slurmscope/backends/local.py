"""The embedded local scheduler: Slurm's semantics, in-process, with no cluster at all.

It is a real scheduler, not a shortcut: every task runs in a subprocess through the same
command a Slurm job runs (the worker, with ``SLURM_ARRAY_TASK_ID`` and friends set), and
it honours every dependency kind, array throttles, time limits, cancellation and
``--kill-on-invalid-dep`` (dependents of failed jobs are cancelled with the reason
``DependencyNeverSatisfied``). At most as many CPUs as the machine has are in use at once.

Job ids come from a counter file under the state directory, locked with ``flock``, so they
are unique across processes sharing the same root. When a job ends, its final task states
are written next to that counter (like Slurm's accounting), so another process can still
ask for them. At interpreter exit the scheduler waits for submitted work, as
``concurrent.futures`` does; Ctrl-C during that wait cancels what is left.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SubmissionError
from ..limits import PartitionLimits
from ..log import log
from ..payload import atomic_write
from ..spec import JobSpec, Resources, time_to_seconds
from ..states import TERMINAL_STATES, StateMap, TaskState
from .base import Backend

_TICK = 0.02


@dataclass
class _Task:
    index: int
    state: str = "PENDING"
    reason: str | None = "None"
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    cancel_requested: bool = False
    timed_out: bool = False


@dataclass
class _Job:
    id: str
    seq: int
    spec: JobSpec
    cpus: int
    time_limit: float | None
    tasks: dict[int, _Task] = field(default_factory=dict)
    recorded: bool = False
    #: Why the job can never start here (it pends with this reason, as under Slurm).
    never_reason: str | None = None

    @property
    def is_array(self) -> bool:
        return self.spec.array is not None

    def task_id(self, index: int) -> str:
        return f"{self.id}_{index}" if self.is_array else self.id

    def ended(self) -> bool:
        return all(t.state in TERMINAL_STATES for t in self.tasks.values())


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
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.cpus = cpus or os.cpu_count() or 1
        self._max_array_size = max_array_size
        self._jobs: dict[str, _Job] = {}
        self._order: list[_Job] = []
        self._seq = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._cancel_dir = self.state_dir / "cancel-requests"
        atexit.register(self._drain_at_exit)

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
                    if self._find(dep_id) is None:
                        raise SubmissionError(
                            f"Job dependency problem: job {dep_id} is not known to the local "
                            "scheduler (it belongs to another process or has been forgotten)."
                        )
            job_id = self._next_id()
            self._record(job_id, {"owner": os.getpid(), "size": size, "tasks": None})
            self._seq += 1
            job = _Job(job_id, self._seq, spec, cpus, float(time_limit) if time_limit else None)
            nodes, ntasks = (
                _flag_count(spec.resources.extra, ("--nodes", "-N")),
                _flag_count(spec.resources.extra, ("--ntasks", "-n")),
            )
            if nodes > 1 or ntasks * cpus > self.cpus:
                # One node of self.cpus CPUs: Slurm (22.05) accepts such a request, made
                # through extra=[...] flags, and keeps it pending with this reason.
                job.never_reason = "PartitionConfig"
            job.tasks = {i: _Task(i) for i in range(size)}
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
            recorded = self._read_accounting(job_id)
            if recorded is not None:
                answer[job_id] = recorded
        return answer

    def cancel(self, job_id: str, index: int | None = None) -> None:
        with self._cond:
            job = self._jobs.get(job_id)
            if job is None:
                # Another process's job: leave a request its scheduler acts on.
                name = job_id if index is None else f"{job_id}_{index}"
                self._cancel_dir.mkdir(exist_ok=True)
                (self._cancel_dir / name).touch()
                return
            _cancel(job.tasks.values() if index is None else [job.tasks[index]])
            self._cond.notify_all()

    def close(self) -> None:
        """Cancel everything still pending or running and stop the scheduler thread."""
        with self._cond:
            self._closed = True
            for job in self._order:
                _cancel(job.tasks.values())
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        atexit.unregister(self._drain_at_exit)

    # -- introspection used by tests and the CLI (what ``scontrol show job`` would say) -------
    def recorded_dependencies(self, job_id: str) -> str:
        from ..dependency import render

        with self._cond:
            return render(self._jobs[job_id].spec.dependencies)

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
        try:
            names = os.listdir(self._cancel_dir)
        except FileNotFoundError:
            return
        for name in names:
            job_id, _, index = name.partition("_")
            job = self._jobs.get(job_id)
            if job is None:
                continue
            (self._cancel_dir / name).unlink(missing_ok=True)
            _cancel(job.tasks.values() if not index else [job.tasks[int(index)]])

    def _reap(self) -> None:
        now = time.monotonic()
        for job in self._order:
            for task in job.tasks.values():
                if task.state != "RUNNING" or task.proc is None:
                    continue
                code = task.proc.poll()
                if code is None:
                    if (
                        job.time_limit
                        and now - task.started > job.time_limit
                        and not task.timed_out
                    ):
                        task.timed_out = True
                        _kill(task.proc)
                    continue
                if task.cancel_requested:
                    task.state, task.reason = "CANCELLED", "None"
                elif task.timed_out:
                    task.state, task.reason = "TIMEOUT", "TimeLimit"
                elif code == 0:
                    task.state, task.reason = "COMPLETED", "None"
                elif code < 0:
                    task.state, task.reason = "FAILED", f"Signal {-code}"
                else:
                    task.state, task.reason = "FAILED", "NonZeroExitCode"
                task.proc = None

    def _schedule(self) -> None:
        free = self.cpus - sum(
            job.cpus
            for job in self._order
            for task in job.tasks.values()
            if task.state == "RUNNING"
        )
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
                status = self._dependency_status(job, task.index)
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
                self._start(job, task)
                running += 1
                free -= job.cpus

    def _start(self, job: _Job, task: _Task) -> None:
        spec = job.spec
        env = dict(os.environ)
        env.update(spec.environment)
        env.update(
            {
                "SLURM_JOB_ID": job.task_id(task.index),
                "SLURM_JOB_NAME": spec.resources.job_name or spec.name,
                "SLURM_CPUS_PER_TASK": str(job.cpus),
                "SLURM_CLUSTER_NAME": self.cluster_name,
                "SLURMSCOPE_BACKEND": self.kind,
            }
        )
        if job.is_array:
            env["SLURM_ARRAY_JOB_ID"] = job.id
            env["SLURM_ARRAY_TASK_ID"] = str(task.index)
        else:
            env.pop("SLURM_ARRAY_JOB_ID", None)
            env.pop("SLURM_ARRAY_TASK_ID", None)
        out_path = _expand(spec.stdout, job, task.index)
        err_path = _expand(spec.stderr, job, task.index)
        try:
            out = open(out_path, "ab")  # noqa: SIM115 - closed below, after Popen
            err = out if err_path == out_path else open(err_path, "ab")  # noqa: SIM115
            try:
                task.proc = subprocess.Popen(
                    list(spec.command),
                    cwd=spec.workdir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            finally:
                out.close()
                if err is not out:
                    err.close()
        except OSError as exc:
            log.error(
                "slurmscope.local.launch_failed", job_id=job.task_id(task.index), error=str(exc)
            )
            task.state, task.reason = "FAILED", f"LaunchFailed: {exc}"
            return
        task.state, task.reason = "RUNNING", "None"
        task.started = time.monotonic()

    def _dependency_status(self, job: _Job, index: int) -> str:
        """``"ok"``, ``"wait"`` or ``"never"`` for task ``index`` of ``job``."""
        result = "ok"
        for kind, ids in job.spec.dependencies:
            if kind == "singleton":
                status = self._singleton_status(job)
            else:
                status = "ok"
                for dep_id in ids:
                    one = self._one_status(kind, dep_id, index)
                    if one == "never":
                        return "never"
                    if one == "wait":
                        status = "wait"
            if status == "never":
                return "never"
            if status == "wait":
                result = "wait"
        return result

    def _one_status(self, kind: str, dep_id: str, index: int) -> str:
        found = self._find(dep_id)
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

    def _singleton_status(self, job: _Job) -> str:
        name = job.spec.resources.job_name or job.spec.name
        for other in self._order:
            if other.seq >= job.seq:
                break
            if (other.spec.resources.job_name or other.spec.name) == name and not other.ended():
                return "wait"
        return "ok"

    def _find(self, dep_id: str) -> tuple[_Job, int | None] | None:
        job_id, _, task = dep_id.partition("_")
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if task:
            if int(task) not in job.tasks:
                return None
            return job, int(task)
        return job, None

    # -- ids and accounting ------------------------------------------------------------------
    def _next_id(self) -> str:
        counter = self.state_dir / "next-job-id"
        with open(counter, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            fh.seek(0)
            text = fh.read().strip()
            value = int(text) if text else 1
            fh.seek(0)
            fh.truncate()
            fh.write(str(value + 1))
            fh.flush()
        return str(value)

    def _record(self, job_id: str, data: dict[str, object]) -> None:
        atomic_write(self.state_dir / f"job-{job_id}.json", json.dumps(data).encode())

    def _record_ended(self) -> None:
        for job in self._order:
            if job.recorded or not job.ended():
                continue
            job.recorded = True
            tasks = {str(i): [t.state, t.reason] for i, t in job.tasks.items()}
            self._record(job.id, {"owner": os.getpid(), "size": len(job.tasks), "tasks": tasks})

    def _read_accounting(self, job_id: str) -> dict[int, TaskState] | None:
        """What this root's accounting says of a job another process submitted: its final
        states once it ended; UNKNOWN (not terminal) while its process still runs it."""
        try:
            data = json.loads((self.state_dir / f"job-{job_id}.json").read_text())
        except (FileNotFoundError, ValueError):
            return None
        if data.get("tasks") is not None:
            return {int(i): TaskState(s, r) for i, (s, r) in data["tasks"].items()}
        owner = int(data.get("owner", 0))
        if owner and owner != os.getpid() and _alive(owner):
            unknown = TaskState("UNKNOWN", f"run by the local scheduler of process {owner}")
            return dict.fromkeys(range(int(data.get("size", 1))), unknown)
        return None  # its process died before the job ended

    # -- interpreter exit --------------------------------------------------------------------
    def _drain_at_exit(self) -> None:
        """At interpreter exit, wait for the jobs still queued or running, as
        ``concurrent.futures`` does, saying so on stderr; Ctrl-C cancels them. Jobs that
        can never start here are cancelled at once (waiting for them would never end)."""
        with self._cond:
            never = [job for job in self._order if job.never_reason and not job.ended()]
            for job in never:
                _cancel(job.tasks.values())
            active = [job for job in self._order if not job.ended()]
            # Those already being cancelled (killed, not yet reaped) end in moments.
            waiting = [job for job in active if not _being_cancelled(job)]
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


def _being_cancelled(job: _Job) -> bool:
    return all(
        t.cancel_requested or t.state not in ("PENDING", "RUNNING") for t in job.tasks.values()
    )


def _say(text: str) -> None:
    """One line on stderr (at exit nobody may have configured logging)."""
    with contextlib.suppress(OSError, ValueError):
        print(f"slurmscope: {text}", file=sys.stderr, flush=True)


def _ids(jobs: Sequence[_Job], shown: int = 10) -> str:
    text = ", ".join(job.id for job in jobs[:shown])
    return text + (f" and {len(jobs) - shown} more" if len(jobs) > shown else "")


def _cancel(tasks: Iterable[_Task]) -> None:
    """Cancel pending tasks at once; kill running ones (reaped as CANCELLED)."""
    for task in tasks:
        if task.state == "PENDING":
            task.state, task.reason = "CANCELLED", "None"
        elif task.state == "RUNNING" and task.proc is not None:
            task.cancel_requested = True
            _kill(task.proc)


def _memory_mib() -> int | None:
    """This machine's memory in MiB (None where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
    except (ValueError, OSError):
        return None


def _flag_count(extra: Sequence[str], names: tuple[str, str]) -> int:
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


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    timer = threading.Timer(2.0, _hard_kill, args=(proc,))
    timer.daemon = True
    timer.start()


def _hard_kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def _expand(pattern: str, job: _Job, index: int) -> str:
    return pattern.replace("%A", job.id).replace("%a", str(index)).replace("%j", job.task_id(index))

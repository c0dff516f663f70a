"""The local scheduler's tasks as processes: each started the way slurmstepd starts a job
(the job's command, Slurm's variables, output files), stopped with SIGTERM then SIGKILL,
and its end read as Slurm would record it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Mapping

from ..checkpoint import REQUEUE_EXIT
from ..log import log
from .inherited import child_environment
from .local_jobs import LocalJob, LocalTask

#: Seconds between SIGTERM and SIGKILL, as Slurm's ``KillWait`` default.
KILL_WAIT = 2.0


def start(job: LocalJob, task: LocalTask, variables: Mapping[str, str]) -> None:
    """Start ``task`` of ``job`` with ``variables`` (the cluster's) in its environment:
    RUNNING once its process runs, FAILED where it cannot be started. Its environment is
    the scheduler's process's (inside a job, without what describes that job, as on Slurm:
    :func:`~slurmscope.backends.inherited.child_environment`), the spec's, then Slurm's
    variables of the task."""
    spec = job.spec
    env = child_environment(os.environ)
    env.update(spec.environment)
    env.update(
        {
            "SLURM_JOB_ID": job.task_id(task.index),
            "SLURM_JOB_NAME": job.name,
            "SLURM_CPUS_PER_TASK": str(job.cpus),
            "SLURM_RESTART_COUNT": str(task.restarts),
            **variables,
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
        log.error("slurmscope.local.launch_failed", job_id=job.task_id(task.index), error=str(exc))
        task.state, task.reason = "FAILED", f"LaunchFailed: {exc}"
        return
    task.state, task.reason = "RUNNING", "None"
    task.started = time.monotonic()
    task.warned = task.preempted = task.timed_out = False


def watch(job: LocalJob, task: LocalTask, now: float) -> None:
    """Signal a running task as Slurm does near and at its time limit: the checkpoint
    warning (SIGUSR1 to its main process, ``--signal=B:USR1@N``), then SIGTERM/SIGKILL."""
    if task.proc is None or not job.time_limit:
        return
    ran = now - task.started
    warning = job.warning
    if warning is not None and not task.warned and ran > job.time_limit - warning:
        task.warned = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(task.proc.pid, signal.SIGUSR1)
    if ran > job.time_limit and not task.timed_out:
        task.timed_out = True
        kill(task.proc)


def preempt(task: LocalTask) -> None:
    """Preempt a running task as Slurm's ``PreemptMode=REQUEUE`` does: SIGTERM, SIGKILL
    :data:`KILL_WAIT` seconds later (its grace time), then back to the queue."""
    if task.state == "RUNNING" and task.proc is not None:
        task.preempted = True
        kill(task.proc)


def ended(task: LocalTask, code: int, checkpointing: bool = False) -> None:
    """Record how ``task`` ended, its process having exited with ``code``: a preempted
    task, or a checkpointing one that asked for it (exit code ``REQUEUE_EXIT``), goes back
    to the queue, as Slurm requeues it."""
    if not task.cancel_requested and (
        (task.preempted and code != 0) or (checkpointing and code == REQUEUE_EXIT)
    ):
        task.state, task.reason = "PENDING", "BeginTime"
        task.restarts += 1
    elif task.cancel_requested:
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


def cancel(tasks: Iterable[LocalTask]) -> None:
    """Cancel pending tasks at once; kill running ones (reaped as CANCELLED)."""
    for task in tasks:
        if task.state == "PENDING":
            task.state, task.reason = "CANCELLED", "None"
        elif task.state == "RUNNING" and task.proc is not None:
            task.cancel_requested = True
            kill(task.proc)


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the task's process group, SIGKILL :data:`KILL_WAIT` seconds later."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    timer = threading.Timer(KILL_WAIT, _hard_kill, args=(proc,))
    timer.daemon = True
    timer.start()


def _hard_kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (one of another user counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _expand(pattern: str, job: LocalJob, index: int) -> str:
    return pattern.replace("%A", job.id).replace("%a", str(index)).replace("%j", job.task_id(index))

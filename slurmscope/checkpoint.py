"""Checkpoints: a task saves its progress in its job directory and resumes from it after a
requeue (a time limit, a preemption, a node failure).

Two forms, for the code of a task:

- the function form: :func:`load_checkpoint` returns the state the task saved last (or the
  default, on the first run), :func:`save_checkpoint` saves a new one whenever the task
  likes;
- the callable-object form, for users coming from submitit: an object with a
  ``checkpoint(*args, **kwargs)`` method (subclass :class:`Checkpointable`) that returns a
  :class:`Resume` saying what to call, with which arguments, when the task runs again.

Where they live, per task ``i`` of a job directory::

    checkpoints/<i>.pkl        the last saved state (or Resume), written atomically
    checkpoints/<i>.requeues   one line per requeue of the task: its reason (written by
                               the task, before it asks for it, or when it starts again
                               after one Slurm made: a preemption or a node failure)
    checkpoints/<i>.terminated the task was sent SIGTERM (preempted, or cancelled)

The worker imports this module in every task: standard library only, and only ``os`` (and
``contextvars``, through :mod:`slurmscope.running_task`, which says which task this thread
runs) at import (``signal`` and ``subprocess`` are imported by tasks that checkpoint).
"""

from __future__ import annotations

import os

from .errors import UnsafeJobDirectoryError
from .payload import atomic_write, dumps, loads, write_outcome
from .payload_guard import make_dir, problem, read_file, refuse
from .running_task import current, enter, leave

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

CHECKPOINTS = "checkpoints"
#: The environment variable that turns checkpointing on in a task: ``MAX_REQUEUES:BACKEND``.
ENVIRONMENT = "SLURMSCOPE_CHECKPOINT"
#: The exit code of a local task that asks to be requeued (the local scheduler's
#: ``scontrol requeue``); under Slurm the worker calls scontrol or pyslurm itself.
REQUEUE_EXIT = 75
#: Seconds before the time limit a checkpointing task is warned, unless told otherwise.
DEFAULT_WARNING = 60
#: Requeues a checkpointing task may have, unless told otherwise.
DEFAULT_MAX_REQUEUES = 3
#: The reasons of requeues the job directory records.
TIME_LIMIT = "time limit"
PREEMPTION = "preemption"
NODE_FAILURE = "node failure"

_one_task_per_process = False


def one_task_per_process() -> None:
    """Said by the worker's ``main``: this process runs one task, so threads the task starts
    may checkpoint too."""
    global _one_task_per_process
    _one_task_per_process = True


class Resume:
    """What the callable-object form's ``checkpoint()`` returns: call ``fn(*args,
    **kwargs)`` when the task runs again (``fn`` is usually the object itself, holding the
    progress made)."""

    def __init__(self, fn: Any, /, *args: Any, **kwargs: Any) -> None:
        self.fn, self.args, self.kwargs = fn, args, kwargs

    def __repr__(self) -> str:
        return f"Resume({self.fn!r}, *{self.args!r}, **{self.kwargs!r})"


class Checkpointable:
    """Base class of the callable-object form: a task whose object is called with the
    task's arguments, and asked by :meth:`checkpoint` how to resume before a requeue."""

    def checkpoint(self, *args: Any, **kwargs: Any) -> Resume | None:
        """Called when the task is about to be requeued, with the arguments of the call
        that runs: return a :class:`Resume` (by default: this object, as it is now, with
        the same arguments), or ``None`` to keep the state saved last."""
        return Resume(self, *args, **kwargs)


class RequeueLimitError(RuntimeError):
    """A checkpointed task was requeued as often as its ``max_requeues`` allows."""


def _path(suffix: str) -> str:
    task = current()
    if task is None:
        raise RuntimeError(
            "load_checkpoint()/save_checkpoint() work inside a slurmscope task only: call "
            "them in the function a task runs."
        )
    directory, index = task
    return os.path.join(_folder(directory), f"{index}{suffix}")


def _folder(directory: str) -> str:
    """The job directory's ``checkpoints/``, made as private as the job directory (never
    with the umask's mode), and checked like everything slurmscope loads: yours (or
    root's), a real directory, writable by no one else (docs/reliability.md, Security)."""
    folder = os.path.join(directory, CHECKPOINTS)
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        try:  # noqa: SIM105 - contextlib is one import more for every task
            make_dir(folder, os.stat(directory).st_mode & 0o750)
        except FileExistsError:  # another task of the array made it meanwhile
            pass
        st = os.lstat(folder)
    why = problem(st, directory=True)
    if why is not None:
        raise refuse(folder, folder, st, why)
    return folder


def _read(path: str) -> bytes | None:
    """A checkpoint file's bytes after the checks of its job directory (two levels up:
    ``DIR/checkpoints/<index>.<suffix>``); ``None`` when there is none."""
    return read_file(path, os.path.dirname(os.path.dirname(path)))


def save_checkpoint(state: Any) -> None:
    """Save ``state`` as this task's checkpoint, atomically: after a requeue,
    :func:`load_checkpoint` returns it (or a later one)."""
    path = _path(".pkl")
    try:
        blob = dumps(state, protocol=5)
    except Exception:
        import cloudpickle  # lambdas, objects of classes defined in __main__...

        blob = cloudpickle.dumps(state, protocol=5)
    atomic_write(path, blob)


def load_checkpoint(default: Any = None) -> Any:
    """The state this task saved last with :func:`save_checkpoint` (in an earlier run of
    the same task, before a requeue), or ``default`` when it saved none."""
    blob = _read(_path(".pkl"))
    return default if blob is None else loads(blob)


def requeue_count() -> int:
    """How many times this task has been requeued so far (0 on its first run): those it
    asked for before its time limit, or Slurm's count if higher (preemption, node failure)."""
    return max(_recorded_count(), int(os.environ.get("SLURM_RESTART_COUNT") or 0))


def _recorded_count() -> int:
    text = (_read(_path(".requeues")) or b"").decode()
    return sum(1 for line in text.splitlines() if line.strip())


def recorded_requeues(directory: str) -> dict[int, list[str]]:
    """The requeues recorded in job directory ``directory``: ``{task index: [reason, ...]}``
    (one listing; empty for a job without checkpoints)."""
    folder = os.path.join(directory, CHECKPOINTS)
    try:
        names = os.listdir(folder)
        if problem(os.lstat(folder), directory=True) is not None:
            return {}  # records someone else could have written tell nothing
    except (FileNotFoundError, NotADirectoryError):
        return {}
    found: dict[int, list[str]] = {}
    for name in names:
        stem, dot, suffix = name.partition(".")
        if suffix == "requeues" and stem.isdigit():
            try:
                text = (read_file(os.path.join(folder, name), directory) or b"").decode()
            except (OSError, UnsafeJobDirectoryError):
                continue
            found[int(stem)] = [line.strip() for line in text.splitlines() if line.strip()]
    return found


def was_terminated(directory: str, index: int) -> bool:
    """Whether task ``index``'s last run was sent SIGTERM (preempted, if it was requeued)."""
    return os.path.exists(os.path.join(directory, CHECKPOINTS, f"{index}.terminated"))


def _note_restart() -> None:
    """Record the requeues Slurm made since the last run (``SLURM_RESTART_COUNT`` beyond
    the recorded ones): a preemption if the last run was sent SIGTERM, else a node failure
    (its node went away without a word)."""
    missing = int(os.environ.get("SLURM_RESTART_COUNT") or 0) - _recorded_count()
    note = _path(".terminated")
    reason = PREEMPTION if os.path.exists(note) else NODE_FAILURE
    for _ in range(missing):
        _record_requeue(reason)
    if os.path.exists(note):
        os.unlink(note)


def begin(directory: str, index: int, function: Any, args: Any, kwargs: Any) -> Any:
    """Called by the worker before it runs a task: makes the task's checkpoint reachable,
    and where checkpointing is on, catches the scheduler's signals and fails a task past
    its requeue limit. Returns what to run: ``(fn, args, kwargs)``."""
    enter(directory, index, _one_task_per_process)
    if os.environ.get("SLURM_RESTART_COUNT", "0") != "0":
        _note_restart()
    if callable(getattr(function, "checkpoint", None)):
        saved = load_checkpoint()
        if isinstance(saved, Resume):
            function, args, kwargs = saved.fn, saved.args, saved.kwargs
    setting = os.environ.get(ENVIRONMENT)
    if setting:
        limit, _, backend = setting.partition(":")
        count = requeue_count()
        if count > int(limit):
            raise RequeueLimitError(_limit_message(count, int(limit)))
        _catch_signals(int(limit), backend, function, args, kwargs)
    return function, args, kwargs


def _limit_message(count: int, limit: int) -> str:
    return (
        f"the task was requeued {count} times, its limit (max_requeues={limit}): it did not "
        "finish in that many runs. Give it a longer time limit or more requeues "
        "(task.options(max_requeues=...))."
    )


def _catch_signals(limit: int, backend: str, function: Any, args: Any, kwargs: Any) -> None:
    import signal

    _path("")  # checkpoints/ made, private, before any signal comes

    def warned(signum: int, frame: object) -> None:
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the requeue ends this job
        print("slurmscope worker: time limit near, saving a checkpoint", flush=True)
        _safe_hook(function, args, kwargs)
        count = requeue_count()
        if count >= limit:
            _fail(RequeueLimitError(_limit_message(count, limit)))
        _record_requeue(TIME_LIMIT)
        _requeue(backend)
        os._exit(REQUEUE_EXIT)

    def terminated(signum: int, frame: object) -> None:
        # Preemption (or a cancel: Slurm sends SIGTERM for both): save, and let Slurm
        # requeue the job or end it; no outcome is written.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("slurmscope worker: terminated, saving a checkpoint", flush=True)
        atomic_write(_path(".terminated"), b"")
        _safe_hook(function, args, kwargs)
        os._exit(128 + signum)

    signal.signal(signal.SIGUSR1, warned)
    signal.signal(signal.SIGTERM, terminated)


def end() -> None:
    """Called by the worker once the task's function has returned or raised: a signal
    from now on must not requeue a task whose outcome is being written."""
    leave()  # this thread runs no task any more (FakeBackend runs several in turn)
    if os.environ.get(ENVIRONMENT):
        import signal

        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _safe_hook(function: Any, args: Any, kwargs: Any) -> None:
    """:func:`_hook` from a signal handler: an error in the task's ``checkpoint()`` (or in
    saving what it returned) is printed, never raised into the task's code (which might
    swallow it and run on with the signals ignored); the state saved last is kept."""
    try:
        _hook(function, args, kwargs)
    except BaseException as exc:  # noqa: BLE001 - anything, even a KeyboardInterrupt
        import traceback

        print(
            "slurmscope worker: checkpoint() failed; the task resumes from the state saved "
            f"last:\n{''.join(traceback.format_exception(exc))}",
            flush=True,
        )


def _hook(function: Any, args: Any, kwargs: Any) -> None:
    """The callable-object form's ``checkpoint()``, its answer saved (the function form
    keeps the state it saved last)."""
    method = getattr(function, "checkpoint", None)
    if callable(method):
        resume = method(*args, **kwargs)
        if resume is not None:
            save_checkpoint(resume)


def _record_requeue(reason: str) -> None:
    path = _path(".requeues")
    old = (_read(path) or b"").decode()
    atomic_write(path, (old + reason + "\n").encode())


def _requeue(backend: str) -> None:
    """Requeue exactly this task, from inside its job."""
    if backend == "local":
        return  # the local scheduler requeues a task that exits with REQUEUE_EXIT
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job_id = f"{array_job}_{task}" if array_job and task else os.environ["SLURM_JOB_ID"]
    if backend == "pyslurm":
        try:
            import pyslurm  # type: ignore[import-not-found,unused-ignore]

            pyslurm.Job(int(os.environ["SLURM_JOB_ID"])).requeue()
            print(f"slurmscope worker: requeued {job_id} with pyslurm", flush=True)
            return
        except Exception as exc:  # not importable in the job, or refused: scontrol does it
            print(f"slurmscope worker: pyslurm could not requeue {job_id}: {exc!r}", flush=True)
    import subprocess

    done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True)
    if done.returncode != 0:
        _fail(RuntimeError(f"scontrol requeue {job_id} failed: {done.stderr.strip()}"))
    print(f"slurmscope worker: requeued {job_id} with scontrol", flush=True)


def _fail(exc: BaseException) -> None:
    """End the task with ``exc`` as its outcome."""
    directory, index = current() or (".", 0)
    write_outcome(
        directory,
        index,
        {
            "ok": False,
            "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
            "message": str(exc),
            "traceback": "",
            "exception": dumps(exc, protocol=5),
        },
    )
    print(f"slurmscope worker: {exc}", flush=True)
    os._exit(1)

"""Runs one task inside a job: ``python -m slurmscope.worker JOBDIR [OFFSET]``.

The task's index is ``OFFSET + $SLURM_ARRAY_TASK_ID`` (0 for a single job). The worker
loads the function and its own item only, replaces job handles in the arguments by their
results, runs the function and writes the outcome atomically. It exits 0 on success and
1 when the function raised, so that the scheduler records the failure too.

Nothing is unpickled that someone else could have written (the payload, or an upstream
task's result): :mod:`slurmscope.payload_guard` checks each file and its directories, and a
refusal is the task's outcome (``UnsafeJobDirectoryError``, naming the file), as any error
is. The task's log files are made as private as its job directory.

A task that checkpoints (:mod:`slurmscope.checkpoint`) resumes from its saved state; one
whose outcome is already written (requeued after it) exits 0 at once.

It imports the standard library and the job directory layer (``slurmscope.payload``,
``slurmscope.payload_ended``, ``slurmscope.origin``, ``slurmscope.checkpoint``) only, and of the standard library only
what a successful task needs (``traceback`` when a task fails, ``json`` when an upstream
task has no result): each import is paid by every task (cloudpickle is imported by
``pickle`` itself when the function needs it).
"""

from __future__ import annotations

import os
import stat
import sys

from .checkpoint import begin, end, one_task_per_process
from .origin import load_error, restore_files, use_driver_path
from .payload import (
    ResultRef,
    UpstreamFailedError,
    atomic_write,
    dumps,
    loads,
    read_driver,
    read_function,
    read_item,
    read_outcome,
    result_file,
    write_outcome,
)
from .payload_ended import why_no_value
from .payload_guard import file_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def _resolve(value: Any) -> Any:
    """Replace every :class:`ResultRef` in nested lists, tuples and dicts by its result."""
    if isinstance(value, ResultRef):
        if value.size is None:
            return _upstream_value(value.directory, value.index)
        return [_upstream_value(value.directory, i) for i in range(value.size)]
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    if isinstance(value, tuple) and type(value) is tuple:
        return tuple(_resolve(v) for v in value)
    if isinstance(value, dict) and type(value) is dict:
        return {k: _resolve(v) for k, v in value.items()}
    return value


def _upstream_value(directory: str, index: int) -> Any:
    """The value task ``index`` of job directory ``directory`` returned."""
    outcome = read_outcome(directory, index)
    if outcome is None or not outcome["ok"]:
        raise UpstreamFailedError(
            f"task {index} of {directory} has no result: {why_no_value(directory, index, outcome)}"
        )
    return outcome["value"]


def _error_outcome(exc: BaseException) -> dict[str, Any]:
    import traceback

    pickled: bytes | None
    try:
        pickled = dumps(exc, protocol=5)
        loads(pickled)
    except Exception:
        pickled = None
    return {
        "ok": False,
        "type": f"{type(exc).__module__}.{type(exc).__qualname__}",
        "message": str(exc),
        "traceback": traceback.format_exc(),
        "exception": pickled,
    }


def _private_logs(directory: str) -> None:
    """Give the task's log files (its stdout and stderr, when they are files of its job
    directory) the mode of the job directory's files: the scheduler made them with the
    job's umask."""
    try:
        mode = file_mode(os.stat(directory).st_mode)
        inside = os.path.realpath(directory) + os.sep
        for fd in (1, 2):
            st = os.fstat(fd)
            if (
                stat.S_ISREG(st.st_mode)
                and st.st_mode & 0o777 != mode
                and st.st_uid == os.geteuid()
                and os.readlink(f"/proc/self/fd/{fd}").startswith(inside)
            ):
                os.fchmod(fd, mode)
    except OSError:
        pass


def _write_error(directory: str, index: int, exc: BaseException) -> None:
    """Record ``exc`` as the task's outcome; say it on stderr if even that fails."""
    try:
        write_outcome(directory, index, _error_outcome(exc))
    except OSError as err:
        print(
            f"slurmscope worker: cannot record the outcome of task {index}: {err}", file=sys.stderr
        )


def run(directory: str, index: int) -> int:
    print(f"slurmscope worker: task {index} of {directory} on {os.uname().nodename}", flush=True)
    _private_logs(directory)
    if os.path.exists(result_file(directory, index)):  # a requeue after the outcome: done
        print("slurmscope worker: the task's outcome is already written", flush=True)
        return 0
    try:
        driver = read_driver(directory)
        use_driver_path(driver)  # the modules the driver saw, before anything is unpickled
        try:
            function = loads(read_function(directory))
        except (ImportError, AttributeError) as exc:
            raise load_error("the task's function", exc, driver) from exc
        restore_files(function, driver)
        try:
            args, kwargs = loads(read_item(directory, index))
        except (ImportError, AttributeError) as exc:
            raise load_error(f"the arguments of task {index}", exc, driver) from exc
        args, kwargs = _resolve(args), _resolve(kwargs)
        try:
            function, args, kwargs = begin(directory, index, function, args, kwargs)
            value = function(*args, **kwargs)
        finally:
            end()  # no requeue once the outcome is being written; this thread's task ends
    except BaseException as exc:  # noqa: BLE001 - everything the task raised is reported
        import traceback

        traceback.print_exc()
        _write_error(directory, index, exc)
        return 1
    try:
        write_outcome(directory, index, {"ok": True, "value": value})
    except Exception as exc:
        try:
            import cloudpickle  # values such as lambdas need it

            blob = cloudpickle.dumps({"ok": True, "value": value}, protocol=5)
            atomic_write(result_file(directory, index), blob)
        except Exception:
            import traceback

            traceback.print_exc()
            outcome = _error_outcome(exc)
            outcome["message"] = f"the task's return value could not be pickled: {exc}"
            write_outcome(directory, index, outcome)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        print("usage: python -m slurmscope.worker JOBDIR [OFFSET]", file=sys.stderr)
        return 2
    offset = int(argv[1]) if len(argv) == 2 else 0
    one_task_per_process()
    index = offset + int(os.environ.get("SLURM_ARRAY_TASK_ID") or 0)
    return run(argv[0], index)


if __name__ == "__main__":
    sys.exit(main())

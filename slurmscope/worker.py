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
task has no result): each import is paid by every task (functions shipped by value load
through :mod:`slurmscope.rebuild`; cloudpickle is imported by ``pickle`` itself only when
the payload holds what only cloudpickle rebuilds, such as a class defined in the script).
Tasks start it through :mod:`slurmscope.bootstrap` (``python -S -c ...``: no ``site`` at
start), which calls :func:`main`.
"""

from __future__ import annotations

import os
import stat
import sys
import time

from .checkpoint import begin, end, one_task_per_process, recorded_requeues
from .origin import load_error, restore_files, use_driver_path
from .payload import (
    CANCELLED,
    ITEM_CHECKS,
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


def run(directory: str, index: int, pack: dict[str, Any] | None = None) -> int:
    """Run task ``index``; ``pack``: the state its pack shares (the function loaded once,
    the dependency checks of each item), given by :func:`run_pack`."""
    packed = bool(pack and pack.get("packed"))
    if not packed:
        print(
            f"slurmscope worker: task {index} of {directory} on {os.uname().nodename}",
            flush=True,
        )
        _private_logs(directory)
    else:  # the marker that tells which item's output follows (slurmscope logs)
        print(f"slurmscope worker: item {index} of {directory}", flush=True)
        print(f"slurmscope worker: item {index} of {directory}", file=sys.stderr, flush=True)
    if os.path.exists(result_file(directory, index)):  # a requeue after the outcome: done
        print("slurmscope worker: the task's outcome is already written", flush=True)
        return 0
    started = time.monotonic() if packed else 0.0
    try:
        driver = read_driver(directory) if pack is None or "driver" not in pack else pack["driver"]
        if pack is None or "function" not in pack:
            use_driver_path(driver)  # the modules the driver saw, before anything is unpickled
            try:
                function = loads(read_function(directory))
            except (ImportError, AttributeError) as exc:
                raise load_error("the task's function", exc, driver) from exc
            restore_files(function, driver)
            if pack is not None and not callable(getattr(function, "checkpoint", None)):
                pack["function"], pack["driver"] = function, driver  # state-free: shared
        else:
            function = pack["function"]
        if pack is not None:
            _check_item(pack["checks"], index)
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
    outcome: dict[str, Any] = {"ok": True, "value": value}
    if packed:  # what pack="auto" sizes later packs from
        outcome["seconds"] = time.monotonic() - started
    try:
        write_outcome(directory, index, outcome)
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


def run_pack(
    directory: str, offset: int, task: int | None = None, setting: str | None = None
) -> int:
    """Run the items of this array task: item ``offset + $SLURM_ARRAY_TASK_ID`` alone, or,
    in a packed map (``$SLURMSCOPE_PACK`` is ``"SIZE:ITEMS"``), items ``offset + SIZE*t``
    onwards, one after the other in this process with the function loaded once.

    An item with an outcome already (a requeued pack) or cancelled on its own is skipped,
    so a requeued pack resumes at its first item without an outcome; each item checks its
    dependencies on single upstream items first (:func:`_check_item`). Exits 1 when any
    item failed, so that the scheduler's accounting shows the pack FAILED. ``task`` and
    ``setting`` default to the environment's (``slurmscope.testing.FakeBackend``, which
    runs tasks in threads, passes its own).
    """
    if task is None:
        task = int(os.environ.get("SLURM_ARRAY_TASK_ID") or 0)
    if setting is None:
        setting = os.environ.get("SLURMSCOPE_PACK")  # slurmscope.packing.ENVIRONMENT
    if not setting:
        checks = _item_checks(directory)  # an unpacked map may depend on packed items
        return run(directory, offset + task, {"checks": checks} if checks else None)
    size, _, items = setting.partition(":")
    first = offset + task * int(size)
    last = min(first + int(size), int(items))
    print(
        f"slurmscope worker: items {first} to {last - 1} of {directory} on {os.uname().nodename}",
        flush=True,
    )
    _private_logs(directory)
    pack: dict[str, Any] = {"checks": _item_checks(directory), "packed": True}
    restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    failed = False
    for index in range(first, last):
        if os.path.exists(os.path.join(directory, CANCELLED, str(index))):
            print(f"slurmscope worker: item {index} was cancelled", flush=True)
            continue
        if restarts:
            # Requeues are counted per item: the restarts no other item of the pack
            # recorded are this item's (recorded by it, or not recorded by anyone).
            others = sum(
                len(v)
                for i, v in recorded_requeues(directory).items()
                if first <= i < last and i != index
            )
            os.environ["SLURM_RESTART_COUNT"] = str(max(0, restarts - others))
        failed |= run(directory, index, pack) != 0
    return 1 if failed else 0


def _item_checks(directory: str) -> list[tuple[str, str, str]]:
    """The dependencies on single items each item checks (see ``payload.ITEM_CHECKS``)."""
    try:
        with open(os.path.join(directory, ITEM_CHECKS)) as fh:
            text = fh.read()
    except FileNotFoundError:
        return []
    checks = []
    for line in text.splitlines():
        kind, index, upstream = line.split("\t", 2)
        checks.append((kind, index, upstream))
    return checks


def _check_item(checks: list[tuple[str, str, str]], index: int) -> None:
    """Raise :class:`UpstreamFailedError` when a dependency of item ``index`` on one
    upstream item can never be satisfied: the scheduler waited for the upstream item's
    whole task (``afterany``), each item decides here from the upstream item's outcome."""
    for kind, which, upstream in checks:
        at = index if which == "*" else int(which)
        outcome = read_outcome(upstream, at)
        ok = None if outcome is None else bool(outcome["ok"])
        if kind in ("afterok", "aftercorr") and ok is not True:
            why = why_no_value(upstream, at, outcome)
            raise UpstreamFailedError(
                f"{kind} on item {at} of {upstream} can never be satisfied: {why}; this "
                "item was not run"
            )
        if kind == "afternotok" and ok is not False:
            state = "succeeded" if ok else "never ran"
            raise UpstreamFailedError(
                f"afternotok on item {at} of {upstream} can never be satisfied: it {state}; "
                "this item was not run"
            )


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or len(argv) > 2:
        print("usage: python -m slurmscope.worker JOBDIR [OFFSET]", file=sys.stderr)
        return 2
    offset = int(argv[1]) if len(argv) == 2 else 0
    one_task_per_process()
    return run_pack(argv[0], offset)


if __name__ == "__main__":
    sys.exit(main())

"""Runs: a driver's submissions recorded in a ledger, and matched against it on resume.

A run has an id (checked by :func:`slurmscope.runs.check_run_id`, the one rule: 1 to 100
of ``[A-Za-z0-9._-]``, not only dots) and a folder ``ROOT/runs/<id>/`` in the job
root. This module owns ``ledger.jsonl`` there: one JSON line per submission the run made,
in program order, each appended with one ``write()`` on a file opened ``O_APPEND`` and
then closed (and ``fsync``-ed), so a driver killed at any moment leaves whole lines behind
(a last line cut short by a crash of the machine itself has no newline and is skipped).

Each line says what was submitted (``key``: the digest of task name, function, arguments
and dependency shape, see :mod:`slurmscope.fingerprint`; and each of those digests on its
own), which occurrence of that key it was (the nth submission with an identical key, so a
threaded driver matches deterministically), the job directory and scheduler ids it got,
and the attempt (1 for the first run, 2 for its first resume...).

Resuming (``Cluster(run=ID, resume=True)``, ``SLURMSCOPE_RESUME=1``, or a driver job that
Slurm requeued): the nth submission with key K reattaches to the job of the latest ledger
line for (K, n) when that job succeeded or has not ended yet, and is submitted anew when it
failed, was cancelled or was lost, or when nothing matches. A submission that depends on a
job submitted anew has a changed dependency (its target's job directory changed), so it is
new too: a changed stage resubmits itself and what depends on it, nothing else. Every
decision is logged (``slurmscope.resume.reused``, ``slurmscope.resume.resubmitted``) with
its reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import payload_guard
from .attach import attach
from .dependency import Dependency
from .errors import InvalidInputError, JobNotFoundError, RunExistsError, UnsafeJobDirectoryError
from .fingerprint import arguments_digest, dependencies_digest, function_digest
from .job_directory import JobDirectory
from .jobs import ArrayJob, Job
from .log import log
from .runs import check_run_id
from .runtime import Runtime
from .submission import Part

#: The variable that makes a driver process run ``<id>`` (the default of ``Cluster(run=)``).
ENV_RUN = "SLURMSCOPE_RUN"
#: ``1``: resume that run (the default of ``Cluster(resume=)``).
ENV_RESUME = "SLURMSCOPE_RESUME"
RUNS = "runs"
#: What the tasks a run submits get in their environment: they are not the run (their own
#: submissions, if any, record in no ledger and resume nothing).
TASK_ENVIRONMENT = {ENV_RUN: "", ENV_RESUME: ""}
LEDGER = "ledger.jsonl"
_VERSION = 1

#: Reasons a submission is made anew (the ``reason`` of ``slurmscope.resume.resubmitted``).
FUNCTION_CHANGED = "function changed"
ARGUMENTS_CHANGED = "arguments changed"
DEPENDENCY_CHANGED = "dependency changed"
EARLIER_FAILED = "earlier job failed"
EARLIER_CANCELLED = "earlier job cancelled"
EARLIER_GONE = "earlier job directory unreadable"
NOT_IN_EARLIER = "not in the earlier run"


def run_folder(root: Path, run_id: str) -> Path:
    """``ROOT/runs/<id>/``: the folder of run ``run_id``."""
    return root / RUNS / check_run_id(run_id)


def _env_flag(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise InvalidInputError(f"{name} must be 1 or 0, not {text!r}.")
    return text in ("1", "true", "yes")


def requested(
    run: str | None, resume: bool | None, run_given: bool = False
) -> tuple[str | None, bool]:
    """The run id and whether to resume it, from ``Cluster(run=, resume=)`` and, where not
    given, ``$SLURMSCOPE_RUN`` and ``$SLURMSCOPE_RESUME`` (``run_given``: ``run=None`` was
    passed, no run whatever the environment says). A driver that is a Slurm job
    requeued by Slurm (``SLURM_RESTART_COUNT`` > 0) resumes its run by itself. In a driver
    job of ``slurmscope run``, a run other than the job's own is refused."""
    driven = os.environ.get(ENV_RUN) if os.environ.get("SLURMSCOPE_DRIVER_JOB") else None
    if run is not None and driven and run != driven:
        raise InvalidInputError(
            f"Cluster(run={run!r}) in a driver job of `slurmscope run`, which runs run "
            f"{driven!r}: its submissions would be recorded in another run than the one "
            f"`slurmscope runs {driven}`, `status` and `--resume` follow. Drop run= (the "
            "driver job's run is the default), or run the script directly with python."
        )
    if run is None and not run_given:
        run = os.environ.get(ENV_RUN) or None
    if run is None:
        if resume:
            raise InvalidInputError(
                "resume=True needs a run to resume: pass run='NAME' (or set "
                f"{ENV_RUN}=NAME) with the name the earlier run was given."
            )
        return None, False
    check_run_id(run)
    if resume is None:
        resume = _env_flag(ENV_RESUME)
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0").strip()
        if restarts.isdigit() and int(restarts) > 0:
            resume = True
    elif not isinstance(resume, bool):
        raise InvalidInputError(f"resume must be True or False, not {resume!r}.")
    return run, resume


def read_ledger(path: Path) -> list[dict[str, Any]]:
    """The lines of a ledger (none when it does not exist), after the checks of
    :mod:`slurmscope.payload_guard` (it names directories that are read next). A last
    line without its newline (cut short) and lines that are not JSON objects are skipped."""
    data = payload_guard.read_file(str(path), str(path.parent))
    if data is None:
        return []
    entries = []
    for line in data.split(b"\n")[:-1]:  # whatever follows the last newline was cut short
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "key" in entry and "directory" in entry:
            entries.append(entry)
    return entries


@dataclass(frozen=True)
class Rerun:
    """An array of the earlier attempt some tasks of which succeeded: the new submission
    reuses their results (linked into its job directory) and runs only the other tasks,
    as a Slurm array of those indices; a part of a split map whose every task succeeded
    keeps the earlier scheduler job."""

    earlier: JobDirectory
    succeeded: frozenset[int]
    earlier_parts: tuple[Part, ...]

    def indices_in(self, offset: int, count: int, pack: int = 1) -> tuple[int, ...] | None:
        """The array task indices (within the part) to run of items ``offset ..
        offset+count-1``, ``pack`` items per task (a task runs again when any of its items
        did not succeed; its worker skips those whose results were reused): ``None`` for
        all of them, ``()`` for none (then :meth:`earlier_part` holds them)."""
        tasks = -(-count // pack)
        todo = tuple(
            t
            for t in range(tasks)
            if any(
                offset + i not in self.succeeded
                for i in range(t * pack, min(count, (t + 1) * pack))
            )
        )
        if len(todo) == tasks or (not todo and self.earlier_part(offset, count) is None):
            return None
        return todo

    def earlier_part(self, offset: int, count: int) -> Part | None:
        """The earlier scheduler job of exactly these items, if there is one."""
        return next((p for p in self.earlier_parts if (p.offset, p.count) == (offset, count)), None)


@dataclass
class Planned:
    """A submission of a run about to be submitted: what its ledger line will say."""

    key: str
    occurrence: int
    name: str
    name_occurrence: int
    digests: dict[str, str]
    decision: str
    reason: str | None
    #: For an array of the earlier attempt of which some tasks succeeded: what to reuse.
    rerun: Rerun | None = None


class Run:
    """One run as this process sees it: its ledger, what the earlier attempts submitted,
    and how many submissions of each key this attempt has made."""

    def __init__(self, root: Path, run_id: str, resume: bool, share_with_group: bool) -> None:
        self.id = check_run_id(run_id)
        self.resume = resume
        self.folder = run_folder(root, run_id)
        self.ledger = self.folder / LEDGER
        mode = payload_guard.dir_mode(share_with_group)
        for folder in (self.folder.parent, self.folder):
            if not folder.is_dir():
                with contextlib.suppress(FileExistsError):  # made meanwhile by another process
                    payload_guard.make_dir(str(folder), mode)
        earlier = read_ledger(self.ledger)
        if earlier and not resume:
            raise _exists(run_id, self.ledger, len(earlier))
        self.attempt = 1 + max((int(e.get("attempt", 1)) for e in earlier), default=0)
        #: The latest line of each (key, occurrence) and of each (name, occurrence).
        self._exact: dict[tuple[str, int], dict[str, Any]] = {}
        self._by_name: dict[tuple[str, int], dict[str, Any]] = {}
        for entry in earlier:
            self._exact[(entry["key"], int(entry.get("occurrence", 0)))] = entry
            self._by_name[(entry.get("name", ""), int(entry.get("name_occurrence", 0)))] = entry
        self._keys: Counter[str] = Counter()
        self._names: Counter[str] = Counter()
        self._seq = 0
        self._lock = threading.Lock()
        #: How many open clusters use this run in this process.
        self.users = 0

    def __repr__(self) -> str:
        how = "resuming" if self.resume else "recording"
        return f"<Run {self.id} {how}, attempt {self.attempt}, ledger {self.ledger}>"

    # -- before and after one submission ---------------------------------------------------------
    def plan(
        self,
        runtime: Runtime,
        fn: Callable[..., Any],
        name: str,
        calls: Sequence[Any],
        array: bool,
        deps: Sequence[Dependency],
    ) -> tuple[Job[Any] | ArrayJob[Any] | None, Planned]:
        """The earlier run's handle for this submission if it can be reused (its ledger
        line is written already), else what to record once it is submitted."""
        digests = {
            "function": function_digest(fn),
            "arguments": arguments_digest(calls, array),
            "dependencies": dependencies_digest(deps),
        }
        key = _key(name, array, digests)
        with self._lock:
            occurrence = self._keys[key]
            self._keys[key] += 1
            name_occurrence = self._names[name]
            self._names[name] += 1
        planned = Planned(key, occurrence, name, name_occurrence, digests, "new", None)
        if not self.resume:
            return None, planned
        earlier = self._exact.get((key, occurrence))
        if earlier is None:
            planned.decision = "resubmitted"
            planned.reason, detail, near = self._what_changed(name, name_occurrence, digests)
            _log_resubmitted(self, planned, detail, near)
            return None, planned
        handle, reason, detail, rerun = _reusable(runtime, earlier, deps)
        if handle is None:
            planned.decision, planned.reason, planned.rerun = "resubmitted", reason, rerun
            _log_resubmitted(self, planned, detail, earlier)
            return None, planned
        planned.decision, planned.reason = "reused", reason
        self.record(planned, handle)
        log.info(
            "slurmscope.resume.reused",
            run=self.id,
            task=name,
            job_ids=list(_job_ids(handle)),
            directory=str(handle.directory),
            reason=reason,
            detail=detail,
            attempt=self.attempt,
        )
        return handle, planned

    def _what_changed(
        self, name: str, name_occurrence: int, digests: dict[str, str]
    ) -> tuple[str, str, dict[str, Any] | None]:
        """Why nothing of the earlier run matches: what differs from the earlier run's
        submission of the same task at the same place in program order, if there was one."""
        near = self._by_name.get((name, name_occurrence))
        if near is None:
            return (
                NOT_IN_EARLIER,
                f"the earlier run made no submission number {name_occurrence + 1} of {name}",
                None,
            )
        where = f"earlier job {', '.join(near.get('job_ids') or []) or '?'}"
        if near.get("function") != digests["function"]:
            return FUNCTION_CHANGED, f"the function's code differs from that of {where}", near
        if near.get("dependencies") != digests["dependencies"]:
            why = (
                f"a job it depends on was submitted anew, or its dependencies differ from {where}'s"
            )
            return DEPENDENCY_CHANGED, why, near
        return ARGUMENTS_CHANGED, f"its arguments differ from those of {where}", near

    def record(self, planned: Planned, handle: Job[Any] | ArrayJob[Any]) -> None:
        """Append the ledger line of one submission (made or reused)."""
        with self._lock:
            self._seq += 1
            entry = {
                "v": _VERSION,
                "attempt": self.attempt,
                "seq": self._seq,
                "key": planned.key,
                "occurrence": planned.occurrence,
                "name": planned.name,
                "name_occurrence": planned.name_occurrence,
                **planned.digests,
                "array": handle.whole_array,
                "size": handle.submission.size,
                "directory": str(handle.directory),
                "job_ids": list(_job_ids(handle)),
                "decision": planned.decision,
                "reason": planned.reason,
                "pid": os.getpid(),
                "driver_job": os.environ.get("SLURMSCOPE_DRIVER_JOB") or None,
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            line = json.dumps(entry, sort_keys=True).encode() + b"\n"
            _append(self.ledger, line)


def _key(name: str, array: bool, digests: dict[str, str]) -> str:
    text = "\0".join(
        [name, str(array), digests["function"], digests["arguments"], digests["dependencies"]]
    )
    return hashlib.sha256(text.encode()).hexdigest()


def _append(path: Path, line: bytes) -> None:
    """One ``write()`` of a whole line on an ``O_APPEND`` file, then fsync and close."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    try:
        written = os.write(fd, line)
        while written < len(line):  # a short write (a full disk): finish the line
            written += os.write(fd, line[written:])
        os.fsync(fd)
    finally:
        os.close(fd)


def _job_ids(handle: Job[Any] | ArrayJob[Any]) -> tuple[str, ...]:
    return tuple(p.job_id for p in handle.submission.parts)


def _reusable(
    runtime: Runtime, earlier: dict[str, Any], deps: Sequence[Dependency]
) -> tuple[Job[Any] | ArrayJob[Any] | None, str, str, Rerun | None]:
    """The earlier job's handle, when it succeeded or has not ended; else ``None``, why it
    is submitted anew (its unfinished tasks, if any, are cancelled: this submission
    replaces it), and for an array some tasks of which succeeded, what to reuse of it."""
    try:
        handle = attach(runtime, earlier["directory"])
    except (JobNotFoundError, OSError, UnsafeJobDirectoryError, KeyError, ValueError) as exc:
        return None, EARLIER_GONE, f"{earlier.get('directory')}: {exc}", None
    sub = handle.submission
    # The dependencies are those of this submission (the same targets: the key matched),
    # as live handles, so that explain() and a failure's diagnosis follow them.
    sub.dependencies = tuple(deps)
    handle.refresh()
    ids = ", ".join(_job_ids(handle))
    bad = [(i, s.state) for i, s in enumerate(sub.states) if s is not None and s.terminal]
    bad = [(i, state) for i, state in bad if state != "COMPLETED"]
    if not bad:
        unfinished = sum(1 for s in sub.states if s is None or not s.terminal)
        if unfinished:
            return (
                handle,
                "unchanged, earlier job not ended",
                (f"job {ids}: {unfinished} of {sub.size} tasks pending or running"),
                None,
            )
        return handle, "unchanged, earlier job succeeded", f"job {ids} completed", None
    states = sorted({state for _, state in bad})
    shown = ", ".join(str(i) for i, _ in bad[:10]) + (" ..." if len(bad) > 10 else "")
    what = f"tasks {shown}" if sub.is_array else f"job {ids}"
    reason = EARLIER_CANCELLED if states == ["CANCELLED"] else EARLIER_FAILED
    leftover = [i for i, s in enumerate(sub.states) if s is None or not s.terminal]
    succeeded = frozenset(
        i
        for i, s in enumerate(sub.states)
        if s is not None and s.succeeded and sub.directory.outcome_ok(i)
    )
    rerun = None
    if sub.is_array and succeeded and runtime.backend.sparse_arrays:
        rerun = Rerun(sub.directory, succeeded, sub.parts)
    cancel_failed = ""
    if leftover:  # replaced by this submission: the rest of the earlier array is cancelled
        try:
            handle.cancel()
        except Exception as exc:  # noqa: BLE001 - the new submission goes on; the event says
            cancel_failed = f" (cancelling them failed: {exc})"
    detail = (
        f"{what} of job {ids} ended {'/'.join(states)}"
        if sub.is_array
        else (f"{what} ended {'/'.join(states)}")
    )
    if leftover:
        detail += f"; its {len(leftover)} unfinished tasks were cancelled{cancel_failed}"
    if rerun is not None:
        detail += (
            f"; the results of its {len(succeeded)} tasks that succeeded are reused, the "
            f"other {sub.size - len(succeeded)} run again"
        )
    return None, reason, detail, rerun


def _log_resubmitted(
    run: Run, planned: Planned, detail: str, earlier: dict[str, Any] | None
) -> None:
    log.info(
        "slurmscope.resume.resubmitted",
        run=run.id,
        task=planned.name,
        reason=planned.reason,
        detail=detail,
        earlier_job_ids=(earlier or {}).get("job_ids"),
        earlier_directory=(earlier or {}).get("directory"),
        attempt=run.attempt,
    )


# -- the runs of this process ----------------------------------------------------------------
_OPEN: dict[tuple[str, str], Run] = {}
_OPEN_LOCK = threading.Lock()


def open_run(root: Path, run_id: str, resume: bool, share_with_group: bool = False) -> Run:
    """Run ``run_id`` under ``root``: one object per process for the life of the process,
    whatever clusters come and go (every cluster of a driver records in the same ledger,
    in the same attempt, with one count of each key), so a script that closes its cluster
    and makes another goes on where it was. One exception: ``resume=True`` asked for a run
    this process opened to record, and that no open cluster uses any more, begins the next
    attempt (the script resumes, in one process, what it recorded itself)."""
    with _OPEN_LOCK:
        found = _OPEN.get((str(root), run_id))
        if found is None or (resume and not found.resume and found.users <= 0):
            found = _OPEN[(str(root), run_id)] = Run(root, run_id, resume, share_with_group)
        found.users += 1
        return found


def _exists(run_id: str, ledger: Path, count: int) -> RunExistsError:
    return RunExistsError(
        f"run {run_id!r} already has a ledger ({ledger}, {count} submissions). Pass "
        "resume=True (or set SLURMSCOPE_RESUME=1) to resume it, or choose a new run name. "
        "Nothing was submitted."
    )


def refuse_existing(root: Path, run_id: str, resume: bool) -> None:
    """``RunExistsError`` when run ``run_id`` has a ledger, is not to be resumed and is not
    this process's run already (another cluster of the same driver, open or closed,
    recorded in it)."""
    if resume:
        return
    with _OPEN_LOCK:
        if (str(root), run_id) in _OPEN:
            return
    ledger = run_folder(root, run_id) / LEDGER
    earlier = read_ledger(ledger)
    if earlier:
        raise _exists(run_id, ledger, len(earlier))


def release(run: Run) -> None:
    """A cluster using ``run`` was closed. The run stays this process's (see
    :func:`open_run`): a later cluster goes on in the same attempt."""
    with _OPEN_LOCK:
        run.users -= 1


def before_submit(
    runtime: Runtime,
    fn: Callable[..., Any],
    name: str,
    calls: Sequence[Any],
    array: bool,
    deps: Sequence[Dependency],
) -> tuple[Job[Any] | ArrayJob[Any] | None, Planned | None]:
    """The submit path's hook before the payload is written: the reused handle of the
    earlier run (submit nothing), or what to record after submitting (``None``: no run)."""
    run = runtime.run
    if not isinstance(run, Run):
        return None, None
    return run.plan(runtime, fn, name, calls, array, deps)


def reuse_results(planned: Planned | None, directory: JobDirectory) -> Rerun | None:
    """The submit path's hook once the payload is written: for an array of the earlier
    attempt some tasks of which succeeded, link their outcome files into ``directory``
    (copied where a link cannot be made) and return what the parts should run."""
    rerun = None if planned is None else planned.rerun
    if rerun is None:
        return None
    for index in sorted(rerun.succeeded):
        source = rerun.earlier.results_dir / f"{index}.pkl"
        target = directory.results_dir / f"{index}.pkl"
        try:
            os.link(source, target)
        except OSError:
            shutil.copyfile(source, target)
            os.chmod(target, payload_guard.file_mode(directory.path.stat().st_mode))
    return rerun


def after_submit(
    runtime: Runtime, planned: Planned | None, handle: Job[Any] | ArrayJob[Any]
) -> None:
    """The submit path's hook after the parts were submitted: the ledger line."""
    run = runtime.run
    if planned is None or not isinstance(run, Run):
        return
    if planned.rerun is not None:  # the reused tasks have succeeded: known at once
        with runtime.poller.cond:
            handle.submission.record_outcomes(dict.fromkeys(planned.rerun.succeeded, True))
    run.record(planned, handle)


def run_id(runtime: Runtime) -> str | None:
    """The id of the run ``runtime``'s cluster records in (the manifest's ``"run"``)."""
    run = runtime.run
    return run.id if isinstance(run, Run) else None

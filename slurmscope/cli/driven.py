"""Driver jobs (``slurmscope run``) and what they submitted, for ``status``, ``explain`` and
``cancel --all``: the submissions whose manifest names a driver job, their tree (driver ->
submissions -> tasks) and cancelling them."""

from __future__ import annotations

import os
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import SlurmscopeError
from ..job_directory import MANIFEST, JobDirectory
from ..ledger import read_ledger
from ..runs import LEDGER_FILE, run_folder, runs_of_driver
from ..tree import Row, ended, summary
from . import handles
from .errors import CliError

#: The function every driver job runs.
DRIVER_FUNCTION = "slurmscope.driver_script.run_script"
#: Tasks listed per submission in the tree (``--all``: every one).
SHOWN = 10


def is_driver(manifest: dict[str, Any]) -> bool:
    """Whether the job of ``manifest`` is a driver job."""
    return bool(manifest.get("function") == DRIVER_FUNCTION)


def driver_id(manifest: dict[str, Any]) -> str:
    """The scheduler id of a driver job (a driver job is one task)."""
    return str(manifest["parts"][0]["job_id"]) if manifest["parts"] else ""


def submissions(root: Path, cluster: str, job_id: str) -> list[JobDirectory]:
    """The job directories driver job ``job_id`` of ``cluster`` uses: those it submitted and
    those of an earlier attempt of its run it reattached to (resume), in program order."""
    return [directory for directory, _ in used(root, cluster, job_id)]


def used(root: Path, cluster: str, job_id: str) -> list[tuple[JobDirectory, str | None]]:
    """What driver job ``job_id`` of ``cluster`` uses, each job directory with the driver
    job it was reused from (``""``: reused from an attempt that had no driver job, a run
    made in Python), or ``None`` when this driver submitted it. The run's ledger says what
    each attempt used, reused or new, in program order (each line names the driver job of
    its attempt); what the driver submitted that the ledger has no line for yet (a line is
    written once the scheduler answered) follows."""
    own = {os.path.realpath(p): p for p in _own(root, cluster, job_id)}
    found: list[tuple[JobDirectory, str | None]] = []
    seen: set[str] = set()
    for entry in _ledger_lines(root, cluster, job_id):
        path = Path(entry["directory"])
        real = os.path.realpath(path)
        if real in seen or not (path / MANIFEST).is_file():
            continue
        seen.add(real)
        if real in own:
            found.append((JobDirectory(own[real]), None))
            continue
        try:
            earlier = JobDirectory(path).read_manifest()
        except Exception:  # noqa: BLE001 - unreadable: not shown
            continue
        if earlier.get("parts") and earlier.get("cluster") == cluster:
            found.append((JobDirectory(path), str(earlier.get("driver_job") or "")))
    found += [(JobDirectory(p), None) for real, p in own.items() if real not in seen]
    checked = handles.checked([d for d, _ in found])
    reused = {d.path: r for d, r in found}
    return [(d, reused[d.path]) for d in checked]


def _ledger_lines(root: Path, cluster: str, job_id: str) -> list[dict[str, Any]]:
    """The ledger lines (of its run) written by driver job ``job_id``."""
    lines: list[dict[str, Any]] = []
    for record in runs_of_driver(root, cluster, job_id):
        try:
            entries = read_ledger(run_folder(root, record["id"]) / LEDGER_FILE)
        except SlurmscopeError:  # an unsafe ledger: what the manifests say only
            continue
        lines += [e for e in entries if str(e.get("driver_job")) == job_id]
    return lines


def _own(root: Path, cluster: str, job_id: str) -> list[Path]:
    """The job directories driver job ``job_id`` submitted (and the scheduler has ids
    for), in the order it submitted them."""
    found = []
    for path in root.glob(f"*/{MANIFEST}"):
        try:
            manifest = JobDirectory(path.parent).read_manifest()
        except Exception:  # noqa: BLE001 - half-written or foreign: not one of its
            continue
        # (one still being submitted, with no scheduler id yet, shows once it has one)
        if (
            manifest.get("driver_job") == job_id
            and manifest.get("cluster") == cluster
            and manifest.get("parts")
        ):
            first = manifest["parts"][0]["job_id"]
            found.append((str(manifest.get("created", "")), _number(first), path.parent))
    found.sort()
    return [p for *_, p in found]


def _number(job_id: str) -> int:
    head = str(job_id).split("_")[0].split("+")[0]
    return int(head) if head.isdigit() else 0


def tree(
    root: Path, manifest: dict[str, Any], rows: Sequence[Row], every_task: bool
) -> tuple[list[str], dict[str, Any]]:
    """The lines of a driver job's tree (driver -> submissions -> tasks) and the same as
    data."""
    job_id, cluster = driver_id(manifest), str(manifest["cluster"])
    runs = runs_of_driver(root, cluster, job_id)
    using = used(root, cluster, job_id)
    directories = [d for d, _ in using]
    found = handles.rows_of_many(root, directories)
    run = runs[0]["id"] if runs else None
    lines = [f"driver job {job_id}  {summary(rows)}" + (f"  (run {run})" if run else "")]
    data: dict[str, Any] = {"driver_job": job_id, "run": run, "submissions": []}
    for number, (directory, task_rows) in enumerate(zip(directories, found, strict=True)):
        last = number == len(directories) - 1
        sub = directory.read_manifest()
        ids = "+".join(p["job_id"] for p in sub["parts"]) or "(nothing submitted)"
        states = summary(task_rows) if isinstance(task_rows, list) else task_rows
        reused = using[number][1]
        mark = (
            ""
            if reused is None
            else f"  (reused from driver {reused})"
            if reused
            else "  (reused from an earlier attempt)"
        )
        lines.append(f"{'└── ' if last else '├── '}{sub['name']}  job {ids}  {states}{mark}")
        pad = "    " if last else "│   "
        entry: dict[str, Any] = {
            "name": sub["name"],
            "job_ids": [p["job_id"] for p in sub["parts"]],
            "directory": str(directory.path),
            "reused_from": reused,
            "tasks": [],
        }
        if isinstance(task_rows, list):
            shown = task_rows if every_task else task_rows[:SHOWN]
            for i, (index, task_id, state, reason) in enumerate(shown):
                end = i == len(shown) - 1 and len(shown) == len(task_rows)
                why = f" ({reason})" if reason and reason != "None" else ""
                lines.append(f"{pad}{'└── ' if end else '├── '}{index}  {task_id}  {state}{why}")
            if len(shown) < len(task_rows):
                lines.append(f"{pad}└── ... {len(task_rows) - len(shown)} more (--all)")
            entry["tasks"] = [
                {"index": i, "job_id": j, "state": s, "reason": r} for i, j, s, r in task_rows
            ]
        else:
            entry["state"] = task_rows
        data["submissions"].append(entry)
    if not directories:
        lines.append("└── (nothing submitted yet)")
    return lines, data


def command_of(root: Path, manifest: dict[str, Any]) -> str | None:
    """The command that submitted driver job ``manifest`` (``slurmscope run SCRIPT ARGS``,
    in the run's directory), from its run's record; ``None`` when no run names it."""
    if not is_driver(manifest):
        return None
    job_id = driver_id(manifest)
    for record in runs_of_driver(root, str(manifest["cluster"]), job_id):
        for driver in record["drivers"]:
            if str(driver["job_id"]) == job_id:
                resume = f"--resume {record['id']} " if driver.get("resume") else ""
                command = shlex.join([driver["script"], *driver["args"]])
                return f"`slurmscope run {resume}{command}` in {record['cwd']}"
    return None


def origin_line(root: Path, manifest: dict[str, Any]) -> str | None:
    """What ``explain`` and ``status`` say of the driver job a submission came from."""
    job_id = manifest.get("driver_job")
    if not job_id:
        return None
    run = f" of run {manifest['run']}" if manifest.get("run") else ""
    return f"  submitted by driver job {job_id}{run} (slurmscope status {job_id})"


def cancel_all(
    root: Path, directory: JobDirectory, manifest: dict[str, Any], wait: float = 60.0
) -> dict[str, list[str]]:
    """Cancel driver job ``directory`` and what it submitted that has not ended: the driver
    first (so that it submits nothing more, nor reacts to its jobs' end), then -- once it
    has ended -- everything it submitted that has not ended either. (On the local backend
    the driver's own embedded scheduler runs what it submitted, and cancels it as the
    driver is cancelled.) Which ids were cancelled and which had already ended."""
    if not is_driver(manifest):
        raise CliError(
            f"{manifest['name']} ({directory.path.name}) is not a driver job: --all cancels a "
            "driver job of `slurmscope run` and what it submitted. Cancel this job alone "
            "without --all."
        )
    job_id, cluster = driver_id(manifest), str(manifest["cluster"])
    earlier = submissions(root, cluster, job_id)
    already = [
        _ids(d)
        for d, r in zip(earlier, handles.rows_of_many(root, earlier), strict=True)
        if isinstance(r, list) and ended(r)
    ]
    cancelled: list[str] = []
    driver = handles.handle(root, directory)
    if ended(handles.rows(driver)):
        already.insert(0, job_id)
    else:
        driver.cancel()
        cancelled.append(job_id)
        _wait_ended([driver], time.monotonic() + wait)
    stopping = []
    for sub in submissions(root, cluster, job_id):  # all of them, now that it submits no more
        ids = _ids(sub)
        if not ids or ids in already:
            continue
        cancelled.append(ids)
        job = handles.handle(root, sub)
        if not ended(handles.rows(job)):
            job.cancel()
            stopping.append(job)
    _wait_ended(stopping, time.monotonic() + wait)
    return {"cancelled": cancelled, "already_ended": already}


def _ids(directory: JobDirectory) -> str:
    return "+".join(p["job_id"] for p in directory.read_manifest()["parts"])


def _wait_ended(jobs: Sequence[handles.Handle], deadline: float) -> None:
    """Wait (until ``deadline``) for cancelled jobs to have ended."""
    for job in jobs:
        while not ended(handles.rows(job)) and time.monotonic() < deadline:
            time.sleep(0.3)

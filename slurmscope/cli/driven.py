"""Driver jobs (``slurmscope run``) and what they submitted, for ``status``, ``explain`` and
``cancel --all``: the submissions whose manifest names a driver job, their tree (driver ->
submissions -> tasks) and cancelling them."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..job_directory import MANIFEST, JobDirectory
from ..runs import runs_of_driver
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
    """The job directories of what driver job ``job_id`` of ``cluster`` submitted (and the
    scheduler has ids for), in the order it submitted them."""
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
    return handles.checked([JobDirectory(p) for *_, p in found])


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
    directories = submissions(root, cluster, job_id)
    found = handles.rows_of_many(root, directories)
    run = runs[0]["id"] if runs else None
    lines = [f"driver job {job_id}  {summary(rows)}" + (f"  (run {run})" if run else "")]
    data: dict[str, Any] = {"driver_job": job_id, "run": run, "submissions": []}
    for number, (directory, task_rows) in enumerate(zip(directories, found, strict=True)):
        last = number == len(directories) - 1
        sub = directory.read_manifest()
        ids = "+".join(p["job_id"] for p in sub["parts"]) or "(nothing submitted)"
        states = summary(task_rows) if isinstance(task_rows, list) else task_rows
        lines.append(f"{'└── ' if last else '├── '}{sub['name']}  job {ids}  {states}")
        pad = "    " if last else "│   "
        entry: dict[str, Any] = {
            "name": sub["name"],
            "job_ids": [p["job_id"] for p in sub["parts"]],
            "directory": str(directory.path),
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

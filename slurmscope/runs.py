"""Runs: a pipeline script run as a driver job (``slurmscope run``), and what its
submissions say about it.

A run has an id (letters, digits, ``.``, ``_`` and ``-``) and a folder ``ROOT/runs/ID/`` in
the job root. ``run.json`` there says which script ran with which arguments, where, on which
backend and cluster, with which resources, and the driver job(s) that ran it (a resumed run
has more than one). Other files of the folder (``ledger.jsonl``) belong to resume.

The driver job's process has ``SLURMSCOPE_RUN``, ``SLURMSCOPE_ROOT``, ``SLURMSCOPE_BACKEND``
(and ``SLURMSCOPE_RESUME=1`` when it resumes the run) in its environment, and
``SLURMSCOPE_DRIVER_JOB`` / ``SLURMSCOPE_DRIVER_DIR`` naming its own job and job directory:
:func:`driver_fields` gives each submission made by that process the ``driver_job`` and
``run`` of its manifest (a task of the run that submits work is not the driver: its
``SLURMSCOPE_JOB_DIR`` is its own job directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import InvalidInputError
from .payload import atomic_write
from .payload_guard import dir_mode, make_dir

#: The run of the driver job this process belongs to.
RUN_ENV = "SLURMSCOPE_RUN"
#: "1": the driver job resumes its run (``slurmscope run --resume``, or a requeued driver).
RESUME_ENV = "SLURMSCOPE_RESUME"
#: The id of the driver job, set in the driver job's process.
DRIVER_JOB_ENV = "SLURMSCOPE_DRIVER_JOB"
#: The job directory of the driver job, set in the driver job's process.
DRIVER_DIR_ENV = "SLURMSCOPE_DRIVER_DIR"
#: The folder of the runs in a job root, and the record of each run in its folder.
RUNS = "runs"
RUN_FILE = "run.json"
#: The ledger of a run (:mod:`slurmscope.ledger`), and the lock ``slurmscope run`` holds on
#: a run's folder from its checks to writing ``run.json``.
LEDGER_FILE = "ledger.jsonl"
LOCK_FILE = ".lock"

_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")


def check_run_id(text: str) -> str:
    """``text`` if it is a valid run id; else an error saying what one is."""
    if not isinstance(text, str) or not _ID.fullmatch(text) or set(text) == {"."}:
        raise InvalidInputError(
            f"invalid run id {text!r}: a run id is 1 to 100 letters, digits, '.', '_' or '-' "
            "(not only dots), such as 'nightly-2026-11-29'."
        )
    return text


def new_run_id(script: str) -> str:
    """A fresh run id: the script's name, the time, and a few random letters."""
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", Path(script).stem)[:60].strip(".") or "run"
    return f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{os.urandom(2).hex()}"


def run_folder(root: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` in ``root``."""
    return Path(root) / RUNS / check_run_id(run_id)


def read_run(root: Path, run_id: str) -> dict[str, Any] | None:
    """The record of run ``run_id`` (``None``: there is no such run)."""
    try:
        text = (run_folder(root, run_id) / RUN_FILE).read_text()
    except FileNotFoundError:
        return None
    try:
        record: dict[str, Any] = json.loads(text)
    except ValueError as exc:
        raise InvalidInputError(
            f"the record of run {run_id} ({run_folder(root, run_id) / RUN_FILE}) is not JSON "
            f"({exc}); remove its folder if the run is of no more use."
        ) from None
    return record


def make_run_folder(root: Path, run_id: str, share_with_group: bool = False) -> Path:
    """Make the folder of run ``run_id`` (and ``ROOT/runs``), private, if missing."""
    folder = run_folder(root, run_id)
    mode = dir_mode(share_with_group)
    for path in (folder.parent, folder):
        if not path.is_dir():
            with contextlib.suppress(FileExistsError):  # made by another process meanwhile
                make_dir(str(path), mode)
    return folder


def write_run(root: Path, record: dict[str, Any], share_with_group: bool = False) -> Path:
    """Write the record of run ``record["id"]`` (atomically; the folders made private)."""
    folder = make_run_folder(root, record["id"], share_with_group)
    atomic_write(folder / RUN_FILE, (json.dumps(record, indent=1) + "\n").encode())
    return folder / RUN_FILE


@contextlib.contextmanager
def run_lock(root: Path, run_id: str, share_with_group: bool = False) -> Iterator[Path]:
    """Hold the lock of run ``run_id`` (``fcntl.flock`` on ``ROOT/runs/ID/.lock``, the
    folder made if missing): one ``slurmscope run`` at a time checks, submits and records a
    driver job of a run. Yields the run's folder. A lock file whose folder was removed
    meanwhile (by a ``slurmscope run`` that failed) is not a lock: taken again."""
    while True:
        folder = make_run_folder(root, run_id, share_with_group)
        path = folder / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o600)
        except FileNotFoundError:  # the folder went between making it and opening
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield folder
                return
        finally:
            os.close(fd)  # releases the lock


def ledger_only_runs(root: Path) -> list[str]:
    """The ids of the runs of ``root`` that have a ledger and no ``run.json`` (made in
    Python with ``Cluster(run=ID)``, not by ``slurmscope run``)."""
    return [
        path.parent.name
        for path in sorted((Path(root) / RUNS).glob(f"*/{LEDGER_FILE}"))
        if not (path.parent / RUN_FILE).exists()
    ]


def all_runs(root: Path) -> list[dict[str, Any]]:
    """The record of every run in ``root``, oldest first (unreadable ones are skipped)."""
    found = []
    for path in sorted((Path(root) / RUNS).glob(f"*/{RUN_FILE}")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and record.get("id") == path.parent.name:
            found.append(record)
    return sorted(found, key=lambda r: str(r.get("created", "")))


def runs_of_driver(root: Path, cluster: str, job_id: str) -> list[dict[str, Any]]:
    """The runs (usually one) whose driver jobs include ``job_id`` of ``cluster``."""
    return [
        r
        for r in all_runs(root)
        if r.get("cluster") == cluster and job_id in [str(d["job_id"]) for d in r["drivers"]]
    ]


def driver_fields() -> dict[str, Any]:
    """What a submission's manifest says of the driver job it comes from: ``driver_job``,
    its id, or ``None`` outside a driver job (the manifest's ``run`` is the run the
    submitting cluster records in: :mod:`slurmscope.ledger`)."""
    driver = os.environ.get(DRIVER_JOB_ENV)
    here = os.environ.get("SLURMSCOPE_JOB_DIR")
    if not driver or not here or here != os.environ.get(DRIVER_DIR_ENV):
        return {"driver_job": None}
    return {"driver_job": driver}


def record_restart(root: Path, run_id: str, job_id: str, restart: int) -> None:
    """Note in the record of run ``run_id`` that its driver job ``job_id`` started again
    (Slurm requeued it: ``SLURM_RESTART_COUNT`` is ``restart``)."""
    record = read_run(root, run_id)
    if record is None:
        return
    for driver in record["drivers"]:
        if str(driver["job_id"]) == job_id:
            driver.setdefault("restarts", []).append(
                {"restart": restart, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            )
    write_run(root, record)

"""``slurmscope cancel JOB``: cancel a job, an array, or one task (``id_index``), saying which
of its tasks had already ended."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..job_directory import JobDirectory
from ..states import TaskState
from ..tree import summary
from . import driven, handles
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    directory, asked = handles.find(root, args.job, args.cluster)
    job = handles.checked_handle(root, directory, asked)
    if args.all:
        return _all(root, directory, args)
    rows = handles.rows(job)
    ended = [r for r in rows if TaskState(r[2]).terminal]
    what = (f"task {asked}" if "_" in asked else f"job {asked}") if asked else str(directory.path)
    if len(ended) == len(rows):
        raise CliError(f"{what} has already ended ({summary(rows)}): nothing to cancel")
    job.cancel()
    cancelled = [r[1] for r in rows if not TaskState(r[2]).terminal]
    if args.json:
        print(json.dumps({"cancelled": cancelled, "already_ended": [r[1] for r in ended]}))
    elif ended:
        print(
            f"cancelled {len(cancelled)} unfinished tasks of {what}; "
            f"{len(ended)} had already ended ({summary(ended)})"
        )
    else:
        print(f"cancelled {what}")
    return 0


def _all(root: Path, directory: JobDirectory, args: argparse.Namespace) -> int:
    """``cancel --all DRIVER``: the driver job and what it submitted that has not ended."""
    done = driven.cancel_all(root, directory, directory.read_manifest())
    if args.json:
        print(json.dumps(done))
    elif not done["cancelled"]:
        print(f"driver job {args.job} and everything it submitted had already ended")
    else:
        print(
            f"cancelled {len(done['cancelled'])} job(s) of driver job {args.job}: "
            f"{', '.join(done['cancelled'])}"
            + (
                f"; already ended: {', '.join(done['already_ended'])}"
                if done["already_ended"]
                else ""
            )
        )
    return 0

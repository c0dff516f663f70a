"""``slurmscope cancel JOB``: cancel a job, an array, or one task (``id_index``), saying which
of its tasks had already ended."""

from __future__ import annotations

import argparse
import json

from ..states import TaskState
from ..tree import summary
from . import handles
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    directory, asked = handles.find(root, args.job, args.cluster)
    job = handles.checked_handle(root, directory, asked)
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

"""``slurmscope logs JOB [INDEX]``: the stdout and stderr of one task, or why there are none."""

from __future__ import annotations

import argparse
import json

from .. import ArrayJob
from ..diagnosis import item_log
from ..states import TaskState
from . import handles
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    directory, asked = handles.find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    task = "_" in asked
    if task and args.index is not None:
        raise CliError(f"give {asked} or {asked.partition('_')[0]} INDEX, not both")
    if not task:
        index = args.index or 0
        if index < 0 or index >= manifest["size"]:
            raise CliError(
                f"{manifest['name']} ({directory.path.name}) has no task {index}: its tasks "
                f"are 0 to {manifest['size'] - 1}"
                if manifest["size"]
                else f"{manifest['name']} ({directory.path.name}) has no tasks"
            )
    # JOBID_INDEX: that task of that part (a Job); else the task INDEX of the job
    found = handles.checked_handle(root, directory, asked)
    job = found[args.index or 0] if isinstance(found, ArrayJob) else found
    state, reason = handles.rows(job)[0][2:]
    found_logs: dict[str, dict[str, str | None]] = {}
    for suffix, path in zip(("stdout", "stderr"), job.log_paths(), strict=True):
        try:
            text: str | None = path.read_text(errors="replace")
        except OSError:
            text = None
        if text is not None and job.submission.pack > 1:  # the item's part of its pack's log
            text = item_log(text, job.index)
        found_logs[suffix] = {"path": str(path), "text": text}
    if args.json:
        about = {"job_id": job.job_id, "index": job.index, "state": state, "reason": reason}
        print(json.dumps(about | found_logs))
        return 0
    for log in found_logs.values():
        print(f"==> {log['path']} <==")
        print(log["text"] if log["text"] is not None else _no_log(state, reason))
    return 0


def _no_log(state: str, reason: str) -> str:
    how = f"{state} ({reason})" if reason else state
    if state == "PENDING":
        return f"(no log: the task has not started; it is {how})"
    if state == "RUNNING":
        return "(no log yet: the task is running and has written nothing)"
    if TaskState(state).terminal:
        return f"(no log: the task ended {how} without writing one; it may never have started)"
    return f"(no log: the task is {how})"

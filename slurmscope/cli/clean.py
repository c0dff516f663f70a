"""``slurmscope clean``: remove the job directories older than an age, keeping those of jobs
that have not ended and those that such jobs depend on."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..job_directory import BY_ID, MANIFEST, JobDirectory
from ..tree import ended
from . import handles
from .errors import CliError

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    match = _AGE.match(args.older_than)
    if match is None:
        raise CliError(
            f"--older-than takes an age such as 30m, 12h, 7d or 2w, not {args.older_than!r}"
        )
    cutoff = time.time() - float(match.group(1)) * _UNIT[match.group(2)]
    # Never a link out of the root, never a directory someone else could write into.
    directories = handles.checked(
        [JobDirectory(p.parent) for p in sorted(root.glob(f"*/{MANIFEST}"))]
    )
    manifests = {d.path: d.read_manifest() for d in directories}
    old = {d.path for d in directories if (d.path / MANIFEST).stat().st_mtime <= cutoff}
    # Every directory, not only the old ones, is asked whether it is unfinished: a job
    # submitted today may depend on one of last month.
    unfinished = _unfinished(root, directories, manifests)
    removing = {p for p in old if p not in unfinished or args.force}
    # A job that is not removed and has not finished may still need, through any kind of
    # dependency (a job passed as an argument included), the directories it depends on.
    # (Compared as real paths: the root may be given relative, or through a symlink.)
    needed_by: dict[str, list[str]] = {}
    for d in directories:
        if d.path in unfinished and d.path not in removing:
            for dep in manifests[d.path]["dependencies"]:
                if dep.get("target_dir"):
                    target = os.path.realpath(dep["target_dir"])
                    needed_by.setdefault(target, []).append(str(d.path))
    removed: list[str] = []
    kept: list[str] = []
    needed: list[dict[str, Any]] = []
    for d in directories:
        if d.path not in old:
            continue
        if d.path not in removing:
            kept.append(str(d.path))
        elif needed_by.get(os.path.realpath(d.path)):
            needed.append(
                {"directory": str(d.path), "needed_by": needed_by[os.path.realpath(d.path)]}
            )
        else:
            removed.append(str(d.path))
            if not args.dry_run:
                manifest = manifests[d.path]
                for part in manifest["parts"]:
                    _unlink_by_id(root, str(manifest["cluster"]), str(part["job_id"]), d.path)
                shutil.rmtree(d.path, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {
                    "removed": removed,
                    "kept_unfinished": kept,
                    "kept_needed": needed,
                    "dry_run": args.dry_run,
                }
            )
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"{verb} {len(removed)} job directories; kept {len(kept)} with unfinished tasks "
            f"and {len(needed)} that unfinished jobs depend on"
            + (f"; refused {len(handles.refused)} (see above)" if handles.refused else "")
        )
    return 1 if handles.refused else 0


def _unlink_by_id(root: Path, cluster: str, job_id: str, directory: Path) -> None:
    """Remove the ``by-id`` link of ``job_id`` when it is one, in ``root``'s ``by-id``, to
    ``directory``: a manifest's names never lead ``clean`` out of the root."""
    if not job_id.isdigit() or cluster in ("", ".", "..") or os.sep in cluster:
        return
    link = root / BY_ID / cluster / job_id
    if link.is_symlink() and os.path.realpath(link) == os.path.realpath(directory):
        link.unlink(missing_ok=True)


def _unfinished(
    root: Path, directories: Sequence[JobDirectory], manifests: dict[Path, dict[str, Any]]
) -> set[Path]:
    """The directories of jobs with a task that has not ended (or whose state cannot be
    known). A result file, or a final state recorded when a process saw the task end, says
    that a task ended; the scheduler is asked (once per cluster) about the others, and a
    task has ended when its state is terminal (:data:`slurmscope.states.TERMINAL_STATES`)."""
    undecided = []
    for d in directories:
        try:
            finished = set(d.finished())
        except OSError:
            finished = set()
        size = manifests[d.path]["size"]
        if len(finished) < size:
            finished |= d.recorded_states().keys()
        if len(finished & set(range(size))) < size:
            undecided.append(d)
    rows = handles.rows_of_many(root, undecided)
    return {
        d.path for d, r in zip(undecided, rows, strict=True) if isinstance(r, str) or not ended(r)
    }

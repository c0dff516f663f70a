"""``slurmscope status [JOB]``: the states of one job's tasks, or, without JOB, the latest
submissions with their tasks counted by state."""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..handle import requeue_lines
from ..job_directory import MANIFEST, JobDirectory
from ..tree import summary
from . import driven, handles


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    if not args.job:
        return _list(root, args)
    directory, asked = handles.find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    job = handles.checked_handle(root, directory, asked)
    rows = handles.rows(job)
    requeues = job.requeues
    drove = driven.tree(root, manifest, rows, args.all) if driven.is_driver(manifest) else None
    origin = driven.origin_line(root, manifest)
    if args.json:
        print(
            json.dumps(
                {
                    "driver_job": manifest.get("driver_job"),
                    "run": manifest.get("run"),
                    **({"driver_of": drove[1]} if drove else {}),
                    "name": manifest["name"],
                    "job_ids": [p["job_id"] for p in manifest["parts"]],
                    "directory": str(directory.path),
                    "counts": Counter(r[2] for r in rows),
                    "tasks": [
                        {"index": i, "job_id": j, "state": s, "reason": r} for i, j, s, r in rows
                    ],
                    "requeues": {str(i): reasons for i, reasons in requeues.items()},
                }
            )
        )
        return 0
    ids = ", ".join(p["job_id"] for p in manifest["parts"]) or "(nothing submitted)"
    print(f"{manifest['name']}  job {ids}  [{manifest['backend']}:{manifest['cluster']}]")
    print(f"  directory: {directory.path}")
    print(f"  logs:      {directory.path / 'logs'}  (slurmscope logs JOBID [INDEX])")
    print(f"  tasks:     {len(rows)}  ({summary(rows)})")
    if origin:
        print(origin)
    for line in requeue_lines(requeues):
        print(line)
    if drove:  # a driver job: the tree of what it submitted, with their tasks
        print("\n".join(drove[0]))
        return 0
    shown = rows if args.all else [r for r in rows if r[2] != "COMPLETED"][:50]
    if shown:
        print(f"  {'INDEX':>6}  {'JOBID':<14} {'STATE':<11} REASON")
        for index, job_id, state, reason in shown:
            print(f"  {index:>6}  {job_id:<14} {state:<11} {reason}")
        hidden = (
            len(rows) - len(shown)
            if args.all
            else len([r for r in rows if r[2] != "COMPLETED"]) - len(shown)
        )
        if hidden > 0:
            print(f"  ... {hidden} more (--all)")
    return 0


def _list(root: Path, args: argparse.Namespace) -> int:
    """The most recent submissions under ``root``, with the state of their tasks counted as
    ``status JOB`` counts them."""
    manifests = sorted(root.glob(f"*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)[-args.last :]
    directories = handles.checked([JobDirectory(path.parent) for path in manifests])
    rows = handles.rows_of_many(root, directories)
    out: list[dict[str, Any]] = []
    for directory, found in zip(directories, rows, strict=True):
        m = directory.read_manifest()
        try:
            done = sum(1 for n in os.listdir(directory.results_dir) if not n.startswith("."))
        except OSError:
            done = 0
        out.append(
            {
                "name": m["name"],
                "job_ids": [p["job_id"] for p in m["parts"]],
                "backend": m["backend"],
                "tasks": m["size"],
                "counts": Counter(r[2] for r in found) if isinstance(found, list) else None,
                "states": summary(found) if isinstance(found, list) else found,
                "with_outcome": done,
                "created": m["created"],
                "directory": str(directory.path),
            }
        )
    if args.json:
        print(json.dumps(out))
        return 1 if handles.refused else 0
    print(f"{'JOBID':<12} {'NAME':<20} {'BACKEND':<8} {'TASKS':>6}  {'CREATED':<24}  STATES")
    for row in out:
        first = row["job_ids"][0] if row["job_ids"] else "-"
        more = f"+{len(row['job_ids']) - 1}" if len(row["job_ids"]) > 1 else ""
        print(
            f"{first + more:<12} {row['name'][:20]:<20} {row['backend']:<8} "
            f"{row['tasks']:>6}  {row['created']:<24}  {row['states']}"
        )
    return 1 if handles.refused else 0

"""``slurmscope runs [RUN]``: the runs of ``slurmscope run`` under the job root, each with
its script, its driver jobs and their states; with ``RUN``, the tree of each of its driver
jobs (driver -> submissions -> tasks), as ``slurmscope status DRIVER`` shows it."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError
from ..job_directory import MANIFEST, JobDirectory
from ..runs import all_runs, check_run_id, read_run
from ..tree import summary
from . import driven, handles
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    if args.run:
        return _one(root, args)
    records = all_runs(root)[-args.last :]
    drivers = [(r, d) for r in records for d in r["drivers"]]
    present = [(r, d) for r, d in drivers if Path(d["directory"]).is_dir()]
    directories = handles.checked([JobDirectory(Path(d["directory"])) for _, d in present])
    states: dict[str, str] = {}
    for directory, rows in zip(directories, handles.rows_of_many(root, directories), strict=True):
        states[str(directory.path)] = summary(rows) if isinstance(rows, list) else rows
    out: list[dict[str, Any]] = []
    for record in records:
        out.append(
            {
                "id": record["id"],
                "script": record["script"],
                "args": record["args"],
                "backend": record["backend"],
                "cluster": record["cluster"],
                "created": record["created"],
                "drivers": [
                    {
                        "job_id": d["job_id"],
                        "state": states.get(d["directory"], "job directory removed"),
                        "resume": d["resume"],
                    }
                    for d in record["drivers"]
                ],
            }
        )
    if args.json:
        print(json.dumps(out))
        return 1 if handles.refused else 0
    if not out:
        print(f"no runs under {root} (`slurmscope run SCRIPT` starts one)")
        return 0
    print(f"{'RUN':<36} {'BACKEND':<8} {'CREATED':<24}  SCRIPT")
    for row in out:
        command = shlex.join([row["script"], *row["args"]])
        print(f"{row['id']:<36} {row['backend']:<8} {row['created']:<24}  {command}")
        for d in row["drivers"]:
            what = "resumed by" if d["resume"] else "driver"
            print(f"  {what} job {d['job_id']}: {d['state']}")
    return 1 if handles.refused else 0


def _one(root: Path, args: argparse.Namespace) -> int:
    """``runs RUN``: the run's record and the tree of each of its driver jobs."""
    try:
        record = read_run(root, check_run_id(args.run))
    except InvalidInputError as exc:
        raise CliError(str(exc)) from None
    if record is None:
        raise CliError(f"no run {args.run} under {root} (`slurmscope runs` lists the runs there)")
    trees: list[dict[str, Any]] = []
    lines = [
        f"run {record['id']}: {shlex.join([record['script'], *record['args']])}  "
        f"[{record['backend']}:{record['cluster']}]  in {record['cwd']}"
    ]
    for driver in record["drivers"]:
        directory = JobDirectory(Path(driver["directory"]))
        if not (directory.path / MANIFEST).is_file():
            lines.append(f"driver job {driver['job_id']}: its job directory was removed")
            continue
        rows = handles.rows(handles.checked_handle(root, directory, ""))
        text, data = driven.tree(root, directory.read_manifest(), rows, args.all)
        lines += text
        trees.append(data)
    if args.json:
        print(json.dumps(record | {"trees": trees}))
    else:
        print("\n".join(lines))
    return 0

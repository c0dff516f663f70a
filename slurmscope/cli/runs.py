"""``slurmscope runs``: the runs of ``slurmscope run`` under the job root, each with its
script, its driver jobs and their states."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from ..job_directory import JobDirectory
from ..runs import all_runs
from ..tree import summary
from . import handles


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
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

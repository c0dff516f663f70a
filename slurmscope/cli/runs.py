"""``slurmscope runs [RUN]``: the runs under the job root: those of ``slurmscope run``, each
with its script, its driver jobs and their states, and those made in Python
(``Cluster(run=ID)``: a ledger only), marked so. With ``RUN``, the tree of each of its
driver jobs (driver -> submissions -> tasks), as ``slurmscope status DRIVER`` shows it, and
each attempt's decisions from the run's ledger: what each submission was (new, reused,
resubmitted) and why."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any

from ..errors import InvalidInputError, SlurmscopeError
from ..job_directory import MANIFEST, JobDirectory
from ..ledger import read_ledger
from ..runs import LEDGER_FILE, all_runs, check_run_id, ledger_only_runs, read_run, run_folder
from ..tree import summary
from . import driven, handles
from .errors import CliError


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    if args.run:
        return _one(root, args)
    python = [_python_run(root, run_id) for run_id in ledger_only_runs(root)]
    every = sorted([*all_runs(root), *python], key=lambda r: str(r.get("created", "")))
    records = every[-args.last :]
    drivers = [(r, d) for r in records for d in r["drivers"]]
    present = [(r, d) for r, d in drivers if Path(d["directory"]).is_dir()]
    directories = handles.checked([JobDirectory(Path(d["directory"])) for _, d in present])
    states: dict[str, str] = {}
    for directory, rows in zip(directories, handles.rows_of_many(root, directories), strict=True):
        states[str(directory.path)] = summary(rows) if isinstance(rows, list) else rows
    out: list[dict[str, Any]] = []
    for record in records:
        if record.get("python"):
            out.append(record)
            continue
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
        if row.get("python"):
            print(
                f"{row['id']:<36} {'-':<8} {row['created']:<24}  (made in Python, ledger "
                f"only: {row['submissions']} submission(s) in {row['attempts']} attempt(s))"
            )
            continue
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
    entries = _ledger(root, args.run)
    if record is None:
        if entries is None or not (run_folder(root, args.run) / LEDGER_FILE).exists():
            raise CliError(
                f"no run {args.run} under {root} (`slurmscope runs` lists the runs there)"
            )
        lines = [f"run {args.run}: made in Python (Cluster(run={args.run!r})), a ledger only"]
        lines += _attempts(entries)
        if args.json:
            print(json.dumps({"id": args.run, "python": True, "ledger": entries}))
        else:
            print("\n".join(lines))
        return 0
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
    lines += _attempts(entries or [])
    if args.json:
        print(json.dumps(record | {"trees": trees, "ledger": entries or []}))
    else:
        print("\n".join(lines))
    return 0


def _ledger(root: Path, run_id: str) -> list[dict[str, Any]] | None:
    """The lines of the run's ledger (``None``: it cannot be read safely; said on stderr)."""
    try:
        return read_ledger(run_folder(root, run_id) / LEDGER_FILE)
    except SlurmscopeError as exc:
        print(f"slurmscope: {exc}", file=sys.stderr)
        handles.refused.append(str(run_folder(root, run_id) / LEDGER_FILE))
        return None


def _python_run(root: Path, run_id: str) -> dict[str, Any]:
    """What ``runs`` lists of a run made in Python: its ledger in figures."""
    entries = _ledger(root, run_id) or []
    return {
        "id": run_id,
        "python": True,
        "created": str(entries[0].get("time", "")) if entries else "",
        "submissions": len(entries),
        "attempts": len({e.get("attempt", 1) for e in entries}),
        "drivers": [],
    }


def _attempts(entries: list[dict[str, Any]]) -> list[str]:
    """Each attempt's submissions from the ledger: new, reused or submitted anew, and why."""
    lines: list[str] = []
    by_attempt: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        by_attempt.setdefault(int(entry.get("attempt", 1)), []).append(entry)
    if not by_attempt:
        return ["ledger: no submission recorded yet"]
    for attempt, made in sorted(by_attempt.items()):
        driver = next((str(e["driver_job"]) for e in made if e.get("driver_job")), None)
        by = f" (driver job {driver})" if driver else ""
        lines.append(f"attempt {attempt}{by}: {_counts(made)}")
        width = max(len(str(e.get("name", ""))) for e in made)
        for entry in made:
            ids = "+".join(entry.get("job_ids") or []) or "?"
            why = f": {entry['reason']}" if entry.get("reason") else ""
            lines.append(f"  {entry.get('name', ''):<{width}}  job {ids}  {entry['decision']}{why}")
    return lines


def _counts(made: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for entry in made:
        counts[str(entry.get("decision"))] = counts.get(str(entry.get("decision")), 0) + 1
    return ", ".join(f"{n} {d}" for d, n in counts.items())

"""``slurmscope status|explain|logs`` — read job directories from any process."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from .dependency import Dependency
from .payload import BY_ID, JobDirectory


def _root(args: argparse.Namespace) -> Path:
    return Path(
        args.root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs"
    ).expanduser()


def _find(root: Path, job: str, cluster: str | None) -> JobDirectory:
    if os.sep in job or Path(job).is_dir():
        return JobDirectory(Path(job))
    clusters = [cluster] if cluster else sorted(p.name for p in (root / BY_ID).glob("*"))
    for name in clusters:
        found = JobDirectory.find(root, name, job)
        if found is not None:
            return found
    raise SystemExit(
        f"slurmscope: no job {job} under {root} (clusters: {', '.join(clusters) or 'none'}); "
        "pass --root, --cluster or the job directory."
    )


def _outcomes(directory: JobDirectory, size: int) -> dict[str, int]:
    counts = {"succeeded": 0, "failed": 0, "no result yet": 0}
    for i in range(size):
        path = directory.result_path(i)
        if not path.exists():
            counts["no result yet"] += 1
            continue
        outcome = directory.read_outcome(i)
        counts["succeeded" if outcome and outcome["ok"] else "failed"] += 1
    return counts


def _status(args: argparse.Namespace) -> int:
    directory = _find(_root(args), args.job, args.cluster)
    manifest = directory.read_manifest()
    counts = _outcomes(directory, manifest["size"])
    if args.json:
        print(
            json.dumps({"directory": str(directory.path), "manifest": manifest, "outcomes": counts})
        )
        return 0
    ids = ", ".join(p["job_id"] for p in manifest["parts"]) or "(nothing submitted)"
    print(f"{manifest['name']}  job {ids}  [{manifest['backend']}:{manifest['cluster']}]")
    print(f"  directory: {directory.path}")
    print(f"  tasks: {manifest['size']}  " + "  ".join(f"{k}: {v}" for k, v in counts.items()))
    print(f"  logs: {directory.path / 'logs'}")
    return 0


def _explain_tree(root: Path, directory: JobDirectory, depth: int, seen: set[str]) -> list[str]:
    manifest = directory.read_manifest()
    lines = []
    for data in manifest["dependencies"]:
        dep = Dependency.from_json(data)
        pad = "    " * depth
        lines.append(f"{pad}└─ {dep.describe()}")
        target = data.get("target_dir")
        if target and target not in seen and Path(target, "manifest.json").exists():
            seen.add(target)
            upstream = JobDirectory(Path(target))
            up = upstream.read_manifest()
            counts = _outcomes(upstream, up["size"])
            state = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
            lines.append(f"{pad}    {up['name']} [{state}]")
            lines.extend(_explain_tree(root, upstream, depth + 1, seen))
    return lines


def _explain(args: argparse.Namespace) -> int:
    root = _root(args)
    directory = _find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    if args.json:
        print(json.dumps({"job": args.job, "dependencies": manifest["dependencies"]}))
        return 0
    ids = ", ".join(p["job_id"] for p in manifest["parts"])
    sub = manifest["submitted_from"]
    print(
        f"{manifest['name']} (job {ids}), submitted at {sub['file']}:{sub['line']} "
        f"in {sub['function']}() [thread {sub['thread']}]"
    )
    lines = _explain_tree(root, directory, 0, set())
    print("\n".join(lines) if lines else "  (no dependencies)")
    return 0


def _logs(args: argparse.Namespace) -> int:
    directory = _find(_root(args), args.job, args.cluster)
    manifest = directory.read_manifest()
    index = args.index or 0
    part = next(
        (p for p in manifest["parts"] if p["offset"] <= index < p["offset"] + p["count"]), None
    )
    if part is None:
        raise SystemExit(f"slurmscope: no task {index} in {directory.path}")
    stem = f"{part['job_id']}_{index - part['offset']}" if manifest["array"] else part["job_id"]
    for suffix in ("out", "err"):
        path = directory.path / "logs" / f"{stem}.{suffix}"
        print(f"==> {path} <==")
        print(path.read_text() if path.exists() else "(not written yet)")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slurmscope", description=__doc__)
    parser.add_argument(
        "--root", help="job directory root (default $SLURMSCOPE_ROOT or ~/.slurmscope/jobs)"
    )
    parser.add_argument("--cluster", help="cluster name the job id belongs to")
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, helptext in (
        ("status", "tasks and outcomes of a job"),
        ("explain", "the dependency tree with provenance"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("job", help="job id or job directory")
    p = sub.add_parser("logs", help="stdout and stderr of a task")
    p.add_argument("job")
    p.add_argument("index", nargs="?", type=int)
    args = parser.parse_args(argv)
    handler: Any = {"status": _status, "explain": _explain, "logs": _logs}[args.command]
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())

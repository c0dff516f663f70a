"""``slurmscope status|explain|logs|cancel|clean``: jobs from any process, on any backend.

Everything is read from the job directories (manifest, results, logs) and from the
scheduler the job was submitted to. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .payload import BY_ID, MANIFEST, JobDirectory

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _root(args: argparse.Namespace) -> Path:
    return Path(
        args.root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs"
    ).expanduser()


def _find(root: Path, job: str, cluster: str | None) -> tuple[JobDirectory, str]:
    """The job directory of ``job`` (an id, ``id_index`` or a directory) and the id asked."""
    if os.sep in job or Path(job).is_dir():
        return JobDirectory(Path(job)), ""
    clusters = [cluster] if cluster else sorted(p.name for p in (root / BY_ID).glob("*"))
    for name in clusters:
        found = JobDirectory.find(root, name, job)
        if found is not None:
            return found, job
    raise SystemExit(
        f"slurmscope: no job {job} under {root} (clusters: {', '.join(clusters) or 'none'}); "
        "pass --root, --cluster or the job directory."
    )


_clusters: dict[tuple[str, str], Any] = {}


def _handle(root: Path, directory: JobDirectory, asked: str = "") -> Any:
    """A live handle (states from the scheduler) for a job directory."""
    from .cluster import Cluster

    manifest = directory.read_manifest()
    key = (manifest["backend"], str(root))
    if key not in _clusters:
        _clusters[key] = Cluster(manifest["backend"], root=root, set_as_default=False)
    cluster = _clusters[key]
    return cluster.attach(asked if asked else directory.path)


def _states(handle: Any) -> list[tuple[int, str, str, str]]:
    """(index, scheduler id, state, reason) of every task, after one poll."""
    from .jobs import ArrayJob

    handle.cluster._poller._poll()
    jobs = list(handle) if isinstance(handle, ArrayJob) else [handle]
    rows = []
    for job in jobs:
        state = job._submission.states[job.index]
        rows.append(
            (
                job.index,
                job.job_id,
                state.state if state else "PENDING",
                (state.reason or "") if state and state.reason != "None" else "",
            )
        )
    return rows


def _summary(rows: list[tuple[int, str, str, str]]) -> str:
    counts = Counter(state for _, _, state, _ in rows)
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "no tasks"


def _status(args: argparse.Namespace) -> int:
    root = _root(args)
    if not args.job:
        return _list(root, args)
    directory, asked = _find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    rows = _states(_handle(root, directory, asked))
    if args.json:
        print(
            json.dumps(
                {
                    "name": manifest["name"],
                    "job_ids": [p["job_id"] for p in manifest["parts"]],
                    "directory": str(directory.path),
                    "counts": Counter(r[2] for r in rows),
                    "tasks": [
                        {"index": i, "job_id": j, "state": s, "reason": r} for i, j, s, r in rows
                    ],
                }
            )
        )
        return 0
    ids = ", ".join(p["job_id"] for p in manifest["parts"]) or "(nothing submitted)"
    print(f"{manifest['name']}  job {ids}  [{manifest['backend']}:{manifest['cluster']}]")
    print(f"  directory: {directory.path}")
    print(f"  logs:      {directory.path / 'logs'}  (slurmscope logs JOBID [INDEX])")
    print(f"  tasks:     {len(rows)}  ({_summary(rows)})")
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
    """The most recent submissions under ``root``, from their directories alone."""
    manifests = sorted(root.glob(f"*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)[-args.last :]
    out = []
    for path in manifests:
        directory = JobDirectory(path.parent)
        m = directory.read_manifest()
        done = sum(1 for n in os.listdir(directory.results_dir) if not n.startswith("."))
        out.append(
            {
                "name": m["name"],
                "job_ids": [p["job_id"] for p in m["parts"]],
                "backend": m["backend"],
                "tasks": m["size"],
                "with_outcome": done,
                "created": m["created"],
                "directory": str(directory.path),
            }
        )
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'JOBID':<12} {'NAME':<20} {'BACKEND':<8} {'TASKS':>6} {'ENDED':>6}  CREATED")
    for row in out:
        first = row["job_ids"][0] if row["job_ids"] else "-"
        more = f"+{len(row['job_ids']) - 1}" if len(row["job_ids"]) > 1 else ""
        print(
            f"{first + more:<12} {row['name'][:20]:<20} {row['backend']:<8} "
            f"{row['tasks']:>6} {row['with_outcome']:>6}  {row['created']}"
        )
    return 0


def _explain(args: argparse.Namespace) -> int:
    root = _root(args)
    directory, _ = _find(root, args.job, args.cluster)
    tree = _node(root, directory, set())
    if args.json:
        print(json.dumps(tree))
        return 0
    sub = tree["submitted_from"]
    print(
        f"{tree['name']} (job {', '.join(tree['job_ids'])}): {tree['summary']}\n"
        f"  submitted at {sub['file']}:{sub['line']} in {sub['function']}() "
        f"[thread {sub['thread']}]"
    )
    lines: list[str] = []
    _render(tree, 0, lines)
    print("\n".join(lines) if lines else "  (no dependencies)")
    return 0


def _node(root: Path, directory: JobDirectory, seen: set[str]) -> dict[str, Any]:
    manifest = directory.read_manifest()
    try:
        rows = _states(_handle(root, directory))
        summary = _summary(rows)
        failed = any(s not in ("COMPLETED", "PENDING", "RUNNING", "UNKNOWN") for _, _, s, _ in rows)
    except Exception as exc:  # the scheduler may be unreachable: say so, go on
        summary, failed = f"state unknown ({exc})", False
    node: dict[str, Any] = {
        "name": manifest["name"],
        "job_ids": [p["job_id"] for p in manifest["parts"]],
        "directory": str(directory.path),
        "summary": summary,
        "failed": failed,
        "submitted_from": manifest["submitted_from"],
        "dependencies": [],
    }
    for data in manifest["dependencies"]:
        edge: dict[str, Any] = {
            "kind": data["kind"],
            "target": data["target"],
            "provenance": data["provenance"],
        }
        target = data.get("target_dir")
        if target and target not in seen and Path(target, MANIFEST).exists():
            seen.add(target)
            edge["upstream"] = _node(root, JobDirectory(Path(target)), seen)
        node["dependencies"].append(edge)
    return node


def _render(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    from .dependency import Provenance

    pad = "    " * depth
    for edge in node["dependencies"]:
        on = f"{edge['kind']}:{edge['target']}" if edge["target"] else edge["kind"]
        why = Provenance.from_json(edge["provenance"]).describe()
        lines.append(f"{pad}└─ {on}  <- {why}")
        upstream = edge.get("upstream")
        if upstream:
            mark = "  ✗ FAILED: dependents of this job cannot run" if upstream["failed"] else ""
            lines.append(
                f"{pad}    {upstream['name']} (job {', '.join(upstream['job_ids'])}): {upstream['summary']}{mark}"
            )
            _render(upstream, depth + 1, lines)


def _logs(args: argparse.Namespace) -> int:
    directory, asked = _find(_root(args), args.job, args.cluster)
    manifest = directory.read_manifest()
    index = args.index
    if index is None:
        index = int(asked.split("_")[1]) if "_" in asked else 0
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


def _cancel(args: argparse.Namespace) -> int:
    root = _root(args)
    directory, asked = _find(root, args.job, args.cluster)
    handle = _handle(root, directory, asked)
    handle.cancel()
    print(f"cancelled {asked or directory.path}")
    return 0


def _clean(args: argparse.Namespace) -> int:
    root = _root(args)
    match = _AGE.match(args.older_than)
    if match is None:
        raise SystemExit(
            f"slurmscope: --older-than takes an age such as 30m, 12h, 7d or 2w, not {args.older_than!r}"
        )
    cutoff = time.time() - float(match.group(1)) * _UNIT[match.group(2)]
    removed, kept = [], []
    for path in sorted(root.glob(f"*/{MANIFEST}")):
        directory = JobDirectory(path.parent)
        if path.stat().st_mtime > cutoff:
            continue
        manifest = directory.read_manifest()
        ended = sum(1 for n in os.listdir(directory.results_dir) if not n.startswith("."))
        if ended < manifest["size"] and not args.force:
            try:
                unfinished = [r for r in _states(_handle(root, directory)) if r[2] not in _TERMINAL]
            except Exception:
                unfinished = [(0, "", "UNKNOWN", "")]
            if unfinished:
                kept.append(str(directory.path))
                continue
        removed.append(str(directory.path))
        if not args.dry_run:
            for part in manifest["parts"]:
                (root / BY_ID / manifest["cluster"] / part["job_id"]).unlink(missing_ok=True)
            shutil.rmtree(directory.path, ignore_errors=True)
    if args.json:
        print(json.dumps({"removed": removed, "kept_unfinished": kept, "dry_run": args.dry_run}))
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(f"{verb} {len(removed)} job directories; kept {len(kept)} with unfinished tasks")
    return 0


_TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "LOST"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="slurmscope",
        description="Inspect slurmscope jobs: status, dependency provenance, logs; cancel; clean up.",
    )
    parser.add_argument(
        "--root", help="job directory root (default $SLURMSCOPE_ROOT, else ~/.slurmscope/jobs)"
    )
    parser.add_argument("--cluster", help="the cluster a job id belongs to (default: any)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("status", help="states of a job's tasks, or the latest jobs")
    p.add_argument("job", nargs="?", help="job id, id_index, or job directory")
    p.add_argument("--all", action="store_true", help="list every task, completed ones too")
    p.add_argument("--last", type=int, default=20, help="how many jobs to list without JOB")
    p = sub.add_parser("explain", help="the dependency tree, each edge with its provenance")
    p.add_argument("job")
    p = sub.add_parser("logs", help="stdout and stderr of one task")
    p.add_argument("job")
    p.add_argument("index", nargs="?", type=int)
    p = sub.add_parser("cancel", help="cancel a job, an array, or one task (id_index)")
    p.add_argument("job")
    p = sub.add_parser("clean", help="remove job directories older than an age")
    p.add_argument("--older-than", default="7d", help="age: 30m, 12h, 7d, 2w (default 7d)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--force", action="store_true", help="also remove jobs still unfinished")
    args = parser.parse_args(argv)
    handler = {
        "status": _status,
        "explain": _explain,
        "logs": _logs,
        "cancel": _cancel,
        "clean": _clean,
    }[args.command]
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())

"""The dependency tree of jobs as plain data, read from their job directories.

What ``slurmscope explain`` prints and ``slurmscope graph`` / ``job.graph()`` draw: for a
job, its name, ids, per-state counts and outcome, and every dependency with its kind and
provenance, each leading (once per job: a job reached twice is expanded the first time) to
the tree of the job it waits for. The task states come from a ``rows_of`` callable, so that
the command (a fresh handle per job directory) and a driver (its own cluster's handles)
share this one walk.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from .dependency import never_satisfied
from .job_directory import MANIFEST, JobDirectory
from .states import TaskState

Row = tuple[int, str, str, str]  # (index, scheduler id, state, reason)
#: The task rows of a job directory (``asked``: ``"12_3"`` for one task, else ``""``).
RowsOf = Callable[[JobDirectory, str], Sequence[Row]]


def key(path: str | os.PathLike[str]) -> str:
    """One name per job directory, however it was given (relative, through a symlink)."""
    return os.path.realpath(path)


def summary(rows: Sequence[Row]) -> str:
    counts = Counter(state for _, _, state, _ in rows)
    return ", ".join(f"{state} {n}" for state, n in sorted(counts.items())) or "no tasks"


def ended(rows: Sequence[Row]) -> bool:
    return all(TaskState(state).terminal for _, _, state, _ in rows)


def node(
    directory: JobDirectory, rows_of: RowsOf, seen: set[str], asked: str = ""
) -> dict[str, Any]:
    """The tree of ``directory``: every job upstream of it not in ``seen`` (which it adds to)."""
    seen.add(key(directory.path))
    manifest = directory.read_manifest()
    outcome: bool | None = None
    counts: dict[str, int] = {}
    try:
        rows = rows_of(directory, asked)
        text = summary(rows)
        counts = dict(Counter(s for *_, s, _ in rows))
        failed = any(TaskState(s).terminal and not TaskState(s).succeeded for *_, s, _ in rows)
        if rows and ended(rows):
            outcome = all(s == "COMPLETED" for _, _, s, _ in rows)
    except Exception as exc:  # the scheduler may be unreachable: say so, go on
        text, failed = f"state unknown ({exc})", False
    tree: dict[str, Any] = {
        "name": manifest["name"],
        "job_ids": [p["job_id"] for p in manifest["parts"]],
        "directory": str(directory.path),
        "size": manifest["size"],
        "array": manifest["array"],
        "pack": manifest.get("pack"),
        "summary": text,
        "counts": counts,
        "failed": failed,
        "succeeded": outcome,
        "submitted_from": manifest["submitted_from"],
        "dependencies": [],
    }
    for data in manifest["dependencies"]:
        edge: dict[str, Any] = {
            "kind": data["kind"],
            "target": data["target"],
            "target_dir": data.get("target_dir"),
            "provenance": data["provenance"],
            "never_satisfied": None,
        }
        target = data.get("target_dir")
        if target and not Path(target, MANIFEST).exists():
            edge["removed"] = target
        elif target and key(target) not in seen:
            edge["upstream"] = node(JobDirectory(Path(target)), rows_of, seen)
        tree["dependencies"].append(edge)
    return tree


def _outcomes(tree: dict[str, Any], found: dict[str, bool | None]) -> None:
    found[key(tree["directory"])] = tree["succeeded"]
    for edge in tree["dependencies"]:
        if "upstream" in edge:
            _outcomes(edge["upstream"], found)


def _mark_never_satisfied(tree: dict[str, Any], outcomes: dict[str, bool | None]) -> None:
    """Every edge to an ended job whose ending can never satisfy it, by its kind (also the
    edges to a job expanded elsewhere in the trees)."""
    for edge in tree["dependencies"]:
        ended_ok = outcomes.get(key(edge["target_dir"])) if edge["target_dir"] else None
        if ended_ok is not None:
            edge["never_satisfied"] = never_satisfied(edge["kind"], ended_ok)
        if "upstream" in edge:
            _mark_never_satisfied(edge["upstream"], outcomes)


def trees(
    jobs: Iterable[tuple[JobDirectory, str]], rows_of: RowsOf, downstream_of: Path | None = None
) -> list[dict[str, Any]]:
    """The trees of ``jobs`` (directory, task asked), each job once over all of them; with
    ``downstream_of`` (a root), also of every job under that root that depends, directly or
    not, on one of them."""
    seen: set[str] = set()
    found = [node(d, rows_of, seen, asked) for d, asked in jobs if key(d.path) not in seen]
    if downstream_of is not None:
        waiting = _dependencies_under(downstream_of)
        grew = True
        while grew:
            grew = False
            for directory, targets in waiting.items():
                if key(directory) not in seen and any(t in seen for t in targets):
                    found.append(node(JobDirectory(directory), rows_of, seen))
                    grew = True
    outcomes: dict[str, bool | None] = {}
    for tree in found:
        _outcomes(tree, outcomes)
    for tree in found:
        _mark_never_satisfied(tree, outcomes)
    return found


def _dependencies_under(root: Path) -> dict[Path, set[str]]:
    """Every job directory under ``root`` (in submission order) with the directories it
    depends on; one whose manifest cannot be read is left out."""
    found = {}
    for path in sorted(root.glob(f"*/{MANIFEST}")):
        try:
            deps = JobDirectory(path.parent).read_manifest()["dependencies"]
        except (OSError, ValueError, KeyError):
            continue
        found[path.parent] = {key(d["target_dir"]) for d in deps if d.get("target_dir")}
    return found

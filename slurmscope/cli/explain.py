"""``slurmscope explain JOB``: the dependency tree of a job as text, each edge with its kind,
its provenance and the state of the job it waits for."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..callsite import CallSite
from ..dependency import Provenance
from ..handle import requeue_lines
from ..tree import trees
from . import driven, handles


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    directory, asked = handles.find(root, args.job, args.cluster)
    job = handles.checked_handle(root, directory, asked)  # a task it does not have: an error
    tree = trees([(directory, asked)], handles.rows_of(root))[0]
    if args.json:
        print(json.dumps(tree | {"driver_job": directory.read_manifest().get("driver_job")}))
        return 0
    # A driver job's call site is the command's own code: the command line says more.
    command = driven.command_of(root, directory.read_manifest())
    site = command or CallSite.from_json(tree["submitted_from"])  # with its origin job, if any
    what = f"task {asked}" if "_" in asked else f"job {', '.join(tree['job_ids'])}"
    print(f"{tree['name']} ({what}): {tree['summary']}\n  submitted at {site}")
    origin = driven.origin_line(root, directory.read_manifest())
    if origin:
        print(origin)
    if tree.get("pack"):
        print(f"  packed: {tree['pack']} items per Slurm array task ({tree['size']} items)")
    lines: list[str] = []
    _render(tree, 0, lines)
    print("\n".join(lines) if lines else "  (no dependencies)")
    for line in requeue_lines(job.requeues):
        print(line)
    return 0


def _render(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    """The dependencies of ``node`` (a tree of :func:`slurmscope.tree.trees`), one line
    each, every upstream job under the edge that leads to it, added to ``lines``."""
    pad = "    " * depth
    for edge in node["dependencies"]:
        on = f"{edge['kind']}:{edge['target']}" if edge["target"] else edge["kind"]
        why = Provenance.from_json(edge["provenance"]).describe()
        lines.append(f"{pad}└─ {on}  <- {why}")
        upstream = edge.get("upstream")
        if upstream:
            never = edge.get("never_satisfied")
            mark = f"  ✗ never satisfied ({never}): this job cannot run" if never else ""
            lines.append(
                f"{pad}    {upstream['name']} (job {', '.join(upstream['job_ids'])}): "
                f"{upstream['summary']}{mark}"
            )
            _render(upstream, depth + 1, lines)
        elif edge.get("removed"):
            lines.append(f"{pad}    (its job directory {edge['removed']} was removed)")

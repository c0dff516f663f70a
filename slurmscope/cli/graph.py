"""``slurmscope graph JOB...``: a picture of the dependency graph of some jobs (DOT, Mermaid,
or SVG/PNG rendered by Graphviz; see :mod:`slurmscope.graph`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..graph import Graph, format_for
from ..tree import trees
from . import handles


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args)
    jobs = [handles.find(root, job, args.cluster) for job in args.job]
    for directory, asked in jobs:
        handles.checked_handle(root, directory, asked)
    found = trees(jobs, handles.rows_of(root), root if args.downstream else None)
    graph = Graph.from_trees(found)
    fmt = args.format or (format_for(Path(args.output)) if args.output else "dot")
    data = graph.render(fmt)  # before any output: a missing Graphviz is the one error line
    if args.output:
        Path(args.output).write_bytes(data)
    elif not args.json:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    if args.json:
        print(json.dumps(graph.to_json() | ({"output": args.output} if args.output else {})))
    return 0

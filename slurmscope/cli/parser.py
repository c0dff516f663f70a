"""The command line: every verb, its arguments and its help (``slurmscope --help``). A bad
command line is a :class:`~slurmscope.cli.errors.CliError` with exit status 2."""

from __future__ import annotations

import argparse
from typing import NoReturn

from ..graph import FORMATS
from .errors import CliError


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`CliError` (one line, exit status 2)."""

    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", code=2)


def build() -> Parser:
    """The parser of ``slurmscope``'s command line."""
    parser = Parser(
        prog="slurmscope",
        description="Inspect slurmscope jobs: status, dependency provenance, logs; cancel; clean "
        "up; run a pipeline script as a driver job; migrate slurm-sdk code.",
    )
    parser.add_argument(
        "--root", help="job directory root (default $SLURMSCOPE_ROOT, else ~/.slurmscope/jobs)"
    )
    parser.add_argument("--cluster", help="the cluster a job id belongs to (default: any)")
    parser.add_argument(
        "--allow-writable-root",
        action="store_true",
        help="accept a root that others can write into (Cluster(allow_writable_root=True)); "
        "job directories are still checked before anything is loaded",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    p = sub.add_parser("status", help="states of a job's tasks, or the latest jobs")
    p.add_argument("job", nargs="?", help="job id, id_index, or job directory")
    p.add_argument("--all", action="store_true", help="list every task, completed ones too")
    p.add_argument("--last", type=int, default=20, help="how many jobs to list without JOB")
    p = sub.add_parser("explain", help="the dependency tree, each edge with its provenance")
    p.add_argument("job", help="job id, id_index, or job directory")
    p = sub.add_parser("graph", help="a picture of the dependency graph (svg, png, dot, mermaid)")
    p.add_argument("job", nargs="+", help="job ids, id_index, or job directories")
    p.add_argument(
        "-f",
        "--format",
        choices=FORMATS,
        help="output format (default: by -o's suffix; dot on stdout)",
    )
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument(
        "--downstream", action="store_true", help="also the jobs under the root that wait on them"
    )
    p = sub.add_parser("logs", help="stdout and stderr of one task")
    p.add_argument("job", help="job id, id_index, or job directory")
    p.add_argument("index", nargs="?", type=int, help="item index within the job (default 0)")
    p = sub.add_parser("cancel", help="cancel a job, an array, or one task (id_index)")
    p.add_argument("job", help="job id, id_index, or job directory")
    p.add_argument(
        "--all",
        action="store_true",
        help="a driver job (slurmscope run): also everything it submitted that has not ended",
    )
    p = sub.add_parser(
        "run",
        help="submit a pipeline script as a driver job; its submissions go to the same "
        "cluster and root",
    )
    p.add_argument("--backend", help="auto (default), local, sbatch or pyslurm")
    p.add_argument("--time", help="the driver job's time limit (Slurm's syntax)")
    p.add_argument("--mem", help="the driver job's memory (4G, 500M)")
    p.add_argument("--cpus-per-task", type=int, help="the driver job's CPUs")
    p.add_argument("--gpus", type=int, help="the driver job's GPUs")
    p.add_argument("--partition")
    p.add_argument("--account")
    p.add_argument("--qos")
    p.add_argument(
        "--extra", action="append", metavar="FLAG", help="another sbatch flag (repeatable)"
    )
    p.add_argument(
        "--requeue", action="store_true", help="let Slurm requeue the driver (node failure)"
    )
    p.add_argument("--run-id", help="the run's id (default: SCRIPT-DATE-TIME-XXXX)")
    p.add_argument("--resume", metavar="RUN", help="a new driver job for the run RUN")
    p.add_argument("script", nargs="?", help="the pipeline script (python SCRIPT ARGS...)")
    p.add_argument("args", nargs=argparse.REMAINDER, help="the script's arguments")
    p = sub.add_parser("runs", help="the runs of `slurmscope run`, with their driver jobs")
    p.add_argument("run", nargs="?", help="one run: the tree of each of its driver jobs")
    p.add_argument("--last", type=int, default=20, help="how many runs to list")
    p.add_argument("--all", action="store_true", help="with RUN: every task of each stage")
    p = sub.add_parser("clean", help="remove job directories older than an age")
    p.add_argument("--older-than", default="7d", help="age: 30m, 12h, 7d, 2w (default 7d)")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--force", action="store_true", help="also remove jobs still unfinished")
    p = sub.add_parser("migrate", help="rewrite slurm-sdk code for slurmscope (in place)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="Python files or directories")
    p.add_argument("--diff", action="store_true", help="print a unified diff, write nothing")
    p.add_argument(
        "--check", action="store_true", help="write nothing, exit 1 if a file would change"
    )
    # --json is taken after the command too (`slurmscope status --json 12`), by every command.
    for command in sub.choices.values():
        command.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable output"
        )
    return parser

"""``slurmscope status|explain|graph|logs|cancel|clean``: jobs from any process, on any backend;
``slurmscope migrate``: rewrite slurm-sdk code (the logic is in :mod:`slurmscope.migrate`).

Everything is read from the job directories (manifest, results, recorded final states,
logs) and from the scheduler the job was submitted to. ``--json`` prints machine-readable
output. Every error is one line on stderr and a non-zero exit status (2 for a bad command
line); under ``--json`` it is also ``{"error": ..., "exit_code": ...}`` on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from .graph import FORMATS, Graph, format_for
from .payload import BY_ID, MANIFEST, JobDirectory, split_job_id
from .states import TaskState
from .tree import Row, trees
from .tree import ended as _ended
from .tree import summary as _summary

_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw]?)$")
_UNIT = {"": 86400, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class CliError(Exception):
    """An error the command reports in one line (``code``: the exit status)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise CliError(f"{message} (see `{self.prog} --help`)", code=2)


def _root(args: argparse.Namespace) -> Path:
    return Path(
        args.root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs"
    ).expanduser()


def _find(root: Path, job: str, cluster: str | None) -> tuple[JobDirectory, str]:
    """The job directory of ``job`` (an id, ``id_index`` or a directory) and the id asked."""
    if os.sep in job or _is_dir(job):
        directory = JobDirectory(Path(job))
        if not (directory.path / MANIFEST).exists():
            raise CliError(f"{directory.path} is not a job directory (it holds no {MANIFEST})")
        return directory, ""
    try:
        job_id, _ = split_job_id(job)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    clusters = [cluster] if cluster else sorted(p.name for p in (root / BY_ID).glob("*"))
    for name in clusters:
        found = JobDirectory.find(root, name, job_id)
        if found is not None and (found.path / MANIFEST).exists():
            return found, job.strip()
    raise CliError(
        f"no job {job_id} under {root} (clusters: {', '.join(clusters) or 'none'}); "
        "pass --root, --cluster or the job directory."
    )


def _is_dir(text: str) -> bool:
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a directory
        return False


_clusters: dict[tuple[str, str], Any] = {}


def _handle(root: Path, directory: JobDirectory, asked: str = "") -> Any:
    """A handle (states from the job directory and the scheduler) for a job directory;
    ``asked`` ``"12_3"`` gives the handle of that task (an error if it has no such task)."""
    from .cluster import Cluster

    manifest = directory.read_manifest()
    key = (manifest["backend"], str(root))
    if key not in _clusters:
        _clusters[key] = Cluster(manifest["backend"], root=root, set_as_default=False)
    return _clusters[key].attach(asked if asked else directory.path)


def _poll(handles: Iterable[Any]) -> None:
    """One look at the files and one scheduler query per cluster, for all ``handles``."""
    for handle in {id(h.cluster): h for h in handles}.values():
        handle.refresh()


def _states(handle: Any) -> list[Row]:
    """The rows of ``handle`` after one poll."""
    _poll([handle])
    rows: list[Row] = handle.task_rows()
    return rows


# -- status -------------------------------------------------------------------------------------
def _status(args: argparse.Namespace) -> int:
    root = _root(args)
    if not args.job:
        return _list(root, args)
    directory, asked = _find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    rows = _states(_checked_handle(root, directory, asked))
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


def _checked_handle(root: Path, directory: JobDirectory, asked: str) -> Any:
    """:func:`_handle`, with the library's errors (no such task...) as one-line errors."""
    from .errors import SlurmscopeError

    try:
        return _handle(root, directory, asked)
    except SlurmscopeError as exc:
        raise CliError(str(exc)) from None


def _list(root: Path, args: argparse.Namespace) -> int:
    """The most recent submissions under ``root``, with the state of their tasks counted as
    ``status JOB`` counts them."""
    manifests = sorted(root.glob(f"*/{MANIFEST}"), key=lambda p: p.stat().st_mtime)[-args.last :]
    directories = [JobDirectory(path.parent) for path in manifests]
    rows = _rows_of_many(root, directories)
    out = []
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
                "states": _summary(found) if isinstance(found, list) else found,
                "with_outcome": done,
                "created": m["created"],
                "directory": str(directory.path),
            }
        )
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"{'JOBID':<12} {'NAME':<20} {'BACKEND':<8} {'TASKS':>6}  {'CREATED':<24}  STATES")
    for row in out:
        first = row["job_ids"][0] if row["job_ids"] else "-"
        more = f"+{len(row['job_ids']) - 1}" if len(row["job_ids"]) > 1 else ""
        print(
            f"{first + more:<12} {row['name'][:20]:<20} {row['backend']:<8} "
            f"{row['tasks']:>6}  {row['created']:<24}  {row['states']}"
        )
    return 0


def _rows_of_many(root: Path, directories: Sequence[JobDirectory]) -> list[list[Row] | str]:
    """The task rows of every directory after one poll per cluster (a string saying why,
    where the states cannot be known)."""
    handles: list[Any] = []
    for directory in directories:
        try:
            handles.append(_handle(root, directory))
        except Exception as exc:  # an unreachable scheduler, a broken manifest: say so
            handles.append(f"state unknown ({exc})")
    try:
        _poll(h for h in handles if not isinstance(h, str))
    except Exception as exc:
        return [h if isinstance(h, str) else f"state unknown ({exc})" for h in handles]
    return [h if isinstance(h, str) else h.task_rows() for h in handles]


def _rows_of(root: Path) -> Any:
    """The task rows of a job directory, from a fresh handle (see :mod:`slurmscope.tree`)."""
    return lambda directory, asked: _states(_handle(root, directory, asked))


# -- explain ------------------------------------------------------------------------------------
def _explain(args: argparse.Namespace) -> int:
    root = _root(args)
    directory, asked = _find(root, args.job, args.cluster)
    _checked_handle(root, directory, asked)  # an id of a task it does not have is an error
    tree = trees([(directory, asked)], _rows_of(root))[0]
    if args.json:
        print(json.dumps(tree))
        return 0
    sub = tree["submitted_from"]
    what = f"task {asked}" if "_" in asked else f"job {', '.join(tree['job_ids'])}"
    print(
        f"{tree['name']} ({what}): {tree['summary']}\n"
        f"  submitted at {sub['file']}:{sub['line']} in {sub['function']}() "
        f"[thread {sub['thread']}]"
    )
    lines: list[str] = []
    _render(tree, 0, lines)
    print("\n".join(lines) if lines else "  (no dependencies)")
    return 0


def _render(node: dict[str, Any], depth: int, lines: list[str]) -> None:
    from .dependency import Provenance

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


# -- graph --------------------------------------------------------------------------------------
def _graph(args: argparse.Namespace) -> int:
    root = _root(args)
    jobs = [_find(root, job, args.cluster) for job in args.job]
    for directory, asked in jobs:
        _checked_handle(root, directory, asked)
    found = trees(jobs, _rows_of(root), root if args.downstream else None)
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


# -- logs ---------------------------------------------------------------------------------------
def _logs(args: argparse.Namespace) -> int:
    root = _root(args)
    directory, asked = _find(root, args.job, args.cluster)
    manifest = directory.read_manifest()
    task = "_" in asked
    if task and args.index is not None:
        raise CliError(f"give {asked} or {asked.partition('_')[0]} INDEX, not both")
    if task:  # JOBID_INDEX: that task of that part
        handle = _checked_handle(root, directory, asked)
    else:
        index = args.index or 0
        if index < 0 or index >= manifest["size"]:
            raise CliError(
                f"{manifest['name']} ({directory.path.name}) has no task {index}: its tasks "
                f"are 0 to {manifest['size'] - 1}"
                if manifest["size"]
                else f"{manifest['name']} ({directory.path.name}) has no tasks"
            )
        whole = _checked_handle(root, directory, asked)
        handle = whole[index] if manifest["array"] else whole
    state, reason = _states(handle)[0][2:]
    out = {"job_id": handle.job_id, "index": handle.index, "state": state, "reason": reason}
    for suffix, path in zip(("stdout", "stderr"), handle.log_paths(), strict=True):
        try:
            text: str | None = path.read_text(errors="replace")
        except OSError:
            text = None
        out[suffix] = {"path": str(path), "text": text}
    if args.json:
        print(json.dumps(out))
        return 0
    for suffix in ("stdout", "stderr"):
        print(f"==> {out[suffix]['path']} <==")
        text = out[suffix]["text"]
        print(text if text is not None else _no_log(state, reason))
    return 0


def _no_log(state: str, reason: str) -> str:
    how = f"{state} ({reason})" if reason else state
    if state == "PENDING":
        return f"(no log: the task has not started; it is {how})"
    if state == "RUNNING":
        return "(no log yet: the task is running and has written nothing)"
    if TaskState(state).terminal:
        return f"(no log: the task ended {how} without writing one; it may never have started)"
    return f"(no log: the task is {how})"


# -- cancel -------------------------------------------------------------------------------------
def _cancel(args: argparse.Namespace) -> int:
    root = _root(args)
    directory, asked = _find(root, args.job, args.cluster)
    handle = _checked_handle(root, directory, asked)
    rows = _states(handle)
    ended = [r for r in rows if TaskState(r[2]).terminal]
    what = (f"task {asked}" if "_" in asked else f"job {asked}") if asked else str(directory.path)
    if len(ended) == len(rows):
        raise CliError(f"{what} has already ended ({_summary(rows)}): nothing to cancel")
    handle.cancel()
    cancelled = [r[1] for r in rows if not TaskState(r[2]).terminal]
    if args.json:
        print(json.dumps({"cancelled": cancelled, "already_ended": [r[1] for r in ended]}))
    elif ended:
        print(
            f"cancelled {len(cancelled)} unfinished tasks of {what}; "
            f"{len(ended)} had already ended ({_summary(ended)})"
        )
    else:
        print(f"cancelled {what}")
    return 0


# -- clean --------------------------------------------------------------------------------------
def _clean(args: argparse.Namespace) -> int:
    root = _root(args)
    match = _AGE.match(args.older_than)
    if match is None:
        raise CliError(
            f"--older-than takes an age such as 30m, 12h, 7d or 2w, not {args.older_than!r}"
        )
    cutoff = time.time() - float(match.group(1)) * _UNIT[match.group(2)]
    directories = [JobDirectory(p.parent) for p in sorted(root.glob(f"*/{MANIFEST}"))]
    manifests = {d.path: d.read_manifest() for d in directories}
    old = {d.path for d in directories if (d.path / MANIFEST).stat().st_mtime <= cutoff}
    # Every directory, not only the old ones, is asked whether it is unfinished: a job
    # submitted today may depend on one of last month.
    unfinished = _unfinished(root, directories, manifests)
    removing = {p for p in old if p not in unfinished or args.force}
    # A job that is not removed and has not finished may still need, through any kind of
    # dependency (a job passed as an argument included), the directories it depends on.
    # (Compared as real paths: the root may be given relative, or through a symlink.)
    needed_by: dict[str, list[str]] = {}
    for d in directories:
        if d.path in unfinished and d.path not in removing:
            for dep in manifests[d.path]["dependencies"]:
                if dep.get("target_dir"):
                    target = os.path.realpath(dep["target_dir"])
                    needed_by.setdefault(target, []).append(str(d.path))
    removed, kept, needed = [], [], []
    for d in directories:
        if d.path not in old:
            continue
        if d.path not in removing:
            kept.append(str(d.path))
        elif needed_by.get(os.path.realpath(d.path)):
            needed.append(
                {"directory": str(d.path), "needed_by": needed_by[os.path.realpath(d.path)]}
            )
        else:
            removed.append(str(d.path))
            if not args.dry_run:
                manifest = manifests[d.path]
                for part in manifest["parts"]:
                    (root / BY_ID / manifest["cluster"] / part["job_id"]).unlink(missing_ok=True)
                shutil.rmtree(d.path, ignore_errors=True)
    if args.json:
        print(
            json.dumps(
                {
                    "removed": removed,
                    "kept_unfinished": kept,
                    "kept_needed": needed,
                    "dry_run": args.dry_run,
                }
            )
        )
    else:
        verb = "would remove" if args.dry_run else "removed"
        print(
            f"{verb} {len(removed)} job directories; kept {len(kept)} with unfinished tasks "
            f"and {len(needed)} that unfinished jobs depend on"
        )
    return 0


def _unfinished(
    root: Path, directories: Sequence[JobDirectory], manifests: dict[Path, dict[str, Any]]
) -> set[Path]:
    """The directories of jobs with a task that has not ended (or whose state cannot be
    known). A result file, or a final state recorded when a process saw the task end, says
    that a task ended; the scheduler is asked (once per cluster) about the others."""
    undecided = []
    for d in directories:
        try:
            ended = set(d.finished())
        except OSError:
            ended = set()
        size = manifests[d.path]["size"]
        if len(ended) < size:
            ended |= d.recorded_states().keys()
        if len(ended & set(range(size))) < size:
            undecided.append(d)
    rows = _rows_of_many(root, undecided)
    return {
        d.path for d, r in zip(undecided, rows, strict=True) if isinstance(r, str) or not _ended(r)
    }


# -- the command --------------------------------------------------------------------------------
def _parser() -> _Parser:
    parser = _Parser(
        prog="slurmscope",
        description="Inspect slurmscope jobs: status, dependency provenance, logs; cancel; clean "
        "up; migrate slurm-sdk code.",
    )
    parser.add_argument(
        "--root", help="job directory root (default $SLURMSCOPE_ROOT, else ~/.slurmscope/jobs)"
    )
    parser.add_argument("--cluster", help="the cluster a job id belongs to (default: any)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
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


def _migrate(args: argparse.Namespace) -> int:
    from . import migrate

    try:
        outcomes = migrate.migrate_paths(args.paths)
    except (migrate.MissingLibcst, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    refused = [o.error for o in outcomes if o.error]
    if refused:  # nothing is written when any file cannot be parsed
        raise CliError("; ".join(e for e in refused if e))
    changed = [o for o in outcomes if o.changed]
    if not (args.diff or args.check):
        for o in changed:
            migrate.write_atomically(o.path, o.new, o.encoding)
    verb = "would rewrite" if args.diff or args.check else "rewrote"
    if args.json:
        print(json.dumps({"files": [o.to_json() for o in outcomes], "changed": len(changed)}))
    else:
        for o in changed:
            if args.diff:
                sys.stdout.write(o.diff())
            marks = [n for n in o.notes if n.kind == "marked"]
            print(f"{verb} {o.path}: {len(o.notes) - len(marks)} converted, {len(marks)} marked")
            for n in marks:
                print(f"  {o.path}:{n.line}: for a person: {n.what}")
        done = "would change" if args.diff or args.check else "changed"
        print(f"{len(outcomes)} file(s), {len(changed)} {done}", file=sys.stderr)
    return 1 if args.check and changed else 0


def _fail(message: str, code: int, as_json: bool) -> int:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"slurmscope: {line}", file=sys.stderr)
    if as_json:
        print(json.dumps({"error": line, "exit_code": code}))
    return code


def main(argv: list[str] | None = None) -> int:
    from .errors import SlurmscopeError

    argv = sys.argv[1:] if argv is None else list(argv)
    as_json = "--json" in argv
    # What a watched job's poll logs (a pending reason that never clears, a retry) is for a
    # driver that waits; the commands say what they find themselves. Errors still show.
    logging.getLogger("slurmscope").setLevel(logging.ERROR)
    try:
        args = _parser().parse_args(argv)
        handler = {
            "status": _status,
            "explain": _explain,
            "graph": _graph,
            "logs": _logs,
            "cancel": _cancel,
            "clean": _clean,
            "migrate": _migrate,
        }[args.command]
        return int(handler(args))
    except CliError as exc:
        return _fail(str(exc), exc.code, as_json)
    except SlurmscopeError as exc:
        return _fail(str(exc), 1, as_json)
    except Exception as exc:
        if os.environ.get("SLURMSCOPE_DEBUG"):
            raise
        return _fail(
            f"internal error: {type(exc).__name__}: {exc} (SLURMSCOPE_DEBUG=1 shows the "
            "traceback; please report it)",
            1,
            as_json,
        )


if __name__ == "__main__":
    sys.exit(main())

"""From what a command line names (a job id, ``id_index`` or a job directory) to its job
directory, a handle on it, and the states of its tasks, read from the job directory and the
scheduler the job was submitted to (one :class:`~slurmscope.Cluster` per backend and root,
kept for the process)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .. import ArrayJob, Cluster, Job
from ..errors import SlurmscopeError, UnsafeJobDirectoryError
from ..job_directory import BY_ID, MANIFEST, JobDirectory, split_job_id
from ..roots import given_root
from ..tree import Row, RowsOf
from .errors import CliError

Handle = Job[Any] | ArrayJob[Any]

#: The clusters made so far, by (backend, root): a later command reuses them.
clusters: dict[tuple[str, str], Cluster] = {}
#: Options of every cluster made here (``--allow-writable-root``).
cluster_options: dict[str, Any] = {}


def root_of(args: argparse.Namespace) -> Path:
    """The job directory root: ``--root``, else ``$SLURMSCOPE_ROOT``, else the default (as
    ``Cluster(root=...)`` chooses it)."""
    return given_root(args.root)


def find(root: Path, job: str, cluster: str | None) -> tuple[JobDirectory, str]:
    """The job directory of ``job`` (an id, ``id_index`` or a directory) and the id asked."""
    if os.sep in job or _is_dir(job):
        directory = JobDirectory(Path(job))
        if not (directory.path / MANIFEST).exists():
            raise CliError(f"{directory.path} is not a job directory (it holds no {MANIFEST})")
        directory.check()  # nothing read from a directory someone else could write into
        return directory, ""
    try:
        job_id, _ = split_job_id(job)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    names = [cluster] if cluster else sorted(p.name for p in (root / BY_ID).glob("*"))
    for name in names:
        found = JobDirectory.find(root, name, job_id)
        if found is not None and (found.path / MANIFEST).exists():
            return found, job.strip()
    raise CliError(
        f"no job {job_id} under {root} (clusters: {', '.join(names) or 'none'}); "
        "pass --root, --cluster or the job directory."
    )


def _is_dir(text: str) -> bool:
    try:
        return Path(text).is_dir()
    except (OSError, ValueError):  # a name too long, a NUL byte: not a directory
        return False


def _cluster_of(root: Path, directory: JobDirectory) -> Cluster:
    """The cluster (made once per backend and root) that a job directory's job is on."""
    backend = directory.read_manifest()["backend"]
    key = (backend, str(root))
    if key not in clusters:
        clusters[key] = Cluster(backend, root=root, set_as_default=False, **cluster_options)
    return clusters[key]


def handle(root: Path, directory: JobDirectory, asked: str = "") -> Handle:
    """A handle (states from the job directory and the scheduler) for a job directory;
    ``asked`` ``"12_3"`` gives the handle of that task (an error if it has no such task)."""
    return _cluster_of(root, directory).attach(asked if asked else directory.path)


def checked_handle(root: Path, directory: JobDirectory, asked: str) -> Handle:
    """:func:`handle`, with the library's errors (no such task...) as one-line errors."""
    try:
        return handle(root, directory, asked)
    except SlurmscopeError as exc:
        raise CliError(str(exc)) from None


def checked(directories: Sequence[JobDirectory]) -> list[JobDirectory]:
    """The job directories that pass the checks of :mod:`slurmscope.payload_guard` (real
    directories of the root, not links out of it); each refused one is said on stderr, and
    :data:`refused` counts them (the command then exits with status 1)."""
    kept = []
    for directory in directories:
        try:
            if directory.path.is_symlink():
                raise UnsafeJobDirectoryError(
                    f"skipping {directory.path}: it is a symbolic link (to "
                    f"{os.path.realpath(directory.path)}), and job directories are not links"
                )
            directory.check()
            directory.read_manifest()
        except UnsafeJobDirectoryError as exc:
            print(f"slurmscope: {exc}", file=sys.stderr)
            refused.append(str(directory.path))
            continue
        kept.append(directory)
    return kept


#: The job directories refused by :func:`checked` in this command.
refused: list[str] = []


def rows(job: Handle) -> list[Row]:
    """The rows (index, scheduler id, state, reason) of ``job``'s tasks after one look."""
    job.refresh()
    return job.task_rows()


def rows_of_many(root: Path, directories: Sequence[JobDirectory]) -> list[list[Row] | str]:
    """The task rows of every directory after one look per cluster (a string saying why,
    where the states cannot be known).

    One handle per cluster is refreshed: a refresh looks at every job its cluster watches,
    in one scheduler query, so that listing or cleaning many jobs asks the scheduler once.
    """
    found: list[Handle | str] = []
    first: dict[int, Handle] = {}  # by cluster: the handle whose refresh looks at them all
    for directory in directories:
        try:
            cluster = _cluster_of(root, directory)
            one = cluster.attach(directory.path)
        except Exception as exc:  # an unreachable scheduler, a broken manifest: say so
            found.append(f"state unknown ({exc})")
            continue
        found.append(one)
        first.setdefault(id(cluster), one)
    try:
        for one in first.values():
            one.refresh()
    except Exception as exc:
        return [h if isinstance(h, str) else f"state unknown ({exc})" for h in found]
    return [h if isinstance(h, str) else h.task_rows() for h in found]


def rows_of(root: Path) -> RowsOf:
    """The task rows of a job directory, from a fresh handle (see :mod:`slurmscope.tree`)."""
    return lambda directory, asked: rows(handle(root, directory, asked))

"""Maps packed several items per Slurm array task (docs/packing.md), on the submit side:
how many items each task runs (``pack=N``, or sized by ``pack="auto"`` from the item
durations earlier packed maps of the same function measured), and how a dependency that
means one item is given to a scheduler that knows only tasks (``afterany`` on the tasks,
and a check each item makes before it runs: docs/dependencies.md, "Packed maps")."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from . import packing
from .dependency import Dependency
from .job_directory import JobDirectory
from .runtime import Runtime
from .spec import Resources


def slurm_kind(dep: Dependency, pack: int) -> str:
    """The kind the scheduler gets for ``dep`` in a submission of ``pack`` items per task
    (:func:`slurmscope.submit.clauses_for_part` gives the ids)."""
    target = dep.target
    if target is None:
        return dep.kind
    upstream_packed = target.submission.pack > 1
    if dep.kind == "aftercorr" and (pack > 1 or upstream_packed):
        return "afterany"
    if dep.kind in ("afterok", "afternotok") and upstream_packed and not target.whole_array:
        return "afterany"
    return dep.kind


def item_checks(dependencies: Sequence[Dependency], pack: int) -> list[tuple[str, str, str]]:
    """What each item checks before it runs, for the dependencies the scheduler got as
    ``afterany`` (:func:`slurm_kind`): ``(kind, upstream index or "*", upstream job
    directory)``."""
    checks = []
    for dep in dependencies:
        target = dep.target
        if target is None or slurm_kind(dep, pack) == dep.kind:
            continue
        which = "*" if dep.kind == "aftercorr" else str(target.indices.start)
        checks.append((dep.kind, which, str(target.submission.directory.path)))
    return checks


def pack_size(
    runtime: Runtime,
    fn: Callable[..., Any],
    name: str,
    size: int,
    asked: int | str | None,
    resources: Resources,
) -> int:
    """Items per array task: as asked, or sized by ``pack="auto"``."""
    if asked is None:
        return 1
    if isinstance(asked, int):
        return min(asked, max(size, 1))
    earlier = runtime.packed_maps.get(function_key(fn, name))
    measured = None if earlier is None else _seconds_per_item(JobDirectory(earlier))
    return packing.auto_size(size, _cluster_cpus(runtime, resources), measured)


def _seconds_per_item(directory: JobDirectory, sample: int = 32) -> float | None:
    """The mean duration of the items of an earlier packed map that have ended (a sample
    of ``sample`` of them), from their outcome files; ``None`` if none has."""
    try:
        done = sorted(directory.finished())[-sample:]
    except OSError:
        return None
    seconds = []
    for index in done:
        try:
            outcome = directory.read_outcome(index)
        except Exception:  # an unreadable file is no measurement
            continue
        if outcome is not None and "seconds" in outcome:
            seconds.append(float(outcome["seconds"]))
    return sum(seconds) / len(seconds) if seconds else None


def _cluster_cpus(runtime: Runtime, resources: Resources) -> int | None:
    """How many tasks of ``resources`` the cluster runs at once, as far as its partition
    limits tell (the first partition the request may go to); ``None``: not known."""
    try:
        found = runtime.backend.request_limits(resources)
    except Exception:
        found = None
    if not found:
        return os.cpu_count() if runtime.backend.kind == "local" else None
    chosen = next((p for p in found if p.default), found[0])
    if chosen.cpus_per_node is None:
        return None
    return max(1, chosen.cpus_per_node * chosen.nodes // max(1, resources.cpus_per_task or 1))


def function_key(fn: Callable[..., Any], name: str) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', name)}"

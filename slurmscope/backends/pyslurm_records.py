"""pyslurm's objects read as plain values: job records as task states, partitions and nodes
as limits, ``Job.dependencies`` in Slurm's syntax.

pyslurm 25.11's quirks handled here: ``Job.array_task_id`` reads back as ``None`` for task 0
(pyslurm maps the value 0 to "unset"), the same as for the one record that holds an array's
still-pending tasks, which is told apart by its ``array_tasks_waiting`` range; a limit is
``"UNLIMITED"`` (a string) or ``None`` where there is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import ModuleType
from typing import Any

from .. import limits
from ..states import TERMINAL_STATES, TaskState, task_state
from ._slurm import array_range_spans

#: One job record of ``pyslurm.Jobs.load()``: the job id as submitted (an array's id for
#: each of its tasks), the task indices the record stands for (as spans: the record of an
#: array's pending tasks may stand for a million), and their state.
JobRecord = tuple[str, list[range], TaskState]


def job_records(jobs: Iterable[Any]) -> list[JobRecord]:
    """Every job record (``pyslurm.Job`` objects) as (job id, task indices, state)."""
    out: list[JobRecord] = []
    for job in jobs:
        state = task_state(job.state, job.state_reason, exit_code(job))
        if job.array_id is None:  # a single job
            out.append((str(job.id), [range(1)], state))
            continue
        indices: list[range]
        if job.array_task_id is not None:
            indices = [range(job.array_task_id, job.array_task_id + 1)]
        elif job.array_tasks_waiting:  # the record of the still-pending tasks
            indices = array_range_spans(job.array_tasks_waiting)
        else:  # task 0: pyslurm reads the index 0 back as None
            indices = [range(1)]
        out.append((str(job.array_id), indices, state))
    return out


def exit_code(job: Any) -> str | None:
    """``Job.exit_code`` and ``Job.exit_code_signal`` as Slurm shows them (``"1:0"``), once
    the job has ended; ``None`` before, or where this pyslurm does not have them."""
    if job.state not in TERMINAL_STATES:
        return None
    code, signal = getattr(job, "exit_code", None), getattr(job, "exit_code_signal", None)
    if code is None and signal is None:
        return None
    return f"{code or 0}:{signal or 0}"


def _limit(value: object) -> int | None:
    """A pyslurm limit that is a number; ``None`` for ``"UNLIMITED"`` or ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def load_limits(pyslurm: ModuleType) -> dict[str, limits.PartitionLimits]:
    """Every partition's limits, from ``pyslurm.Partitions.load()`` (``max_time`` in
    minutes, ``max_memory_per_node`` in MiB) and ``pyslurm.Nodes.load()``."""
    parts = [
        {
            "name": p.name,
            "default": bool(p.is_default),
            "max_time": None if (minutes := _limit(p.max_time)) is None else minutes * 60,
            "max_cpus_per_node": _limit(p.max_cpus_per_node),
            "max_mem_per_node": _limit(p.max_memory_per_node),
            "max_nodes": _limit(p.max_nodes),
        }
        for p in pyslurm.Partitions.load().values()
    ]
    nodes = [
        limits.NodeInfo(
            tuple(n.partitions or ()),
            next((c for c in (n.effective_cpus, n.total_cpus) if _limit(c)), None),
            _limit(n.real_memory),
        )
        for n in pyslurm.Nodes.load().values()
    ]
    return limits.build(parts, nodes)


def dependency_text(deps: dict[str, Any] | None) -> str:
    """``Job.dependencies`` (a dict) back to Slurm's syntax, e.g. ``afterok:12_*(unfulfilled)``.

    The order of the kinds is pyslurm's (after, afterany, ..., afterok), not the order they
    were given in: pyslurm hands out a dict.
    """
    if not deps:
        return ""
    clauses = []
    for kind, ids in deps.items():
        if kind == "satisfy":
            continue
        if kind == "singleton":
            if ids:
                clauses.append("singleton")
            continue
        if ids:
            clauses.append(":".join([kind, *map(str, ids)]))
    joiner = "?" if deps.get("satisfy") == "any" else ","
    return joiner.join(clauses)

"""A partition's limits, and whether a request can ever fit in them.

Slurm accepts a job that can never run in its partition (more CPUs per task than any node
has, or with ``EnforcePartLimits=NO`` a time limit over ``MaxTime``) and keeps it pending
forever with a reason such as ``PartitionConfig``. Backends that can read the partitions'
limits (``scontrol`` for sbatch, ``pyslurm.Partitions``/``Nodes`` for pyslurm, the machine
for local) refuse such a request at submit, with this module's message, before anything
reaches the scheduler. Flags given through ``extra=[...]`` are not judged here: a job they
make impossible is caught while waiting (:mod:`slurmscope.reasons`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .spec import Resources, time_to_seconds


@dataclass(frozen=True)
class PartitionLimits:
    """What the largest node of a partition offers, and the partition's own caps."""

    name: str
    default: bool = False
    #: CPUs of the partition's largest node (capped by MaxCPUsPerNode); None: unknown.
    cpus_per_node: int | None = None
    #: MiB of the partition's largest node (RealMemory, capped by MaxMemPerNode).
    mem_per_node: int | None = None
    #: MaxTime in seconds; None: unlimited.
    max_time: int | None = None
    #: How many nodes one job may get: the partition's nodes, capped by MaxNodes.
    nodes: int = 1


@dataclass(frozen=True)
class NodeInfo:
    """One node, as the backends read it: its partitions, CPUs and memory (MiB)."""

    partitions: tuple[str, ...]
    cpus: int | None
    mem: int | None


def build(
    partitions: Iterable[Mapping[str, object]], nodes: Iterable[NodeInfo]
) -> dict[str, PartitionLimits]:
    """Partitions' limits from plain records (``name``, ``default``, ``max_time`` in seconds,
    ``max_cpus_per_node``, ``max_mem_per_node`` in MiB, ``max_nodes``; None for unlimited)
    and the nodes."""
    nodes = list(nodes)
    out = {}
    for part in partitions:
        name = str(part["name"])
        members = [n for n in nodes if name in n.partitions]
        cpus = max((n.cpus for n in members if n.cpus), default=None)
        mem = max((n.mem for n in members if n.mem), default=None)
        cap_cpus, cap_mem = part.get("max_cpus_per_node"), part.get("max_mem_per_node")
        if cpus is not None and isinstance(cap_cpus, int):
            cpus = min(cpus, cap_cpus)
        if mem is not None and isinstance(cap_mem, int):
            mem = min(mem, cap_mem)
        max_time = part.get("max_time")
        cap_nodes = part.get("max_nodes")
        count = max(len(members), 1)
        if isinstance(cap_nodes, int) and cap_nodes > 0:
            count = min(count, cap_nodes)
        out[name] = PartitionLimits(
            name=name,
            default=bool(part.get("default")),
            cpus_per_node=cpus,
            mem_per_node=mem if mem is None or mem > 1 else None,  # RealMemory=1: not configured
            max_time=max_time if isinstance(max_time, int) else None,
            nodes=count,
        )
    return out


def for_request(
    resources: Resources, partitions: Mapping[str, PartitionLimits]
) -> list[PartitionLimits] | None:
    """The partitions a request may run in, or None when one is not known (Slurm judges)."""
    if resources.partition:
        chosen = []
        for name in resources.partition.split(","):
            if name not in partitions:
                return None
            chosen.append(partitions[name])
        return chosen
    defaults = [p for p in partitions.values() if p.default]
    return defaults or None


def mem_mib(text: str) -> int:
    """MiB in a normalised memory request (``"500M"``, ``"4G"``, ``"1T"``, ``"100K"``)."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    number, unit = (text[:-1], text[-1].upper()) if text[-1:].isalpha() else (text, "M")
    return math.ceil(int(number) * units[unit] / 2**20)


def _seconds_text(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    h, rest = divmod(rest, 3600)
    m, s = divmod(rest, 60)
    return (f"{days}-" if days else "") + f"{h:02d}:{m:02d}:{s:02d}"


def problems(resources: Resources, part: PartitionLimits) -> list[str]:
    """Why ``resources`` can never run in ``part`` (empty: it may)."""
    out = []
    cpus = resources.cpus_per_task or 1
    if part.cpus_per_node is not None and cpus > part.cpus_per_node:
        out.append(
            f"cpus_per_task={cpus}, but the largest node of partition {part.name} has "
            f"{part.cpus_per_node} CPUs"
        )
    if resources.mem and part.mem_per_node is not None:
        asked = mem_mib(resources.mem)
        if asked > part.mem_per_node:
            out.append(
                f"mem={resources.mem} ({asked} MiB), but the largest node of partition "
                f"{part.name} has {part.mem_per_node} MiB"
            )
    if resources.time and part.max_time is not None:
        asked = time_to_seconds(resources.time)
        if asked > part.max_time:
            out.append(
                f"time={resources.time}, but partition {part.name} allows at most "
                f"{_seconds_text(part.max_time)} (MaxTime)"
            )
    return out


def refusal(resources: Resources, parts: Sequence[PartitionLimits] | None) -> str | None:
    """Why a request can run in none of ``parts``, or None when it may run (or when the
    partitions are not known)."""
    if not parts:
        return None
    reasons = []
    for part in parts:
        found = problems(resources, part)
        if not found:
            return None
        reasons.extend(found)
    return "; ".join(reasons)


# -- how many jobs the controller holds (MaxJobCount) ------------------------------------------
#: A map smaller than this share of ``MaxJobCount``, in one array, is submitted without first
#: counting the jobs in the system (one more scheduler query on every small submission);
#: should the controller be that full, it refuses the array itself, and nothing of the map
#: was submitted. Larger maps, and maps split over several arrays, are counted first.
COUNT_SHARE = 0.05


@dataclass(frozen=True)
class JobCapacity:
    """The controller's ``MaxJobCount`` and the job records it holds now, as slurmctld
    counts them: one per job, one per task of an array (pending tasks included), ended jobs
    until they are purged (``MinJobAge`` after their end)."""

    max_job_count: int
    in_system: int | None = None


def needs_count(tasks: int, parts: int, max_job_count: int) -> bool:
    """Whether a submission of ``tasks`` tasks in ``parts`` arrays should count the jobs in
    the system first (see :data:`COUNT_SHARE`)."""
    return parts > 1 or tasks >= COUNT_SHARE * max_job_count


def job_count_refusal(tasks: int, capacity: JobCapacity) -> str | None:
    """Why the controller would refuse ``tasks`` more tasks (``None``: it would take them).

    slurmctld (``job_allocate``) refuses a submission when the jobs it holds plus the tasks
    of the new array exceed ``MaxJobCount``; every task counts, pending or not, and so does
    every ended job it has not purged yet.
    """
    limit, held = capacity.max_job_count, capacity.in_system or 0
    if held + tasks <= limit:
        return None
    if tasks > limit:
        return (
            f"{tasks} tasks is more than the cluster's MaxJobCount of {limit}: Slurm counts "
            "every task of an array as a job. Split the work into maps of at most "
            f"{limit - held} items submitted one after another (wait for one before the "
            'next), pack several items into one task (map(items, pack="auto") packs to '
            "fit), or ask the administrators to raise MaxJobCount in slurm.conf"
        )
    return (
        f"the cluster holds {held} jobs (every array task, and ended jobs until MinJobAge "
        f"purges them, counts) and its MaxJobCount is {limit}: {tasks} more tasks would "
        f"exceed it by {held + tasks - limit}. Submit at most {max(limit - held, 0)} items "
        "now, wait for jobs to end (and be purged) before the rest, pack several items into "
        'one task (map(items, pack="auto") packs to fit), or ask the administrators to raise '
        "MaxJobCount in slurm.conf"
    )

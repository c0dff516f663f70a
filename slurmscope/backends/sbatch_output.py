"""What Slurm's commands print, read: ``scontrol``'s ``key=value`` records (the
configuration, a job, the partitions' limits) and ``squeue``'s exit codes."""

from __future__ import annotations

from .. import limits
from ..spec import time_to_seconds


def key_values(text: str) -> dict[str, str]:
    """The ``key=value`` tokens of ``text`` as a dict (the first value of each key)."""
    fields: dict[str, str] = {}
    for token in text.split():
        key, sep, value = token.partition("=")
        if sep and key not in fields:
            fields[key] = value
    return fields


def configuration(text: str) -> dict[str, str]:
    """``scontrol show config`` as a dict (one ``Key = value`` a line)."""
    config = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            config[key.strip()] = value.strip()
    return config


def oneliners(text: str) -> list[dict[str, str]]:
    """``scontrol --oneliner show ...`` records as dicts (the first value of each key)."""
    return [fields for line in text.splitlines() if (fields := key_values(line))]


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _seconds(value: str | None) -> int | None:
    """A partition's MaxTime in seconds; None for UNLIMITED or anything unreadable."""
    try:
        return time_to_seconds(value) if value and value[0].isdigit() else None
    except ValueError:
        return None


def partition_limits(partitions: str, nodes: str) -> dict[str, limits.PartitionLimits]:
    """Each partition's limits from ``scontrol --oneliner show partition`` and ``... node``."""
    parts = [
        {
            "name": p["PartitionName"],
            "default": p.get("Default") == "YES",
            "max_time": _seconds(p.get("MaxTime")),
            "max_cpus_per_node": _int(p.get("MaxCPUsPerNode")),
            "max_mem_per_node": _int(p.get("MaxMemPerNode")),
            "max_nodes": _int(p.get("MaxNodes")),
        }
        for p in oneliners(partitions)
        if "PartitionName" in p
    ]
    infos = [
        limits.NodeInfo(
            tuple(n.get("Partitions", "").split(",")),
            _int(n.get("CPUEfctv")) or _int(n.get("CPUTot")),
            _int(n.get("RealMemory")),
        )
        for n in oneliners(nodes)
        if "NodeName" in n
    ]
    return limits.build(parts, infos)


def wait_status_exit_code(status: str) -> str | None:
    """squeue's raw wait status (``768``, ``9``) as Slurm shows exit codes (``3:0``, ``0:9``)."""
    if not status.strip().isdigit():
        return None
    raw = int(status)
    return f"{raw >> 8}:{raw & 0x7F}"

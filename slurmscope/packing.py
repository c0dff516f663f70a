"""Packing several items of a ``map`` into one Slurm array task: checking what the user
asked for, and sizing packs (docs/packing.md).

An explicit size ``pack=16`` runs items ``16*t .. 16*t+15`` in array task ``t``. ``"auto"``
sizes packs from the item durations measured by the earlier maps of the same function in
this driver process (each outcome file records how long its item ran), so that each
Slurm task runs for about :data:`TARGET_SECONDS`; before anything was measured it makes
about :data:`FIRST_TASKS_PER_CPU` tasks per CPU of the cluster, so that a first map of
short items is still packed and one of long items still spreads over every CPU.
"""

from __future__ import annotations

import math

from .errors import InvalidInputError

#: The environment variable that tells the worker its pack: ``"SIZE:ITEMS"`` (items per
#: task, and the map's number of items, where the last pack ends).
ENVIRONMENT = "SLURMSCOPE_PACK"
#: What ``pack="auto"`` aims at: each Slurm task runs its items for about this long.
TARGET_SECONDS = 5.0
#: ``pack="auto"`` before any duration was measured: tasks per CPU of the cluster.
FIRST_TASKS_PER_CPU = 4
#: The items of a pack never exceed this (a pack's items share one task's time limit).
MAX_PACK = 10_000


def check(pack: object, size: int, array: bool) -> int | str | None:
    """``pack`` as given to ``map()`` (an int of at least 1, ``"auto"``, or ``None``),
    checked before anything is submitted; ``InvalidInputError`` saying what to give."""
    if pack is None:
        return None
    if not array:
        raise InvalidInputError(
            "pack= applies to task.map(items) only: a single call is one task already."
        )
    if pack == "auto" and isinstance(pack, str):
        return "auto"
    if isinstance(pack, bool) or not isinstance(pack, int) or pack < 1:
        raise InvalidInputError(
            f'pack must be a whole number of items per Slurm task (at least 1), or "auto", '
            f"not {pack!r}."
        )
    return pack


def auto_size(size: int, cpus: int | None, seconds_per_item: float | None) -> int:
    """The pack size of ``pack="auto"`` for a map of ``size`` items on a cluster of ``cpus``
    CPUs (``None``: not known), given the mean item duration measured so far (``None``:
    nothing measured yet)."""
    if size <= 1:
        return 1
    if seconds_per_item is not None:
        wanted = math.ceil(TARGET_SECONDS / max(seconds_per_item, 1e-4))
    else:
        tasks = FIRST_TASKS_PER_CPU * max(cpus or 1, 1)
        wanted = math.ceil(size / tasks)
    if cpus:  # never fewer tasks than CPUs: packing must not idle the cluster
        wanted = min(wanted, math.ceil(size / cpus))
    return max(1, min(wanted, MAX_PACK, size))

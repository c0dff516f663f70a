"""Why a pending job waits: Slurm's pending reasons, and which of them never clear.

The names are those of Slurm's ``job_state_reason`` table (``src/common/job_state_reason.c``
of Slurm 25.11; the same names since 20.11), as ``squeue``, ``scontrol`` and pyslurm show
them. Their meanings are Slurm's own (``doc/html/job_reason_codes.shtml``).

Three kinds:

- **routine**: a queue at work (``Priority``, ``Resources``, ``Dependency``...). The job starts
  once other jobs end; nothing to say.
- **never clears**: the request itself can never be met as the cluster is configured
  (``PartitionConfig``, ``PartitionTimeLimit``, ``BadConstraints``, a per-job QOS limit...).
  Waiting cannot help; only a new request, or an administrator changing the configuration.
  A wait on such a job ends with :class:`~slurmscope.errors.JobCannotRunError`.
- **everything else** may clear without the user (a partition or node that is down, a
  hold, a group or account limit that frees up as other jobs end), but is worth a warning:
  the job may wait for long.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

#: Reasons of a queue at work: the job starts when others end.
ROUTINE = frozenset(
    {
        "None",
        "Priority",
        "Resources",
        "Dependency",
        "BeginTime",
        "JobArrayTaskLimit",
        "Prolog",
        "Cleaning",
        "SchedDefer",
        "Reservation",
        "Licenses",
        "FedJobLock",
        "Packed",  # slurmscope's: an item waiting for those before it in its array task
    }
)

#: Reasons that never clear by waiting, each with what it means (Slurm's documentation).
NEVER_CLEARS: dict[str, str] = {
    "PartitionConfig": "the request violates a limit of its partition (for example more "
    "CPUs per task than any of its nodes has, or more nodes than it holds)",
    "PartitionNodeLimit": "the number of nodes asked for is outside the partition's limits",
    "PartitionTimeLimit": "the time limit asked for exceeds the partition's MaxTime",
    "MaxMemPerLimit": "the memory asked for exceeds the partition's MaxMemPerNode or MaxMemPerCPU",
    "BadConstraints": "the job's requirements can never be satisfied (Slurm holds the job)",
    "InvalidAccount": "the job's account is invalid",
    "InvalidQOS": "the job's QOS is invalid",
    "AccountNotAllowed": "the job's account may not use the partition",
    "QOSNotAllowed": "the job's QOS is not allowed by its association or partition",
    "ReservationDeleted": "the reservation the job asked for no longer exists",
    "ReservationInvalid": "the reservation the job asked for is invalid (Slurm holds the job)",
    "JobHoldMaxRequeue": "the job failed to launch too often and Slurm holds it",
}

# DependencyNeverSatisfied never clears either, but slurmscope submits with
# --kill-on-invalid-dep=yes: Slurm ends such a job CANCELLED at once, and the wait's error
# then walks the dependency chain down to the job that failed. It is not listed above, so
# that a poll catching the moment before the kill does not end the wait with less.

#: Per-job (and per-node) limits of a QOS or an association, and QOS minimums: the request
#: itself is over (or under) them, which no other job's end changes. Aggregate limits
#: (``Grp*``, ``*PerUser``, ``*PerAccount``, ``AssocMaxJobsLimit``) clear as jobs end.
_PER_JOB_LIMIT = re.compile(r"^(QOS|Assoc)Max\w*Per(Job|Node)(Limit)?$|^QOSMin\w+$")


def name(reason: str | None) -> str:
    """The reason's name alone (squeue may append details: ``ReqNodeNotAvail, ...``)."""
    if not reason:
        return "None"
    return reason.split(",")[0].split()[0] if reason.strip() else "None"


def never_clears(reason: str | None) -> bool:
    """Whether a job pending for ``reason`` can never start, however long it waits."""
    text = name(reason)
    return text in NEVER_CLEARS or bool(_PER_JOB_LIMIT.match(text))


def is_routine(reason: str | None) -> bool:
    """Whether ``reason`` is a queue at work (nothing worth a warning)."""
    return name(reason) in ROUTINE


def meaning(reason: str | None) -> str:
    """What ``reason`` means, in a few words."""
    text = name(reason)
    if text in NEVER_CLEARS:
        return NEVER_CLEARS[text]
    if _PER_JOB_LIMIT.match(text):
        kind = "QOS" if text.startswith("QOS") else "association"
        return f"the request is outside a per-job limit of its {kind} ({text})"
    if text.startswith(("QOSGrp", "AssocGrp", "QOSMax", "AssocMax", "Max")):
        return "a limit shared with other jobs is reached; it clears as they end"
    if text in ("PartitionDown", "PartitionInactive"):
        return (
            "the partition is not accepting jobs now; it starts when an administrator brings it up"
        )
    if text in ("JobHeldUser", "JobHeldAdmin"):
        return "the job is held; it starts once released (scontrol release)"
    if text in ("ReqNodeNotAvail", "NodeDown"):
        return "a node the job needs is not available now"
    return "the scheduler's reason for keeping the job pending"


def summary(states: Iterable[Any]) -> str:
    """`` (PartitionConfig: never starts)`` or `` (Resources 3, Priority 2)``: why the
    pending tasks among ``states`` (TaskState or None) wait, most common first; empty when
    the scheduler gave no reason. For the progress line."""
    counts: dict[str, int] = {}
    for state in states:
        if state is not None and state.state == "PENDING":
            reason = name(state.reason)
            if reason != "None":
                counts[reason] = counts.get(reason, 0) + 1
    if not counts:
        return ""
    shown = []
    for reason, n in sorted(counts.items(), key=lambda kv: -kv[1])[:3]:
        text = reason if len(counts) == 1 else f"{reason} {n}"
        if never_clears(reason):
            text += ": never starts"
        shown.append(text)
    return f" ({', '.join(shown)})"

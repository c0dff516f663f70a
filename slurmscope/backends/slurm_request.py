"""A :class:`~slurmscope.spec.JobSpec` in Slurm's terms, the same for both Slurm backends.

The batch script every Slurm job runs, and one table of what each request means to Slurm:
the ``sbatch`` flag of every :class:`~slurmscope.spec.Resources` field beside the
``pyslurm.JobSubmitDescription`` field that says the same, and the flags an ``extra=[...]``
list may hold with the pyslurm backend.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import cast

from ..spec import JobSpec, Resources


def batch_script(spec: JobSpec) -> str:
    """The script of every Slurm job: ``exec`` of the spec's command."""
    return "#!/bin/sh\n" + f"exec {shlex.join(spec.command)}\n"


def plain_minutes(time: str | int) -> str | int:
    """A time limit for pyslurm: Slurm's time string, but plain minutes as an int (pyslurm
    hands a digit *string* to a C integer and fails)."""
    return int(time) if isinstance(time, str) and time.isdigit() else time


def _same(value: str | int) -> str | int:
    return value


@dataclass(frozen=True)
class ResourceOption:
    """What one :class:`~slurmscope.spec.Resources` field means to Slurm."""

    #: The field of :class:`~slurmscope.spec.Resources`.
    resource: str
    #: The ``sbatch`` flag that asks for it (``--time``).
    flag: str
    #: The ``pyslurm.JobSubmitDescription`` field that asks for it (``time_limit``).
    field: str
    #: The value as pyslurm takes it, from the value as sbatch takes it.
    to_field: Callable[[str | int], str | int] = _same
    #: The value as sbatch takes it, from the value of the resource.
    to_flag: Callable[[str | int], str | int] = _same


def warning_signal(seconds: str | int) -> str:
    """Slurm's ``--signal`` for a checkpointing task: SIGUSR1 to the batch shell (the
    worker: the batch script execs it) ``seconds`` before the time limit."""
    return f"B:USR1@{seconds}"


def pyslurm_signal(flag: str | int) -> str:
    """``--signal``'s value as pyslurm takes it: the signal's full name (``SIGUSR1``)."""
    return str(flag).replace(":USR1@", ":SIGUSR1@")


#: Every resource Slurm is asked for, in the order sbatch's command line gives them. The
#: job's name (``job_name``, else the task's) goes as ``--job-name`` / ``name``.
RESOURCE_OPTIONS = (
    ResourceOption("time", "--time", "time_limit", plain_minutes),
    ResourceOption("mem", "--mem", "memory_per_node"),
    ResourceOption("cpus_per_task", "--cpus-per-task", "cpus_per_task"),
    ResourceOption("gpus", "--gpus", "gpus"),
    ResourceOption("partition", "--partition", "partitions"),
    ResourceOption("account", "--account", "account"),
    ResourceOption("qos", "--qos", "qos"),
    ResourceOption("constraint", "--constraint", "constraints"),
    ResourceOption(
        "checkpoint_warning", "--signal", "signal", to_field=pyslurm_signal, to_flag=warning_signal
    ),
)


def requested(resources: Resources) -> Iterator[tuple[ResourceOption, str | int]]:
    """Each resource ``resources`` asks for, as sbatch takes it (those left to Slurm's
    default are skipped)."""
    for option in RESOURCE_OPTIONS:
        value: str | int | None = getattr(resources, option.resource)
        if value is not None:
            yield option, option.to_flag(value)


def requeueable(resources: Resources) -> bool:
    """Whether the job must be requeueable (and keep the output of every run, appended): a
    checkpointing task requeues itself."""
    return resources.checkpoint_warning is not None


def _count(value: str | None) -> int:
    return int(value or 0)


def _integer(value: str | None) -> int:
    return int(cast(str, value))  # no value: int(None) raises TypeError, as it always did


#: sbatch flags an ``extra=[...]`` list may hold with the pyslurm backend, and the
#: ``JobSubmitDescription`` field each one sets from the flag's value (``None``: a flag
#: without a value). The sbatch backend passes any flag as it is.
EXTRA_FLAGS: dict[str, tuple[str, Callable[[str | None], object]]] = {
    "--nice": ("nice", _count),
    "--comment": ("comment", str),
    "--exclusive": ("resource_sharing", lambda v: v or "no"),
    "--nodelist": ("required_nodes", str),
    "-w": ("required_nodes", str),
    "--exclude": ("excluded_nodes", str),
    "-x": ("excluded_nodes", str),
    "--reservation": ("reservations", str),
    "--ntasks": ("ntasks", _integer),
    "-n": ("ntasks", _integer),
    "--nodes": ("nodes", str),
    "-N": ("nodes", str),
    "--mem-per-cpu": ("memory_per_cpu", str),
    "--licenses": ("licenses", str),
    "-L": ("licenses", str),
    "--requeue": ("is_requeueable", lambda v: True),
    "--no-requeue": ("is_requeueable", lambda v: False),
    "--hold": ("priority", lambda v: 0),
    "--wckey": ("wckey", str),
    "--profile": ("profile_types", str),
}

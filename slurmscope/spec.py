"""A backend-neutral description of one submission, and the resources of a task."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .dependency import DependencyClauses
from .errors import InvalidInputError

_TIME_FORMATS = (
    re.compile(r"^\d+$"),  # minutes
    re.compile(r"^\d+:\d{1,2}$"),  # minutes:seconds
    re.compile(r"^\d+:\d{1,2}:\d{1,2}$"),  # hours:minutes:seconds
    re.compile(r"^\d+-\d+$"),  # days-hours
    re.compile(r"^\d+-\d+:\d{1,2}$"),  # days-hours:minutes
    re.compile(r"^\d+-\d+:\d{1,2}:\d{1,2}$"),  # days-hours:minutes:seconds
)
_MEM = re.compile(r"^(\d+)([KMGT]?)B?$", re.IGNORECASE)


def time_to_seconds(value: str) -> int:
    """Seconds in a Slurm time string (``"10"`` minutes, ``"1:30:00"``, ``"2-00:00"``)."""
    days = 0
    if "-" in value:
        d, value = value.split("-", 1)
        days = int(d)
        nums = [int(x) for x in value.split(":")]
        nums += [0] * (3 - len(nums))
        h, m, s = nums
    else:
        nums = [int(x) for x in value.split(":")]
        if len(nums) == 1:
            h, m, s = 0, nums[0], 0
        elif len(nums) == 2:
            h, m, s = 0, nums[0], nums[1]
        else:
            h, m, s = nums
    return ((days * 24 + h) * 60 + m) * 60 + s


def _check_time(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return str(value)
    if (
        isinstance(value, str)
        and any(f.match(value) for f in _TIME_FORMATS)
        and time_to_seconds(value) > 0
    ):
        return value
    raise InvalidInputError(
        f"invalid time limit {value!r}: give minutes as an int (30) or a Slurm time string "
        "such as '45', '1:30:00', '2-00:00:00' (days-hours:minutes:seconds), greater than zero."
    )


def _check_mem(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return f"{value}M"
    if isinstance(value, str) and (m := _MEM.match(value.strip())) and int(m.group(1)) > 0:
        return f"{m.group(1)}{(m.group(2) or 'M').upper()}"
    raise InvalidInputError(
        f"invalid memory {value!r}: give megabytes as an int (2048) or a string with a unit "
        "such as '500M', '4G', '1T'."
    )


def _check_positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise InvalidInputError(f"invalid {name} {value!r}: give a whole number greater than zero.")


def _check_name(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value and not re.search(r"[\s,;'\"]", value):
        return value
    raise InvalidInputError(
        f"invalid {name} {value!r}: give a non-empty name without spaces, commas or quotes."
    )


@dataclass(frozen=True)
class Resources:
    """What a task asks of the scheduler. ``None`` means the scheduler's default."""

    time: str | None = None
    mem: str | None = None
    cpus_per_task: int | None = None
    gpus: int | None = None
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    job_name: str | None = None
    extra: tuple[str, ...] = ()
    #: Seconds before the time limit at which a checkpointing task is warned (it saves and
    #: requeues itself); setting it turns checkpointing on (:mod:`slurmscope.checkpoint`).
    checkpoint_warning: int | None = None
    #: How many times a checkpointing task may be requeued before it fails (default 3).
    max_requeues: int | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "time", _check_time(self.time))
        set_(self, "mem", _check_mem(self.mem))
        set_(self, "cpus_per_task", _check_positive_int("cpus_per_task", self.cpus_per_task))
        set_(self, "gpus", _check_positive_int("gpus", self.gpus))
        for name in ("partition", "account", "qos", "job_name"):
            set_(self, name, _check_name(name, getattr(self, name)))
        if self.constraint is not None and not isinstance(self.constraint, str):
            raise InvalidInputError(f"invalid constraint {self.constraint!r}: give a string.")
        extra = self.extra
        if isinstance(extra, str):
            extra = (extra,)
        if not all(isinstance(x, str) and x.startswith("-") for x in extra):
            raise InvalidInputError(
                f"invalid extra sbatch flags {self.extra!r}: give a list of strings such as "
                "['--exclusive', '--nice=10']."
            )
        set_(self, "extra", tuple(extra))
        self._check_checkpointing()

    def _check_checkpointing(self) -> None:
        warning = _check_positive_int("checkpoint_warning", self.checkpoint_warning)
        if warning is not None and warning > 65535:
            raise InvalidInputError(
                f"invalid checkpoint_warning {warning}: Slurm's warning signal comes at most "
                "65535 seconds before the time limit; give fewer seconds."
            )
        if warning is not None and self.time and warning >= time_to_seconds(self.time):
            raise InvalidInputError(
                f"checkpoint_warning={warning} seconds is not shorter than the time limit "
                f"{self.time!r}: the warning would come before the task starts. Give fewer "
                "seconds or a longer time limit."
            )
        limit = self.max_requeues
        if limit is not None and (
            not isinstance(limit, int) or isinstance(limit, bool) or limit < 0
        ):
            raise InvalidInputError(
                f"invalid max_requeues {limit!r}: give a whole number of 0 or more."
            )
        object.__setattr__(self, "checkpoint_warning", warning)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping[str, Any]) -> Resources:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InvalidInputError(
                f"unknown resource option(s) {', '.join(unknown)}; known ones are "
                f"{', '.join(sorted(known))}. Pass other sbatch flags as extra=['--flag=value']."
            )
        return cls(**kwargs)

    def updated(self, overrides: Mapping[str, Any]) -> Resources:
        merged = {f.name: getattr(self, f.name) for f in fields(self)}
        merged.update(overrides)
        return Resources.from_kwargs(merged)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class ArraySpec:
    """Array indices ``0 .. size-1``, at most ``throttle`` running at once; with ``only``,
    just those indices (ascending, each below ``size``: the tasks of an earlier array that
    a resumed run submits again, see :mod:`slurmscope.ledger`)."""

    size: int
    throttle: int | None = None
    only: tuple[int, ...] | None = None

    @property
    def indices(self) -> Sequence[int]:
        """The task indices this array has."""
        return range(self.size) if self.only is None else self.only

    def render(self) -> str:
        text = f"0-{self.size - 1}" if self.only is None else _ranges(self.only)
        return f"{text}%{self.throttle}" if self.throttle else text


def _ranges(indices: Sequence[int]) -> str:
    """``(0, 1, 2, 5, 7, 8)`` -> ``"0-2,5,7-8"`` (Slurm's ``--array`` list)."""
    runs: list[str] = []
    start = prev = indices[0]
    for i in [*indices[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        runs.append(str(start) if start == prev else f"{start}-{prev}")
        if i is not None:
            start = prev = i
    return ",".join(runs)


@dataclass(frozen=True)
class JobSpec:
    """Everything a backend needs to submit one job or array, in plain values.

    ``command`` runs once per task; array tasks read ``SLURM_ARRAY_TASK_ID`` as under
    Slurm. ``stdout``/``stderr`` may hold Slurm's ``%A``, ``%a`` and ``%j`` patterns.
    """

    name: str
    command: tuple[str, ...]
    workdir: str
    stdout: str
    stderr: str
    resources: Resources = field(default_factory=Resources)
    array: ArraySpec | None = None
    dependencies: DependencyClauses = ()
    environment: Mapping[str, str] = field(default_factory=dict)
    kill_on_invalid_dep: bool = True

    def with_(self, **changes: Any) -> JobSpec:
        return replace(self, **changes)

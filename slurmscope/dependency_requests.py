"""Dependencies as users give them: ``dependencies(job)``, ``.after(job)``, ``after=[job]``,
``depend(job, kind)``; checked where they are given, turned into
:class:`~slurmscope.dependency.Dependency` values with their provenance."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .dependency import Dependency, Provenance, check_kind
from .errors import DependencyError
from .handle import Handle


@dataclass(frozen=True)
class DependencyRequest:
    """A job with a dependency kind other than ``afterok``, for ``after=[...]``.

    Made by :func:`depend`: ``task.map(items, after=[depend(prep, "afterany")])``.
    """

    kind: str
    job: Any


def depend(job: Any = None, kind: str = "afterok") -> DependencyRequest:
    """Say a dependency with a kind, for ``after=[...]`` lists."""
    check_kind(kind)
    if kind != "singleton":
        check_handle(job)
    return DependencyRequest(kind, job)


def check_handle(job: Any) -> None:
    """Refuse anything but a job handle as a dependency."""
    if not isinstance(job, Handle):
        raise DependencyError(
            f"a dependency must be a Job or ArrayJob (what a task call or .map() returns), "
            f"not {type(job).__name__} {job!r}."
        )


def check_requests(
    owner: object, jobs: Iterable[Any], kind: str, provenance: Provenance
) -> list[DependencyRequest]:
    """Check the jobs of ``dependencies()``, ``.after()`` or ``after=`` for a submission to
    the cluster ``owner``: every error says where the dependency was given, as the checks
    at submission do."""
    check_kind(kind)
    jobs = list(jobs)
    given = f" (given by {provenance.describe()})"
    if kind == "singleton":
        if jobs:
            raise DependencyError(
                "singleton takes no jobs: it waits for earlier jobs of the same name. "
                f"Use dependencies(kind='singleton') or task.after(kind='singleton'){given}."
            )
        return [DependencyRequest("singleton", None)]
    out = []
    for job in jobs:
        if isinstance(job, DependencyRequest):
            out.append(job)
            continue
        try:
            check_handle(job)
        except DependencyError as exc:
            raise DependencyError(f"{str(exc).rstrip('.')}{given}.") from None
        out.append(DependencyRequest(kind, job))
    for request in out:
        if request.job is not None and request.job.cluster is not owner:
            raise DependencyError(
                f"job {request.job.target_id} belongs to {request.job.cluster!r}, not "
                f"to {owner!r}; Slurm cannot express a dependency across clusters{given}. "
                "Wait for it (job.wait()) and pass its result instead."
            )
    return out


def dependencies_of(
    owner: object, jobs: Iterable[Any], kind: str, provenance: Provenance
) -> tuple[Dependency, ...]:
    """The checked dependencies on ``jobs``, each with ``provenance``."""
    return tuple(
        Dependency(r.kind, target_id(r), provenance, r.job)
        for r in check_requests(owner, jobs, kind, provenance)
    )


def target_id(request: DependencyRequest) -> str | None:
    """The id a request's dependency names (``None`` for ``singleton``)."""
    return None if request.kind == "singleton" else str(request.job.target_id)

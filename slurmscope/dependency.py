"""Dependency value types: kinds, provenance, merging, and rendering to Slurm syntax."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .callsite import CallSite
from .errors import DependencyError

#: The dependency kinds Slurm has. ``afterok`` is the default everywhere.
KINDS: tuple[str, ...] = ("afterok", "afterany", "afternotok", "after", "aftercorr", "singleton")

#: How a dependency was given (the values are persisted in manifests: never change them).
#: A ``with cluster.dependencies(...)`` block:
VIA_SCOPE = "scope"
#: ``task.after(job)``:
VIA_AFTER_METHOD = "after()"
#: ``task.map(items, after=[job])`` or ``task.options(after=[job])``:
VIA_AFTER_ARGUMENT = "after="
#: A job handle passed as an argument or inside an item (a data dependency):
VIA_DATA_ARGUMENT = "argument"


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DependencyError(
            f"unknown dependency kind {kind!r}; use one of {', '.join(KINDS)} "
            "(afterok is the default)."
        )
    return kind


def never_satisfied(kind: str, succeeded: bool) -> str | None:
    """Why a ``kind`` dependency on a job that has ended (``succeeded``: every task of it
    COMPLETED) can never be satisfied; ``None`` when the ending satisfies it.

    ``after`` and ``afterany`` are satisfied by any ending, ``afterok`` (and ``aftercorr``,
    task by task) only by success, ``afternotok`` only by a failure.
    """
    if kind in ("afterok", "aftercorr") and not succeeded:
        return f"{kind} needs it to succeed, and it did not"
    if kind == "afternotok" and succeeded:
        return "afternotok needs it to fail, and it succeeded"
    return None


@dataclass(frozen=True)
class Provenance:
    """Where a dependency came from.

    ``via`` is ``"scope"`` (a ``with cluster.dependencies()`` block), ``"after()"``
    (``task.after(...)``), ``"after="`` (the ``after=`` argument) or ``"argument"`` (a job
    handle passed as an argument or inside an item: a data dependency).
    """

    via: str
    site: CallSite
    depth: int | None = None
    detail: str | None = None

    def describe(self) -> str:
        what = {
            VIA_SCOPE: "with cluster.dependencies() block",
            VIA_AFTER_METHOD: "explicit .after()",
            VIA_AFTER_ARGUMENT: "after= argument",
            VIA_DATA_ARGUMENT: "job passed as argument",
        }.get(self.via, self.via)
        extra = []
        if self.depth is not None:
            extra.append(f"depth {self.depth}")
        if self.detail:
            extra.append(self.detail)
        tail = f" ({', '.join(extra)})" if extra else ""
        return f"{what}{tail} at {self.site}"

    def to_json(self) -> dict[str, Any]:
        """The provenance as plain values: ``via``, the site's fields (with ``job`` where
        it was given inside a job), ``depth`` and ``detail``."""
        return {"via": self.via, **self.site.to_json(), "depth": self.depth, "detail": self.detail}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        return cls(data["via"], CallSite.from_json(data), data.get("depth"), data.get("detail"))


@dataclass(frozen=True)
class Dependency:
    """One dependency of a submission: a kind, a target job and where it came from.

    ``target`` is the job handle (a ``Job`` or ``ArrayJob``), ``None`` for ``singleton``.
    ``target_id`` is its id as Slurm shows it (``"12"``, ``"12_3"`` for one array task).
    """

    kind: str
    target_id: str | None
    provenance: Provenance = field(compare=False)
    target: Any = field(default=None, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str | None]:
        return (self.kind, self.target_id)

    def describe(self) -> str:
        on = f"{self.kind}:{self.target_id}" if self.target_id else self.kind
        return f"{on}  <- {self.provenance.describe()}"

    @functools.cached_property
    def json_text(self) -> str:
        """:meth:`to_json` as JSON text, encoded once: a scope's dependency is written in
        the manifest of every submission inside it."""
        return json.dumps(self.to_json(), sort_keys=True, default=str)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "kind": self.kind,
            "target": self.target_id,
            "provenance": self.provenance.to_json(),
        }
        if self.target is not None:
            data["target_dir"] = str(self.target.directory)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dependency:
        return cls(data["kind"], data["target"], Provenance.from_json(data["provenance"]))


def merge(dependencies: Iterable[Dependency]) -> tuple[list[Dependency], list[Dependency]]:
    """Merge dependencies: order kept, duplicates dropped, the first provenance wins.

    Returns ``(kept, dropped)``; every dropped duplicate is returned so it can be logged.
    """
    kept: list[Dependency] = []
    dropped: list[Dependency] = []
    seen: set[tuple[str, str | None]] = set()
    for dep in dependencies:
        if dep.key in seen:
            dropped.append(dep)
        else:
            seen.add(dep.key)
            kept.append(dep)
    return kept, dropped


#: A backend-neutral dependency expression: every clause must hold (Slurm's ``,``).
DependencyClauses = tuple[tuple[str, tuple[str, ...]], ...]


def render(clauses: DependencyClauses) -> str:
    """Render clauses in Slurm's ``--dependency`` syntax (``afterok:1:2,afterany:3``)."""
    parts = []
    for kind, ids in clauses:
        parts.append(":".join((kind, *ids)) if ids else kind)
    return ",".join(parts)


def parse(text: str) -> DependencyClauses:
    """Parse Slurm's ``--dependency`` syntax (``,``-joined clauses only)."""
    if not text.strip():
        return ()
    clauses = []
    for clause in text.split(","):
        kind, *ids = clause.strip().split(":")
        check_kind(kind)
        clauses.append((kind, tuple(i.split("(")[0] for i in ids)))
    return tuple(clauses)

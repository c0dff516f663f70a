"""What one cluster's layers share: its backend, poller, root and settings, and the view of
the cluster its handles answer as ``.cluster``."""

from __future__ import annotations

import os
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .backends.base import Backend
from .poller import Poller
from .spec import Resources


class ClusterView(Protocol):
    """What a handle's ``.cluster`` is: the :class:`~slurmscope.Cluster` it was submitted
    to, declared here, below the facade, with what users call on it."""

    @property
    def root(self) -> Path: ...

    @property
    def backend(self) -> Backend: ...

    @property
    def name(self) -> str: ...

    def attach(self, job: str | int | os.PathLike[str]) -> Any: ...

    def dependencies(self, *jobs: Any, kind: str = ...) -> AbstractContextManager[Any]: ...

    def task(self, fn: Any = ..., **resources: Any) -> Any: ...

    def close(self) -> None: ...


@dataclass
class Runtime:
    """What one cluster's submit path and handles share: where jobs go, who watches them,
    and the cluster's settings. The :class:`~slurmscope.Cluster` facade makes one."""

    backend: Backend
    poller: Poller
    root: Path
    #: The scheduler's cluster name (job ids are unique within it).
    name: str
    #: Cancel every job still queued or running when Ctrl-C interrupts a wait.
    cancel_on_interrupt: bool
    #: The :class:`~slurmscope.Cluster` facade these handles answer as ``.cluster`` (and
    #: the key of its frames on the scope stack).
    owner: ClusterView
    #: Default resources of every task submitted here.
    defaults: Resources
    #: The largest pickled item (or argument set) a submission accepts.
    max_item_bytes: int
    #: Job directories group-readable (``0750``/``0640``) rather than private.
    share_with_group: bool = False
    #: Set by ``Cluster.close()``: nothing more is submitted.
    closed: bool = False
    #: The run this cluster records its submissions in (a :class:`slurmscope.ledger.Run`),
    #: or ``None``.
    run: object | None = None

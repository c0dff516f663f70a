"""The default cluster: where a task with no cluster of its own submits outside any
``with cluster:`` block.

The newest ``Cluster`` registers itself here (unless made with ``set_as_default=False``);
when there is none, the factory that :mod:`slurmscope.cluster` registers when it is loaded
(every public entry point loads it) makes one with ``Cluster()``. This module sits below
tasks and the facade, so that a task reaches its default cluster without importing it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from .runtime import Runtime


class Target(Protocol):
    """What a task submits to: a cluster's runtime (``Cluster`` is one)."""

    @property
    def runtime(self) -> Runtime: ...


_lock = threading.Lock()
_default: Target | None = None
_factory: Callable[[], Target] | None = None


def set_factory(factory: Callable[[], Target]) -> None:
    """How to make a default cluster when none was created (set by the facade)."""
    global _factory
    _factory = factory


def set_default(cluster: Target | None) -> None:
    """Make ``cluster`` the default (``None``: forget it)."""
    global _default
    with _lock:
        _default = cluster


def forget(cluster: Target) -> None:
    """``cluster`` is closed: it is no longer the default, if it was."""
    global _default
    with _lock:
        if _default is cluster:
            _default = None


def default() -> Target:
    """The default cluster, made on first use when there is none (or it was closed)."""
    global _default
    with _lock:
        if _default is None or _default.runtime.closed:
            if _factory is None:
                raise RuntimeError(
                    "no default cluster: create one with slurmscope.Cluster(...) first."
                )
            _default = _factory()
        return _default

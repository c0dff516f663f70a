"""``with cluster.dependencies(...)``: the block that pushes dependencies onto the scope
stack of the current context for every submission inside it."""

from __future__ import annotations

import threading
from types import TracebackType

from . import scope
from .callsite import CallSite
from .dependency import VIA_SCOPE, Dependency, Provenance
from .dependency_requests import DependencyRequest, target_id
from .log import log


class DependencyBlock:
    """What ``cluster.dependencies(...)`` returns: a context manager for ``with``.

    Entering it pushes a frame with its dependencies onto the scope stack of the current
    context (thread or asyncio task); leaving it, even by an exception, removes exactly that
    frame, in whatever order blocks are left (generators closed in creation order, an
    ``ExitStack``, an exception path). A block may be entered again, also while it is
    entered (recursion, several threads): each exit removes the newest entry of the context
    it runs in. Exited from another context than the one that entered it, the block is
    revoked there too (see :mod:`slurmscope.scope`) and ``slurmscope.scope.exited_elsewhere``
    is logged.
    """

    def __init__(self, owner: object, requests: list[DependencyRequest], site: CallSite) -> None:
        self._owner = owner
        self._requests = requests
        self._site = site
        self._entries = scope.OpenEntries()

    def __enter__(self) -> DependencyBlock:
        depth = scope.next_depth(self._owner)
        provenance = Provenance(VIA_SCOPE, self._site, depth=depth)
        deps = tuple(Dependency(r.kind, target_id(r), provenance, r.job) for r in self._requests)
        frame = scope.Frame(self._owner, deps, self._site, depth)
        self._entries.add(scope.push(frame))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        entry = self._entries.take()
        if entry is None:
            raise RuntimeError(
                f"this dependencies() block (opened at {self._site}) is not entered: "
                "__exit__ was called more often than __enter__."
            )
        if not scope.pop(entry):
            log.warning(
                "slurmscope.scope.exited_elsewhere",
                block=str(self._site),
                thread=threading.current_thread().name,
                detail="a dependencies() block was exited from another thread or context "
                "than the one that entered it; it no longer applies anywhere",
            )

"""The dependency scope stack: an immutable tuple of frames in one ``ContextVar``.

``push`` returns a token and ``pop`` takes it back (the ``decimal.localcontext`` /
OpenTelemetry ``attach``/``detach`` pattern). The value is a tuple that is replaced on
every push, never mutated, so copied contexts (threads, asyncio tasks) can never see each
other's changes.

Threads start with an empty context; :func:`carry_scope` carries the current stack into a
callable that runs in another thread or a ``concurrent.futures`` pool.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from .dependency import CallSite, Dependency

P = ParamSpec("P")
R = TypeVar("R")


@dataclass(frozen=True, eq=False)
class Frame:
    """One ``with`` block: the cluster it belongs to and the dependencies it adds.

    A ``with cluster:`` block is a frame with no dependencies: it only routes submissions.
    """

    cluster: Any
    dependencies: tuple[Dependency, ...]
    site: CallSite
    depth: int
    #: ``False`` for a ``with cluster:`` block, which only routes submissions.
    is_dependency_block: bool = True


Stack = tuple[Frame, ...]

_STACK: ContextVar[Stack] = ContextVar("slurmscope_scope", default=())


def current() -> Stack:
    """The frames active in this context, outermost first."""
    return _STACK.get()


def push(frame: Frame) -> Token[Stack]:
    return _STACK.set((*_STACK.get(), frame))


def pop(token: Token[Stack]) -> None:
    _STACK.reset(token)


def remove_innermost(match: Callable[[Frame], bool]) -> None:
    """Pop the innermost frame that ``match`` accepts (for ``with cluster:``, which is
    shared between threads and so cannot keep a token of its own)."""
    stack = _STACK.get()
    for i in range(len(stack) - 1, -1, -1):
        if match(stack[i]):
            _STACK.set(stack[:i] + stack[i + 1 :])
            return


def depth() -> int:
    return len(_STACK.get())


def frames_of(cluster: Any, stack: Stack | None = None) -> tuple[Frame, ...]:
    """The frames that belong to ``cluster``, outermost first."""
    return tuple(f for f in (current() if stack is None else stack) if f.cluster is cluster)


def next_depth(cluster: Any) -> int:
    """The nesting depth a new ``dependencies()`` block of ``cluster`` gets (1 = outermost)."""
    return 1 + sum(1 for f in frames_of(cluster) if f.is_dependency_block)


def innermost_cluster() -> Any | None:
    stack = _STACK.get()
    return stack[-1].cluster if stack else None


def carry_scope(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs inside the dependency scopes active *now*.

    Threads start with an empty context, so a ``with cluster.dependencies(...)`` block does
    not reach into a thread or pool you start inside it. Wrap the callable::

        with cluster.dependencies(prep):
            pool.submit(slurmscope.carry_scope(stage), chunk)

    The wrapper may be called many times and from several threads at once.
    """
    stack = _STACK.get()

    @functools.wraps(fn)
    def run_in_scope(*args: P.args, **kwargs: P.kwargs) -> R:
        token = _STACK.set(stack)
        try:
            return fn(*args, **kwargs)
        finally:
            _STACK.reset(token)

    return run_in_scope

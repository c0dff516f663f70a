"""The dependency scope stack: an immutable tuple of frames in one ``ContextVar``.

``push`` returns an :class:`Entry` and ``pop`` takes exactly that entry's frame off the stack,
whatever was pushed or popped since: blocks may be exited in any order (two generators that
each hold a block across a ``yield`` and are closed in creation order, an ``ExitStack``, an
exception path), and no exited block ever comes back. (A ``ContextVar`` token reset would
restore the snapshot taken at the push, bringing back every block exited out of order in
between.) The value is a tuple that is replaced on every push and pop, never mutated, so
copied contexts (threads, asyncio tasks) can never see each other's changes: a copy made
inside a block keeps that block even after the block is exited in the context that entered
it (documented in ``docs/concurrency.md``).

A block exited from a context other than the one that entered it (another thread, another
asyncio task, a generator closed elsewhere) cannot reach the stack of that context. It is
*revoked* instead: a flag on its frame makes every context, the one that entered it and
every copy of it, ignore the frame from then on.

Threads start with an empty context; :func:`carry_scope` carries the current stack into a
callable that runs in another thread or a ``concurrent.futures`` pool.
"""

from __future__ import annotations

import contextvars
import functools
import threading
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

from .callsite import CallSite, with_statement_key
from .dependency import Dependency

P = ParamSpec("P")
R = TypeVar("R")


class _Revoked:
    """Set once, when a frame's block is exited from a context that cannot remove it."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = False


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
    _revoked: _Revoked = field(default_factory=_Revoked, repr=False)

    @property
    def revoked(self) -> bool:
        """Whether the block was exited from another context: no context sees it now."""
        return self._revoked.value


Stack = tuple[Frame, ...]

_STACK: ContextVar[Stack] = ContextVar("slurmscope_scope", default=())


class Entry:
    """What :func:`push` returns and :func:`pop` takes: one frame pushed in one context."""

    __slots__ = ("frame", "_token", "_popped")

    def __init__(self, frame: Frame, token: Token[Stack]) -> None:
        self.frame = frame
        self._token = token
        self._popped = False

    @property
    def popped(self) -> bool:
        return self._popped

    def __repr__(self) -> str:
        state = "popped" if self._popped else "active"
        return f"<scope.Entry {state} {self.frame.site}>"


def _live(stack: Stack) -> Stack:
    if any(f._revoked.value for f in stack):
        return tuple(f for f in stack if not f._revoked.value)
    return stack


def current() -> Stack:
    """The frames active in this context, outermost first."""
    return _live(_STACK.get())


def push(frame: Frame) -> Entry:
    """Put ``frame`` on top of this context's stack; :func:`pop` the entry to remove it."""
    return Entry(frame, _STACK.set((*current(), frame)))


def pop(entry: Entry) -> bool:
    """Remove exactly ``entry``'s frame, whatever was pushed or popped since.

    Returns ``True`` when this is the context that pushed it. Otherwise (another thread,
    asyncio task or copied context) the frame is revoked, so that no context, the one
    that pushed it included, sees it any more; and ``False`` is returned.
    A second pop of the same entry raises ``RuntimeError``.
    """
    if entry._popped:
        raise RuntimeError(f"{entry!r} was already popped")
    entry._popped = True
    stack = _STACK.get()
    try:
        # Only to learn whether this is the context that pushed the frame: a token can be
        # reset in that context alone. The snapshot it restores is replaced at once.
        _STACK.reset(entry._token)
    except ValueError:
        in_place = False
        entry.frame._revoked.value = True
    else:
        in_place = True
    _STACK.set(tuple(f for f in _live(stack) if f is not entry.frame))
    return in_place


class OpenEntries:
    """The open entries of one context manager object that may be entered several times at
    once (recursion, threads, generators). ``take`` picks the entry an exit removes: the
    newest one that the same ``with`` statement or ``ExitStack`` entered (see
    :func:`~slurmscope.dependency.with_statement_key`) and that is active in this context;
    else the newest active in this context (``__exit__`` called by hand elsewhere); else the
    newest (exited from another context)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[tuple[Any, Entry]] = []

    def add(self, entry: Entry) -> None:
        key = with_statement_key()
        with self._lock:
            self._items.append((key, entry))

    def take(self) -> Entry | None:
        key = with_statement_key()
        active = {id(f) for f in current()}
        with self._lock:
            items = self._items
            accepts: tuple[Callable[[Any, Entry], bool], ...] = (
                lambda k, e: k == key and id(e.frame) in active,
                lambda k, e: id(e.frame) in active,
                lambda k, e: k == key,
                lambda k, e: True,
            )
            for accept in accepts:
                for i in range(len(items) - 1, -1, -1):
                    if accept(*items[i]):
                        return items.pop(i)[1]
        return None


def depth() -> int:
    return len(current())


def frames_of(cluster: Any, stack: Stack | None = None) -> tuple[Frame, ...]:
    """The frames that belong to ``cluster``, outermost first."""
    frames = current() if stack is None else _live(stack)
    return tuple(f for f in frames if f.cluster is cluster)


def next_depth(cluster: Any) -> int:
    """The nesting depth a new ``dependencies()`` block of ``cluster`` gets (1 = outermost)."""
    return 1 + sum(1 for f in frames_of(cluster) if f.is_dependency_block)


def innermost_cluster() -> Any | None:
    stack = current()
    return stack[-1].cluster if stack else None


def carry_scope(fn: Callable[P, R]) -> Callable[P, R]:
    """Wrap ``fn`` so that it runs inside the dependency scopes active *now*.

    Threads start with an empty context, so a ``with cluster.dependencies(...)`` block does
    not reach into a thread or pool you start inside it. Wrap the callable::

        with cluster.dependencies(prep):
            pool.submit(slurmscope.carry_scope(stage), chunk)

    The wrapper may be called many times and from several threads at once. Each call runs
    in a copy of the calling thread's context (as ``asyncio.to_thread`` does), so nothing
    ``fn`` does to its scopes (or to other context variables) outlives the call.
    """
    stack = current()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        _STACK.set(stack)
        return fn(*args, **kwargs)

    @functools.wraps(fn)
    def run_in_scope(*args: P.args, **kwargs: P.kwargs) -> R:
        return contextvars.copy_context().run(run, *args, **kwargs)

    return run_in_scope

"""``@task``: a Python function that runs as a Slurm job (``task(...)``) or array
(``task.map(items)``), submitted eagerly."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from . import default, scope
from .callsite import CallSite, caller_site
from .default import Target
from .dependency import VIA_AFTER_ARGUMENT, VIA_AFTER_METHOD, Dependency, Provenance
from .dependency_requests import dependencies_of
from .errors import InvalidInputError
from .handle import Handle
from .jobs import ArrayJob, Job
from .packing import check as check_pack
from .spec import Resources
from .submit import submit

P = ParamSpec("P")
R = TypeVar("R")


class Task(Generic[P, R]):
    """A function with the resources it asks for. Calling it submits at once.

    ``task(*args, **kwargs)`` submits one job and returns a :class:`~slurmscope.Job`;
    ``task.map(items)`` submits one array job and returns an :class:`~slurmscope.ArrayJob`.
    Items may be plain values (one argument), tuples (positional arguments) or dicts with
    string keys (keyword arguments).
    """

    def __init__(
        self,
        fn: Callable[P, R],
        resources: Resources,
        *,
        cluster: Target | None = None,
        after: tuple[Dependency, ...] = (),
        name: str | None = None,
        pack: int | str | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidInputError(f"@task needs a function, not {type(fn).__name__}.")
        self.fn = fn
        self.resources = resources
        self.cluster = cluster
        self._after = after
        #: Items per array task of this task's maps (``task.options(pack=...)``).
        self.pack = pack
        named = type(fn).__name__ if callable(getattr(fn, "checkpoint", None)) else "task"
        self.name = name or getattr(fn, "__name__", None) or named
        functools.update_wrapper(self, fn)

    def _copy(
        self,
        *,
        resources: Resources | None = None,
        cluster: Target | None = None,
        after: tuple[Dependency, ...] | None = None,
        pack: int | str | None = None,
    ) -> Task[P, R]:
        return Task(
            self.fn,
            self.resources if resources is None else resources,
            cluster=self.cluster if cluster is None else cluster,
            after=self._after if after is None else after,
            name=self.name,
            pack=self.pack if pack is None else pack,
        )

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # -- variants ------------------------------------------------------------------------------
    def after(self, *jobs: Any, kind: str = "afterok") -> Task[P, R]:
        """A variant of this task whose submissions depend on ``jobs`` (accumulates)."""
        target = self._target()
        provenance = Provenance(VIA_AFTER_METHOD, caller_site())
        deps = dependencies_of(target.runtime.owner, jobs, kind, provenance)
        return self._copy(after=self._after + deps, cluster=self.cluster or target)

    def options(
        self,
        *,
        after: Iterable[Any] | None = None,
        pack: int | str | None = None,
        **overrides: Any,
    ) -> Task[P, R]:
        """A variant with other resources (``time=``, ``mem=``...), ``after=[jobs]``, and/or
        ``pack=`` (items per array task of its maps, or ``"auto"``: docs/packing.md)."""
        if pack is not None:
            check_pack(pack, 2, True)
        variant = self._copy(resources=self.resources.updated(overrides), pack=pack)
        if after is not None:
            target = self._target()
            deps = _explicit(target, after, caller_site())
            variant = variant._copy(after=variant._after + deps, cluster=self.cluster or target)
        return variant

    def on(self, cluster: Target) -> Task[P, R]:
        """A variant bound to ``cluster``."""
        return self._copy(cluster=cluster)

    # -- submission ----------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Submit one job now and return its handle."""
        target = self._target()
        if self.pack is not None:
            check_pack(self.pack, 1, False)
        handle = self._submit(target, [(args, kwargs)], False, None, self._after, caller_site())
        assert isinstance(handle, Job)
        return handle

    def map(
        self,
        items: Iterable[Any],
        max_concurrent: int | None = None,
        after: Iterable[Any] | None = None,
        pack: int | str | None = None,
    ) -> ArrayJob[R]:
        """Submit one array job now, a task per item, and return its handle.

        ``max_concurrent`` caps how many tasks run at once (Slurm's ``--array=...%k``);
        ``after`` lists jobs this array depends on (``depend(job, kind)`` for other kinds).
        ``pack`` runs several items per array task: a number of items per task, or
        ``"auto"`` (sized from measured item durations); every item keeps its own result,
        error, state and dependencies (docs/packing.md).
        """
        pack = self.pack if pack is None else pack
        check_pack(pack, 2, True)
        target = self._target()  # once: a default cluster made meanwhile changes nothing
        site = caller_site()
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise InvalidInputError(
                f"map() takes an iterable of items (a list, range, generator...), not "
                f"{type(items).__name__}."
            )
        explicit = self._after
        if after is not None:
            explicit = explicit + _explicit(target, after, site)
        handle = self._submit(target, list(items), True, max_concurrent, explicit, site, pack)
        assert isinstance(handle, ArrayJob)
        return handle

    def _submit(
        self,
        target: Target,
        calls: list[Any],
        array: bool,
        max_concurrent: int | None,
        explicit: tuple[Dependency, ...],
        site: CallSite,
        pack: int | str | None = None,
    ) -> Job[R] | ArrayJob[R]:
        return submit(
            target.runtime,
            self.fn,
            self.name,
            self.resources,
            calls,
            array=array,
            max_concurrent=max_concurrent,
            explicit=explicit,
            site=site,
            pack=pack,
        )

    def _target(self) -> Target:
        """Where a submission goes: the bound cluster, else the innermost ``with`` block's,
        else the default cluster."""
        if self.cluster is not None:
            return self.cluster
        innermost: Target | None = scope.innermost_cluster()
        if innermost is not None:
            return innermost
        return default.default()


def _explicit(target: Target, after: Iterable[Any], site: CallSite) -> tuple[Dependency, ...]:
    jobs = [after] if isinstance(after, Handle) else list(after)
    provenance = Provenance(VIA_AFTER_ARGUMENT, site)
    return dependencies_of(target.runtime.owner, jobs, "afterok", provenance)


@overload
def task(fn: Callable[P, R], *, cluster: Target | None = None, **resources: Any) -> Task[P, R]: ...


@overload
def task(
    fn: None = None, *, cluster: Target | None = None, **resources: Any
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, *, cluster: Target | None = None, **resources: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Decorate a function as a task: ``@task`` or ``@task(time="00:10:00", mem="1G")``.

    Resources: ``time``, ``mem``, ``cpus_per_task``, ``gpus``, ``partition``, ``account``,
    ``qos``, ``constraint``, ``job_name``, ``extra`` (other sbatch flags).
    """
    wrap: Callable[[Callable[P, R]], Task[P, R]] = decorator(
        Resources.from_kwargs(resources), cluster
    )
    return wrap(fn) if fn is not None else wrap


def decorator(
    resources: Resources, cluster: Target | None
) -> Callable[[Callable[P, R]], Task[P, R]]:
    """What ``@task(...)`` and ``@cluster.task(...)`` apply to the function."""

    def wrap(fn: Callable[P, R]) -> Task[P, R]:
        return Task(fn, resources, cluster=cluster)

    return wrap

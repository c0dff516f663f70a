"""``@task``: a Python function that runs as a Slurm job (``task(...)``) or array
(``task.map(items)``), submitted eagerly."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar

from . import scope
from .dependency import VIA_AFTER, VIA_ARGUMENT_AFTER, Dependency, Provenance, caller_site
from .errors import InvalidInputError
from .jobs import ArrayJob, Job
from .spec import Resources

if TYPE_CHECKING:
    from .cluster import Cluster

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
        cluster: Cluster | None = None,
        after: tuple[Dependency, ...] = (),
        name: str | None = None,
    ) -> None:
        if not callable(fn):
            raise InvalidInputError(f"@task needs a function, not {type(fn).__name__}.")
        self.fn = fn
        self.resources = resources
        self.cluster = cluster
        self._after = after
        self.name = name or getattr(fn, "__name__", None) or "task"
        functools.update_wrapper(self, fn)  # type: ignore[arg-type]

    def _copy(self, **changes: Any) -> Task[P, R]:
        values = {
            "resources": self.resources,
            "cluster": self.cluster,
            "after": self._after,
            "name": self.name,
        }
        values.update(changes)
        return Task(self.fn, **values)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    # -- variants ------------------------------------------------------------------------------
    def after(self, *jobs: Any, kind: str = "afterok") -> Task[P, R]:
        """A variant of this task whose submissions depend on ``jobs`` (accumulates)."""
        target = self._target()
        site = caller_site()
        provenance = Provenance(VIA_AFTER, site)
        requests = target._requests(jobs, kind, provenance)
        deps = tuple(
            Dependency(r.kind, None if r.job is None else r.job._target_id(), provenance, r.job)
            for r in requests
        )
        return self._copy(after=self._after + deps, cluster=self.cluster or target)

    def options(self, *, after: Iterable[Any] | None = None, **overrides: Any) -> Task[P, R]:
        """A variant with other resources (``time=``, ``mem=``...) and/or ``after=[jobs]``."""
        variant = self._copy(resources=self.resources.updated(overrides))
        if after is not None:
            target = self._target()
            deps = _explicit(target, after, caller_site())
            variant = variant._copy(after=variant._after + deps, cluster=self.cluster or target)
        return variant

    def on(self, cluster: Cluster) -> Task[P, R]:
        """A variant bound to ``cluster``."""
        return self._copy(cluster=cluster)

    # -- submission ----------------------------------------------------------------------------
    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Job:
        """Submit one job now and return its handle."""
        cluster = self._target()
        handle = cluster._submit(
            self,
            [(args, kwargs)],
            array=False,
            max_concurrent=None,
            explicit=self._after,
            site=caller_site(),
        )
        assert isinstance(handle, Job)
        return handle

    def map(
        self,
        items: Iterable[Any],
        max_concurrent: int | None = None,
        after: Iterable[Any] | None = None,
    ) -> ArrayJob:
        """Submit one array job now, a task per item, and return its handle.

        ``max_concurrent`` caps how many tasks run at once (Slurm's ``--array=...%k``);
        ``after`` lists jobs this array depends on (``depend(job, kind)`` for other kinds).
        """
        cluster = self._target()
        site = caller_site()
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise InvalidInputError(
                f"map() takes an iterable of items (a list, range, generator...), not "
                f"{type(items).__name__}."
            )
        explicit = self._after
        if after is not None:
            explicit = explicit + _explicit(cluster, after, site)
        handle = cluster._submit(
            self,
            list(items),
            array=True,
            max_concurrent=max_concurrent,
            explicit=explicit,
            site=site,
        )
        assert isinstance(handle, ArrayJob)
        return handle

    def _target(self) -> Cluster:
        """Where a submission goes: the bound cluster, else the innermost ``with`` block's,
        else the default cluster."""
        if self.cluster is not None:
            return self.cluster
        innermost = scope.innermost_cluster()
        if innermost is not None:
            return innermost  # type: ignore[no-any-return]
        from .cluster import default_cluster

        return default_cluster()


def _explicit(cluster: Cluster, after: Iterable[Any], site: Any) -> tuple[Dependency, ...]:
    from .jobs import _Handle

    if isinstance(after, _Handle):
        after = [after]
    provenance = Provenance(VIA_ARGUMENT_AFTER, site)
    requests = cluster._requests(list(after), "afterok", provenance)
    return tuple(
        Dependency(r.kind, None if r.job is None else r.job._target_id(), provenance, r.job)
        for r in requests
    )


def task(
    fn: Callable[..., Any] | None = None, *, cluster: Cluster | None = None, **resources: Any
) -> Any:
    """Decorate a function as a task: ``@task`` or ``@task(time="00:10:00", mem="1G")``.

    Resources: ``time``, ``mem``, ``cpus_per_task``, ``gpus``, ``partition``, ``account``,
    ``qos``, ``constraint``, ``job_name``, ``extra`` (other sbatch flags).
    """
    parsed = Resources.from_kwargs(resources)

    def wrap(f: Callable[..., Any]) -> Task[Any, Any]:
        return Task(f, parsed, cluster=cluster)

    return wrap(fn) if fn is not None else wrap

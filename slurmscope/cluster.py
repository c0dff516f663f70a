"""``Cluster``: the facade users hold. Where submissions go (one backend, one job-directory
root, one poller), the dependency scopes, ``attach`` and ``close``; everything it does is
done by the modules below it (see ``docs/contributing.md``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, overload

from . import default, ledger, scope
from .attach import attach
from .backend_choice import check_options, choose_backend
from .backends.base import Backend
from .blocks import DependencyBlock
from .callsite import caller_site
from .dependency import VIA_SCOPE, Provenance, check_kind
from .dependency_requests import DependencyRequest, check_requests, depend
from .errors import InvalidInputError
from .jobs import ArrayJob, Job
from .log import log
from .poller import Poller
from .roots import check_shared, check_writers, make_root, resolve_root
from .runtime import Runtime
from .sizes import parse_size
from .spec import Resources
from .tasks import Task, decorator, task

P = ParamSpec("P")
R = TypeVar("R")


class Cluster:
    """A place to run tasks: one backend, one job-directory root, one poller.

    ``backend`` is ``"auto"`` (pyslurm, then the sbatch CLI, then the embedded local
    scheduler; ``$SLURMSCOPE_BACKEND`` overrides), ``"local"``, ``"sbatch"`` or
    ``"pyslurm"``. ``root`` is where job directories live (default ``$SLURMSCOPE_ROOT``,
    else ``~/.slurmscope/jobs``); on a real cluster it must be on a filesystem that every
    node sees. Other keyword arguments are default resources for every task submitted here
    (``partition=``, ``account=``, ``time=``...), or options of the backend (``cpus=`` and
    ``max_array_size=`` for the local one).

    The newest ``Cluster`` becomes the default target unless ``set_as_default=False``.

    More options:

    - ``max_item_size`` (default ``$SLURMSCOPE_MAX_ITEM_SIZE`` or ``"64M"``): the largest
      pickled item (or argument set) a submission accepts.
    - ``check_shared_root`` (default True): refuse a root on a local filesystem when the
      cluster's nodes are other machines.
    - ``share_with_group`` (default ``$SLURMSCOPE_SHARE_WITH_GROUP`` or False): make job
      directories group-readable (directories ``0750``, files ``0640``) instead of private
      to you (``0700``/``0600``, whatever the umask); never group-writable. It also accepts
      a root its group can write into (a team's project directory).
    - ``allow_writable_root`` (default ``$SLURMSCOPE_ALLOW_WRITABLE_ROOT`` or False): accept
      a root that others can write into (world-writable, group-writable without
      ``share_with_group``, or another user's) and that is not sticky. Refused by default:
      others could plant job directories or results there. Whatever the root, nothing is
      unpickled (by this driver, ``attach``, the command line or the worker) unless the file
      and its job directory are yours and writable by no one else (docs/reliability.md,
      "Security"); ``UnsafeJobDirectoryError`` says which path failed and what to do.
    - ``run`` (default ``$SLURMSCOPE_RUN``; ``run=None`` given: no run, whatever that says):
      a run id (``[A-Za-z0-9._-]``): every submission made here is recorded in that run's
      ledger, ``ROOT/runs/<id>/ledger.jsonl``.
      A run that already has a ledger is refused (``RunExistsError``) unless it is resumed.
    - ``resume`` (default ``$SLURMSCOPE_RESUME``, and True in a driver job that Slurm
      requeued): resume the run: each submission that matches one of the earlier attempt
      (same task code, arguments and dependencies, in program order) reattaches to its job
      when that job succeeded or has not ended; the rest are submitted (docs/pipelines.md).
    - ``cancel_on_interrupt`` (default False): when Ctrl-C interrupts a ``wait()``,
      ``get_result()`` or ``get_results()``, cancel every job of this cluster still queued
      or running. Without it they are listed on stderr, with how to reattach and cancel.
    - sbatch backend: ``slurm_conf`` (another cluster's slurm.conf), ``retries`` (transient
      controller errors, default 6), ``command_timeout`` (seconds per Slurm command).
    - pyslurm backend: ``slurm_conf`` (read once per process, at ``import pyslurm``),
      ``retries``.
    - local backend: ``cpus`` (default: this machine's), ``max_array_size`` (default: none).
    """

    def __init__(
        self,
        backend: str | Backend = "auto",
        *,
        root: str | os.PathLike[str] | None = None,
        set_as_default: bool = True,
        **options: Any,
    ) -> None:
        self._routing = scope.OpenEntries()  # the open `with cluster:` blocks
        root_dir = resolve_root(root)
        max_item_bytes = parse_size(
            options.pop("max_item_size", None)
            or os.environ.get("SLURMSCOPE_MAX_ITEM_SIZE")
            or "64M"
        )
        resource_names = set(Resources.__dataclass_fields__)
        defaults = {k: options.pop(k) for k in list(options) if k in resource_names}
        resources = Resources.from_kwargs(defaults)
        shared_root_check = options.pop("check_shared_root", True)
        share_with_group = _flag(options, "share_with_group", "SLURMSCOPE_SHARE_WITH_GROUP")
        allow_writable = _flag(options, "allow_writable_root", "SLURMSCOPE_ALLOW_WRITABLE_ROOT")
        cancel_on_interrupt = options.pop("cancel_on_interrupt", False)
        if not isinstance(cancel_on_interrupt, bool):
            raise InvalidInputError(
                f"cancel_on_interrupt must be True or False, not {cancel_on_interrupt!r}."
            )
        run_given = "run" in options  # run=None: no run, whatever $SLURMSCOPE_RUN says
        run_id, resume = ledger.requested(
            options.pop("run", None), options.pop("resume", None), run_given
        )
        check_options(backend, options)  # before the root or a backend is created
        make_root(root_dir, share_with_group)
        check_writers(root_dir, "", share_with_group, allow_writable)
        if run_id is not None:
            ledger.refuse_existing(root_dir, run_id, resume)  # before a backend is made
        chosen_backend, why = choose_backend(backend, root_dir, options)
        check_writers(root_dir, chosen_backend.cluster_name, share_with_group, allow_writable)
        if shared_root_check:
            node_hosts = chosen_backend.node_hosts()  # asked only for this check
            if node_hosts is not None:
                check_shared(root_dir, node_hosts)
        #: What the submit path and every handle of this cluster share.
        self.runtime = Runtime(
            backend=chosen_backend,
            poller=Poller(chosen_backend),
            root=root_dir,
            name=chosen_backend.cluster_name,
            cancel_on_interrupt=cancel_on_interrupt,
            owner=self,
            defaults=resources,
            max_item_bytes=max_item_bytes,
            share_with_group=share_with_group,
        )
        if run_id is not None:
            self.runtime.run = ledger.open_run(root_dir, run_id, resume, share_with_group)
        # Slurm's tools are here, yet the embedded scheduler was chosen: say so where it shows
        # (a typo in SLURM_CONF on a login node would otherwise run everything locally).
        fell_back = (
            backend == "auto"
            and not os.environ.get("SLURMSCOPE_BACKEND")
            and self.backend.kind == "local"
            and shutil.which("sbatch") is not None
        )
        chosen = {
            "backend": self.backend.kind,
            "cluster": self.backend.cluster_name,
            "reason": why,
            "root": str(self.root),
        }
        if fell_back:
            log.warning("slurmscope.backend.chosen", **chosen)
        else:
            log.info("slurmscope.backend.chosen", **chosen)
        if set_as_default:
            default.set_default(self)

    @property
    def root(self) -> Path:
        """Where this cluster's job directories live."""
        return self.runtime.root

    @property
    def backend(self) -> Backend:
        """The backend this cluster submits through."""
        return self.runtime.backend

    @property
    def run(self) -> str | None:
        """The id of the run this cluster records its submissions in, or ``None``."""
        return ledger.run_id(self.runtime)

    @property
    def name(self) -> str:
        """The scheduler's cluster name (job ids are unique within it)."""
        return self.backend.cluster_name

    @property
    def defaults(self) -> Resources:
        """Default resources of every task submitted here (settable)."""
        return self.runtime.defaults

    @defaults.setter
    def defaults(self, value: Resources) -> None:
        if not isinstance(value, Resources):
            raise InvalidInputError(
                f"Cluster.defaults must be a slurmscope.Resources, not {type(value).__name__}."
            )
        self.runtime.defaults = value

    @property
    def max_item_bytes(self) -> int:
        """The largest pickled item (or argument set) a submission accepts (settable)."""
        return self.runtime.max_item_bytes

    @max_item_bytes.setter
    def max_item_bytes(self, value: int) -> None:
        self.runtime.max_item_bytes = value

    @property
    def cancel_on_interrupt(self) -> bool:
        """Cancel every job still queued or running when Ctrl-C interrupts a wait
        (settable)."""
        return self.runtime.cancel_on_interrupt

    @cancel_on_interrupt.setter
    def cancel_on_interrupt(self, value: bool) -> None:
        if not isinstance(value, bool):
            raise InvalidInputError(f"cancel_on_interrupt must be True or False, not {value!r}.")
        self.runtime.cancel_on_interrupt = value

    def __repr__(self) -> str:
        return f"<Cluster {self.backend.kind}:{self.name} root={self.root}>"

    # -- scopes ------------------------------------------------------------------------------
    def dependencies(self, *jobs: Any, kind: str = "afterok") -> DependencyBlock:
        """A ``with`` block whose every submission to this cluster depends on ``jobs``.

        Blocks nest; a submission merges the dependencies of every enclosing block of the
        same cluster, outermost first. ``kind`` is one of ``afterok`` (default),
        ``afterany``, ``afternotok``, ``after``, ``aftercorr`` or ``singleton`` (no jobs).
        """
        check_kind(kind)
        site = caller_site()
        provenance = Provenance(VIA_SCOPE, site, depth=scope.next_depth(self))
        return DependencyBlock(self, check_requests(self, jobs, kind, provenance), site)

    def __enter__(self) -> Cluster:
        """``with cluster:`` sends every submission in the block here."""
        frame = scope.Frame(self, (), caller_site(), 0, is_dependency_block=False)
        self._routing.add(scope.push(frame))
        return self

    def __exit__(self, *exc: object) -> None:
        entry = self._routing.take()  # the one Cluster object serves every `with cluster:`
        if entry is not None:
            scope.pop(entry)

    # -- tasks -------------------------------------------------------------------------------
    @overload
    def task(self, fn: Callable[P, R], **resources: Any) -> Task[P, R]: ...

    @overload
    def task(self, fn: None = None, **resources: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self, fn: Callable[P, R] | None = None, **resources: Any
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """``@cluster.task(...)``: a task bound to this cluster."""
        wrap: Callable[[Callable[P, R]], Task[P, R]] = decorator(
            Resources.from_kwargs(resources), self
        )
        return wrap(fn) if fn is not None else wrap

    # -- reattach ----------------------------------------------------------------------------
    def attach(self, job: str | int | os.PathLike[str]) -> Job[Any] | ArrayJob[Any]:
        """A handle for a job submitted earlier, maybe by another process: give its id
        (``12``, ``"12"``, ``"12_3"``) or its job directory."""
        return attach(self.runtime, job)

    def close(self) -> None:
        """Stop using this cluster. The local backend cancels what it still runs."""
        if not self.runtime.closed and isinstance(self.runtime.run, ledger.Run):
            ledger.release(self.runtime.run)
        self.runtime.closed = True
        self.backend.close()
        default.forget(self)


def _flag(options: dict[str, Any], name: str, variable: str) -> bool:
    """Option ``name`` (True or False), else environment variable ``variable`` ("1"/"0")."""
    value = options.pop(name, None)
    if value is None:
        text = os.environ.get(variable, "").strip().lower()
        if text not in ("", "0", "1", "true", "false", "yes", "no"):
            raise InvalidInputError(f"{variable} must be 1 or 0, not {text!r}.")
        return text in ("1", "true", "yes")
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, not {value!r}.")
    return value


def default_cluster() -> Cluster:
    """The most recently created ``Cluster`` (unless made with ``set_as_default=False``);
    created with ``Cluster()`` on first use when there is none."""
    cluster = default.default()
    assert isinstance(cluster, Cluster)
    return cluster


def _make_default() -> Cluster:
    return Cluster(set_as_default=False)


default.set_factory(_make_default)

__all__ = ["Cluster", "DependencyRequest", "Task", "default_cluster", "depend", "task"]

"""``Cluster``: where submissions go, the dependency scopes, and the one eager submit path."""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

import cloudpickle

from . import scope
from .backends.base import Backend
from .dependency import (
    KINDS,
    VIA_DATA,
    VIA_SCOPE,
    CallSite,
    Dependency,
    Provenance,
    caller_site,
    check_kind,
    clauses_for_part,
    merge,
    never_satisfied,
)
from .errors import (
    BackendUnavailableError,
    DependencyError,
    InvalidInputError,
    JobNotFoundError,
    SubmissionError,
)
from .jobs import ArrayJob, Job, Part, Submission, _Handle
from .log import log
from .origin import driver_info
from .payload import JobDirectory, ResultRef, split_job_id
from .sizes import human_size, largest_captures, parse_size
from .spec import ArraySpec, JobSpec, Resources

if TYPE_CHECKING:
    from ._task import Task

_default_lock = threading.Lock()
_default: Cluster | None = None  # the explicit default-cluster registry

_PLAIN = (int, float, str, bytes, bool, type(None), complex)


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
        _check_handle(job)
    return DependencyRequest(kind, job)


def _check_handle(job: Any) -> None:
    if not isinstance(job, _Handle):
        raise DependencyError(
            f"a dependency must be a Job or ArrayJob (what a task call or .map() returns), "
            f"not {type(job).__name__} {job!r}."
        )


def default_cluster() -> Cluster:
    """The most recently created ``Cluster`` (unless made with ``set_as_default=False``);
    created with ``Cluster()`` on first use when there is none."""
    global _default
    with _default_lock:
        if _default is None or _default._closed:
            _default = Cluster(set_as_default=False)
        return _default


def _set_default(cluster: Cluster | None) -> None:
    global _default
    with _default_lock:
        _default = cluster


def _choose_backend(
    requested: str | Backend, cluster: Cluster, options: dict[str, Any]
) -> tuple[Backend, str]:
    if isinstance(requested, Backend):
        return requested, "given as an object"
    name = requested
    reason = f"asked for {name!r}"
    if name == "auto":
        env = os.environ.get("SLURMSCOPE_BACKEND")
        if env:
            name, reason = env, f"SLURMSCOPE_BACKEND={env}"
        else:
            name, reason = _detect()
    _check_options(name, options)  # again: "auto" chose one, and it takes fewer
    return _backend_module(name).create(cluster.root, **options), reason


_BACKENDS = ("local", "sbatch", "pyslurm")
#: What Cluster() takes besides resources and backend options.
_CLUSTER_OPTIONS = (
    "backend",
    "root",
    "set_as_default",
    "max_item_size",
    "check_shared_root",
    "cancel_on_interrupt",
)


def _backend_module(name: str) -> Any:
    if name not in _BACKENDS:
        raise InvalidInputError(
            f"unknown backend {name!r}: use 'auto', 'local', 'sbatch' or 'pyslurm'."
        )
    try:
        return __import__(f"slurmscope.backends.{name}", fromlist=["OPTIONS"])
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} backend is not available in this version of slurmscope ({exc}); "
            "use Cluster('local') meanwhile."
        ) from exc


def _check_options(backend: str | Backend, options: dict[str, Any]) -> None:
    """Refuse options the backend does not take, before anything is constructed, naming
    the ones it does (``"auto"``: the options of any backend, checked again once chosen)."""
    if isinstance(backend, Backend):
        allowed: tuple[str, ...] = ()
        which = f"a backend given as an object ({type(backend).__name__})"
    elif backend == "auto" and not os.environ.get("SLURMSCOPE_BACKEND"):
        allowed = tuple(dict.fromkeys(o for n in _BACKENDS for o in _backend_module(n).OPTIONS))
        which = "any backend"
    else:
        name = backend if backend != "auto" else os.environ["SLURMSCOPE_BACKEND"]
        allowed = _backend_module(name).OPTIONS
        which = f"the {name} backend"
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    import difflib

    resources = sorted(Resources.__dataclass_fields__)
    valid = [*allowed, *_CLUSTER_OPTIONS, *resources]
    owners = {o: n for n in reversed(_BACKENDS) for o in _backend_module(n).OPTIONS}

    def hint(option: str) -> str:
        if option in owners:
            return f"{option}= (an option of the {owners[option]} backend)"
        close = difflib.get_close_matches(option, valid, n=2, cutoff=0.8)
        return (
            f"{option}= (did you mean {' or '.join(m + '=' for m in close)}?)"
            if close
            else f"{option}="
        )

    hints = [hint(u) for u in unknown]
    raise InvalidInputError(
        f"unknown Cluster option(s) {', '.join(hints)} for {which}. Options of {which}: "
        f"{', '.join(allowed) or 'none'}; of every Cluster: {', '.join(_CLUSTER_OPTIONS[1:])}; "
        f"default resources for its tasks: {', '.join(resources)}. Nothing was created."
    )


def _detect() -> tuple[str, str]:
    """Auto-detection: pyslurm, then the sbatch CLI, then the embedded local scheduler."""
    import importlib.util

    candidates = []
    if importlib.util.find_spec("slurmscope.backends.pyslurm") and importlib.util.find_spec(
        "pyslurm"
    ):
        candidates.append("pyslurm")
    if importlib.util.find_spec("slurmscope.backends.sbatch") and shutil.which("sbatch"):
        candidates.append("sbatch")
    whys = []
    for name in candidates:
        module = __import__(f"slurmscope.backends.{name}", fromlist=["reachable"])
        ok, why = module.reachable()
        if ok:
            return name, why
        whys.append(f"{name}: {why}")
    if shutil.which("sbatch"):
        return (
            "local",
            "sbatch is on PATH but no Slurm backend answered; using the embedded scheduler "
            f"({'; '.join(whys)})",
        )
    return "local", "no Slurm cluster reachable (no sbatch on PATH); using the embedded scheduler"


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

    def __init__(self, cluster: Cluster, requests: list[DependencyRequest], site: CallSite) -> None:
        self._cluster = cluster
        self._requests = requests
        self._site = site
        self._entries = scope.OpenEntries()

    def __enter__(self) -> DependencyBlock:
        depth = scope.next_depth(self._cluster)
        provenance = Provenance(VIA_SCOPE, self._site, depth=depth)
        deps = tuple(Dependency(r.kind, _target_id(r), provenance, r.job) for r in self._requests)
        frame = scope.Frame(self._cluster, deps, self._site, depth)
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


def _task_index(submission: Submission, job_id: str, index: int) -> int:
    """The item index of task ``job_id_index``; ``JobNotFoundError`` if there is none."""
    if not submission.is_array:
        raise JobNotFoundError(
            f"job {job_id} ({submission.name}) is a single job, not an array: it has no task "
            f"{job_id}_{index}. Give {job_id}."
        )
    part = next((p for p in submission.parts if p.job_id == job_id), None)
    if part is None or not 0 <= index < part.count:
        last = f"{job_id}_{part.count - 1}" if part is not None and part.count else "none"
        raise JobNotFoundError(
            f"array {job_id} ({submission.name}) has no task {job_id}_{index}: its tasks are "
            f"{job_id}_0 to {last}."
        )
    return part.offset + index


def _target_id(request: DependencyRequest) -> str | None:
    return None if request.kind == "singleton" else request.job._target_id()


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
        self._closed = False
        self._routing = scope.OpenEntries()  # the open `with cluster:` blocks
        self.root = (
            Path(root or os.environ.get("SLURMSCOPE_ROOT") or Path.home() / ".slurmscope" / "jobs")
            .expanduser()
            .absolute()
        )
        self.max_item_bytes = parse_size(
            options.pop("max_item_size", None)
            or os.environ.get("SLURMSCOPE_MAX_ITEM_SIZE")
            or "64M"
        )
        resource_names = set(Resources.__dataclass_fields__)
        defaults = {k: options.pop(k) for k in list(options) if k in resource_names}
        self.defaults = Resources.from_kwargs(defaults)
        check_shared = options.pop("check_shared_root", True)
        #: Cancel every job still queued or running when Ctrl-C interrupts a wait.
        self.cancel_on_interrupt = options.pop("cancel_on_interrupt", False)
        if not isinstance(self.cancel_on_interrupt, bool):
            raise InvalidInputError(
                f"cancel_on_interrupt must be True or False, not {self.cancel_on_interrupt!r}."
            )
        _check_options(backend, options)  # before the root or a backend is created
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidInputError(
                f"cannot create the job directory root {self.root}: {exc}. Pass "
                "Cluster(root=...) or set SLURMSCOPE_ROOT to a writable directory."
            ) from exc
        if not os.access(self.root, os.W_OK):
            raise InvalidInputError(
                f"the job directory root {self.root} is not writable. Pass Cluster(root=...) "
                "or set SLURMSCOPE_ROOT to a writable directory."
            )
        self.backend, why = _choose_backend(backend, self, options)
        self._poller_obj: Any = None
        node_hosts = self.backend.node_hosts()
        if check_shared and node_hosts is not None:
            try:
                mounts = Path("/proc/mounts").read_text()
            except OSError:
                mounts = ""
            problem = root_problem(self.root, node_hosts, socket.gethostname(), mounts)
            if problem:
                raise InvalidInputError(problem)
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
            _set_default(self)

    @property
    def _poller(self) -> Any:
        if self._poller_obj is None:
            from .jobs import Poller

            with _default_lock:
                if self._poller_obj is None:
                    self._poller_obj = Poller(self.backend)
        return self._poller_obj

    @property
    def name(self) -> str:
        return self.backend.cluster_name

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
        requests = self._requests(
            jobs, kind, Provenance(VIA_SCOPE, site, depth=scope.next_depth(self))
        )
        return DependencyBlock(self, requests, site)

    def _requests(
        self, jobs: Iterable[Any], kind: str, provenance: Provenance
    ) -> list[DependencyRequest]:
        """Check the jobs of ``dependencies()``, ``.after()`` or ``after=``: every error says
        where the dependency was given, as the checks at submission do."""
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
                _check_handle(job)
            except DependencyError as exc:
                raise DependencyError(f"{str(exc).rstrip('.')}{given}.") from None
            out.append(DependencyRequest(kind, job))
        for request in out:
            if request.job is not None and request.job.cluster is not self:
                raise DependencyError(
                    f"job {request.job._target_id()} belongs to {request.job.cluster!r}, not "
                    f"to {self!r}; Slurm cannot express a dependency across clusters{given}. "
                    "Wait for it (job.wait()) and pass its result instead."
                )
        return out

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
    def task(self, fn: Callable[..., Any] | None = None, **resources: Any) -> Any:
        """``@cluster.task(...)``: a task bound to this cluster."""
        from ._task import task

        return task(fn, cluster=self, **resources)

    # -- reattach ----------------------------------------------------------------------------
    def attach(self, job: str | int | os.PathLike[str]) -> Job | ArrayJob:
        """A handle for a job submitted earlier, maybe by another process: give its id
        (``12``, ``"12"``, ``"12_3"``) or its job directory."""
        if isinstance(job, int) and not isinstance(job, bool) and job > 0:
            job = str(job)
        if not isinstance(job, (str, os.PathLike)):
            raise InvalidInputError(
                f"attach() takes a job id (12, '12' or '12_3' for one task of an array) or a "
                f"job directory, not {type(job).__name__} {job!r}."
            )
        text = os.fspath(job).strip()
        index: int | None = None
        if text and (os.sep in text or Path(text).is_dir()):
            directory = JobDirectory(Path(text))
        else:
            try:
                job_id, index = split_job_id(text)
            except ValueError as exc:
                raise InvalidInputError(f"cannot attach: {exc}.") from None
            found = JobDirectory.find(self.root, self.name, job_id)
            if found is None:
                raise JobNotFoundError(
                    f"no job directory for job {text} of cluster {self.name} under {self.root}; "
                    "pass the job directory instead, or the root it was submitted with."
                )
            directory = found
        try:
            manifest = directory.read_manifest()
        except FileNotFoundError as exc:
            raise JobNotFoundError(f"{directory.path} holds no manifest.json") from exc
        parts = [Part(p["job_id"], p["offset"], p["count"]) for p in manifest["parts"]]
        deps = [Dependency.from_json(d) for d in manifest["dependencies"]]
        submission = Submission(
            self, directory, manifest["name"], manifest["size"], manifest["array"], parts, deps
        )
        task_index = None if index is None else _task_index(submission, job_id, index)
        submission.load_recorded()
        self._poller.watch(submission)
        if task_index is not None:
            return Job(submission, task_index)
        return Job(submission) if not submission.is_array else ArrayJob(submission)

    def close(self) -> None:
        """Stop using this cluster. The local backend cancels what it still runs."""
        self._closed = True
        self.backend.close()
        if _default is self:
            _set_default(None)

    # -- the one submit path -----------------------------------------------------------------
    def _submit(
        self,
        task: Task[..., Any],
        calls: Sequence[Any],
        *,
        array: bool,
        max_concurrent: int | None,
        explicit: Sequence[Dependency],
        site: CallSite,
    ) -> Job | ArrayJob:
        if self._closed:
            raise SubmissionError(f"{self!r} is closed; create a new Cluster.")
        if max_concurrent is not None and (
            not isinstance(max_concurrent, int)
            or isinstance(max_concurrent, bool)
            or max_concurrent < 1
        ):
            raise InvalidInputError(
                f"max_concurrent must be a whole number of at least 1, not {max_concurrent!r}."
            )
        size = len(calls)
        # 1. Every dependency, in merge order: scopes outermost first, then explicit ones.
        gathered: list[Dependency] = []
        for frame in scope.frames_of(self):
            gathered.extend(frame.dependencies)
        gathered.extend(explicit)
        # 2. Pickle the payload; handles inside arguments become data dependencies.
        function_blob = _pickle_function(task)
        self._check_function_size(task, function_blob)
        item_blobs = _pickle_scalars(calls) if array else None
        if item_blobs is not None:  # plain scalars: no handles inside, one fast pass
            if item_blobs and max(map(len, item_blobs)) > self.max_item_bytes:
                index = next(i for i, b in enumerate(item_blobs) if len(b) > self.max_item_bytes)
                self._too_big(task, index, len(item_blobs[index]), array)
        else:
            item_blobs = []
            for index, call in enumerate(calls):
                found: list[tuple[Any, str]] = []
                args, kwargs = _split_call(call, array)
                args = _extract(args, found, "args")
                kwargs = _extract(kwargs, found, "kwargs")
                for handle, path in found:
                    detail = f"item {index} {path}" if array else path
                    prov = Provenance(VIA_DATA, site, detail=detail)
                    gathered.append(Dependency("afterok", handle._target_id(), prov, handle))
                blob = _pickle_item(args, kwargs, index if array else None)
                if len(blob) > self.max_item_bytes:
                    self._too_big(task, index, len(blob), array)
                item_blobs.append(blob)
        # 3. Merge, check, and drop what is already satisfied.
        kept, dropped = merge(gathered)
        for dup in dropped:
            log.info(
                "slurmscope.dependency.merged",
                task=task.name,
                kind=dup.kind,
                target=dup.target_id,
                dropped=dup.provenance.describe(),
                kept=next(k for k in kept if k.key == dup.key).provenance.describe(),
            )
        for dep in kept:
            self._check_dependency(dep, size, array)
        active = self._drop_satisfied(kept, task.name)
        # 4. Write the job directory, then submit part by part.
        resources = self.defaults.updated(task.resources.to_json())
        if array and size == 0:  # nothing to run: no job directory, no scheduler call
            return self._empty_map(task, kept, site)
        directory = JobDirectory.create(self.root, task.name)
        try:
            directory.write_payload(function_blob, item_blobs, driver_info(task.fn, _by_value))
            manifest = self._manifest(task, size, array, resources, site, max_concurrent)
            deps_json = [d.json_text for d in kept]
            directory.write_manifest(manifest, dependencies=deps_json)
            parts = self._submit_parts(
                directory, task, size, array, active, resources, max_concurrent
            )
        except BaseException:
            shutil.rmtree(directory.path, ignore_errors=True)
            raise
        manifest["parts"] = [p.__dict__ for p in parts]
        manifest["state"] = "submitted"
        directory.write_manifest(manifest, dependencies=deps_json)
        for part in parts:
            directory.register_id(self.root, self.name, part.job_id)
        submission = Submission(self, directory, task.name, size, array, parts, kept)
        log.info(
            "slurmscope.submit",
            task=task.name,
            job_ids=[p.job_id for p in parts],
            items=size if array else None,
            backend=self.backend.kind,
            cluster=self.name,
            directory=str(directory.path),
            submitted_from=str(site),
            dependencies=[_event_dep(d) for d in kept],
            duplicates_dropped=len(dropped),
        )
        self._poller.watch(submission)
        return ArrayJob(submission) if array else Job(submission)

    def _empty_map(self, task: Task[..., Any], deps: list[Dependency], site: CallSite) -> ArrayJob:
        """``map([])``: an array of no tasks, already succeeded (a satisfied dependency, no
        results). It writes no job directory of its own (``status`` has nothing to list)
        and reaches no scheduler; its directory is the root's shared, empty ``.empty``."""
        empty = JobDirectory(self.root / ".empty")
        empty.results_dir.mkdir(parents=True, exist_ok=True)
        submission = Submission(self, empty, task.name, 0, True, [], deps)
        log.info(
            "slurmscope.submit",
            task=task.name,
            job_ids=[],
            items=0,
            backend=self.backend.kind,
            cluster=self.name,
            directory=None,
            submitted_from=str(site),
            dependencies=[_event_dep(d) for d in deps],
            duplicates_dropped=0,
        )
        return ArrayJob(submission)

    def _too_big(self, task: Task[..., Any], index: int, size: int, array: bool) -> NoReturn:
        what = (
            f"item {index} of task {task.name} pickles"
            if array
            else (f"the arguments of task {task.name} pickle")
        )
        raise InvalidInputError(
            f"{what} to {human_size(size)}, over the limit of "
            f"{human_size(self.max_item_bytes)}. Write large data to a file on the shared "
            "filesystem and pass its path, or raise the limit with "
            "Cluster(max_item_size='1G') or SLURMSCOPE_MAX_ITEM_SIZE. Nothing was submitted."
        )

    def _check_function_size(self, task: Task[..., Any], blob: bytes) -> None:
        """The function is a payload too: what it captures (globals of its module when it is
        pickled by value, closure cells, default arguments) is written with it."""
        if len(blob) <= self.max_item_bytes:
            return
        captured = largest_captures(task.fn)
        listed = ", ".join(f"{name} ({human_size(n, exact=False)})" for name, n in captured[:3])
        raise InvalidInputError(
            f"the function of task {task.name} pickles to {human_size(len(blob))}, over the "
            f"limit of {human_size(self.max_item_bytes)}: it carries the data it captures"
            + (f", the largest being {listed}" if listed else "")
            + ". Load large data inside the task (from a file on the shared filesystem, its "
            "path passed as an argument or a module-level constant), or raise the limit with "
            "Cluster(max_item_size='1G') or SLURMSCOPE_MAX_ITEM_SIZE. Nothing was submitted."
        )

    def _check_dependency(self, dep: Dependency, size: int, array: bool) -> None:
        if dep.target is None:
            return
        if dep.target.cluster is not self:
            raise DependencyError(
                f"job {dep.target_id} belongs to {dep.target.cluster!r}, not to {self!r}; "
                "Slurm cannot express a dependency across clusters "
                f"(given by {dep.provenance.describe()})."
            )
        if dep.kind == "aftercorr":
            if not isinstance(dep.target, ArrayJob) or not array:
                raise DependencyError(
                    "aftercorr pairs the tasks of two arrays element by element: both the "
                    "dependency and the submission must be task.map() arrays "
                    f"(given by {dep.provenance.describe()})."
                )
            if len(dep.target) != size:
                raise DependencyError(
                    f"aftercorr needs arrays of equal length: array {dep.target_id} has "
                    f"{len(dep.target)} tasks and this map has {size} items "
                    f"(given by {dep.provenance.describe()})."
                )

    def _drop_satisfied(self, deps: list[Dependency], name: str) -> list[Dependency]:
        """Dependencies already decided are resolved here, before the scheduler sees them:
        Slurm forgets finished jobs, and a dependency on a forgotten job fails."""
        active = []
        for dep in deps:
            if dep.target is None:
                active.append(dep)
                continue
            outcome = dep.target._known_outcome()  # an empty array counts as succeeded
            if outcome is None or (dep.kind == "aftercorr" and outcome is False):
                # Undecided, or decided task by task: the scheduler pairs the tasks.
                active.append(dep)
                continue
            why = never_satisfied(dep.kind, outcome)
            if why is not None:
                raise DependencyError(
                    f"{dep.kind}:{dep.target_id} can never be satisfied: job {dep.target_id} "
                    f"already {'failed' if outcome is False else 'succeeded'} ({why}). Nothing "
                    f"was submitted for {name}. The dependency came from "
                    f"{dep.provenance.describe()}."
                )
            log.info(
                "slurmscope.dependency.satisfied",
                task=name,
                kind=dep.kind,
                target=dep.target_id,
                provenance=dep.provenance.describe(),
            )
        return active

    def _submit_parts(
        self,
        directory: JobDirectory,
        task: Task[..., Any],
        size: int,
        array: bool,
        deps: list[Dependency],
        resources: Resources,
        max_concurrent: int | None,
    ) -> list[Part]:
        limit = self.backend.max_array_size or size or 1
        bounds = [(o, min(limit, size - o)) for o in range(0, size, limit)] if array else [(0, 1)]
        if any(d.kind == "aftercorr" for d in deps):
            for dep in deps:
                if dep.kind == "aftercorr" and len(dep.target._part_ids()) != len(bounds):
                    raise DependencyError(
                        f"aftercorr on {dep.target_id}: its parts do not line up with this map's "
                        "(the two arrays were split at different MaxArraySize)."
                    )
        logs = directory.path / "logs"
        parts: list[Part] = []
        try:
            for number, (offset, count) in enumerate(bounds):
                command = (sys.executable, "-m", "slurmscope.worker", str(directory.path))
                if offset:
                    command += (str(offset),)
                spec = JobSpec(
                    name=resources.job_name or task.name,
                    command=command,
                    workdir=os.getcwd(),
                    stdout=str(logs / ("%A_%a.out" if array else "%j.out")),
                    stderr=str(logs / ("%A_%a.err" if array else "%j.err")),
                    resources=resources,
                    array=ArraySpec(count, max_concurrent) if array else None,
                    dependencies=clauses_for_part(deps, number),
                    environment={"SLURMSCOPE_JOB_DIR": str(directory.path)},
                )
                parts.append(Part(self.backend.submit(spec), offset, count))
        except BaseException:
            for part in parts:
                try:
                    self.backend.cancel(part.job_id)
                except Exception as exc:  # pragma: no cover - best effort
                    log.warning("slurmscope.cancel.failed", job_id=part.job_id, error=str(exc))
            raise
        return parts

    def _manifest(
        self,
        task: Task[..., Any],
        size: int,
        array: bool,
        resources: Resources,
        site: CallSite,
        max_concurrent: int | None,
    ) -> dict[str, Any]:
        """Everything the manifest says but its dependencies (written already encoded)."""
        return {
            "version": 1,
            "state": "submitting",
            "name": task.name,
            "function": f"{getattr(task.fn, '__module__', '?')}.{getattr(task.fn, '__qualname__', '?')}",
            "size": size,
            "array": array,
            "max_concurrent": max_concurrent,
            "parts": [],
            "backend": self.backend.kind,
            "cluster": self.name,
            "resources": resources.to_json(),
            "submitted_from": {
                "file": site.file,
                "line": site.line,
                "function": site.function,
                "thread": site.thread,
                "host": socket.gethostname(),
                "pid": os.getpid(),
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def _event_dep(dep: Dependency) -> dict[str, Any]:
    p = dep.provenance
    return {
        "kind": dep.kind,
        "target": dep.target_id,
        "via": p.via,
        "file": p.site.file,
        "line": p.site.line,
        "function": p.site.function,
        "depth": p.depth,
        "thread": p.site.thread,
        "detail": p.detail,
    }


def _split_call(call: Any, array: bool) -> tuple[Any, Any]:
    if not array:
        return call
    if type(call) is tuple:
        return call, {}
    if type(call) is dict:
        if not all(isinstance(k, str) for k in call):
            return (call,), {}
        return (), call
    return (call,), {}


def _extract(value: Any, found: list[tuple[Any, str]], path: str) -> Any:
    """Replace job handles in nested lists, tuples and dicts by result references."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if isinstance(value, _Handle):
        found.append((value, path))
        return value._result_ref()
    if kind is list:
        return [_extract(v, found, f"{path}[{i}]") for i, v in enumerate(value)]
    if kind is tuple:
        return tuple(_extract(v, found, f"{path}[{i}]") for i, v in enumerate(value))
    if kind is dict:
        return {k: _extract(v, found, f"{path}[{k!r}]") for k, v in value.items()}
    return value


#: Filesystems that live on one machine: job directories there are invisible to other nodes.
LOCAL_FILESYSTEMS = frozenset(
    {"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "overlay", "zfs", "f2fs", "vfat"}
)


def root_problem(root: Path, node_hosts: Iterable[str], this_host: str, mounts: str) -> str | None:
    """Why job directories under ``root`` cannot be seen by the cluster's nodes, or None.

    Nodes that are this machine see everything; other machines need a shared filesystem
    (NFS, Lustre, GPFS, BeeGFS, CephFS...), told apart by the filesystem type in
    ``/proc/mounts``.
    """
    local_names = {this_host, this_host.split(".")[0], "localhost", "::1"}
    remote = sorted(
        {
            h
            for h in node_hosts
            if h and h.split(".")[0] not in local_names and not h.startswith("127.")
        }
    )
    if not remote:
        return None
    best, fstype = "", ""
    text = str(root)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1].replace("\\040", " ")
        inside = text == point or text.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, fstype = point, fields[2]
    if fstype not in LOCAL_FILESYSTEMS:
        return None
    shown = ", ".join(remote[:5]) + (" ..." if len(remote) > 5 else "")
    return (
        f"the job directory root {root} is on a local {fstype} filesystem ({best}), but the "
        f"cluster's nodes ({shown}) are other machines and would not see it. Set "
        "Cluster(root=...) or SLURMSCOPE_ROOT to a directory on a shared filesystem (your home "
        "or project directory, usually), or pass check_shared_root=False if it is shared."
    )


def _by_value(obj: Any) -> bool:
    """Whether cloudpickle ships ``obj`` (a function or class) by value, not by reference."""
    try:
        return not cloudpickle.cloudpickle._should_pickle_by_reference(obj)
    except Exception:  # noqa: BLE001 - a private helper of cloudpickle; guess as it would
        return getattr(obj, "__module__", None) == "__main__"


def _pickle_function(task: Task[..., Any]) -> bytes:
    try:
        return cloudpickle.dumps(task.fn, protocol=5)
    except Exception as exc:
        raise InvalidInputError(
            f"the function of task {task.name} cannot be pickled ({type(exc).__name__}: {exc}). "
            "It must not capture locks, open files, sockets or similar; pass such things' "
            "names or paths and open them inside the task. Nothing was submitted."
        ) from exc


#: Item types that hold no job handle and that the standard pickler writes exactly as
#: cloudpickle does (``bool`` and the others by their exact type, not subclasses).
_SCALARS = frozenset(_PLAIN)


def _pickle_scalars(calls: Sequence[Any]) -> list[bytes] | None:
    """The items of a map whose every item is a plain scalar (``range(n)``, a list of paths
    or numbers), pickled in one pass with the C pickler; ``None`` when any item is not.

    The bytes are those of :func:`_pickle_item` (``((item,), {})``), without cloudpickle's
    per-call set-up or the search for job handles: 10,000 items take milliseconds.
    """
    scalars = _SCALARS
    for call in calls:
        if type(call) not in scalars:
            return None
    dumps, no_kwargs = pickle.dumps, {}  # one empty dict for all: the same bytes
    return [dumps(((call,), no_kwargs), 5) for call in calls]


def _pickle_item(args: Any, kwargs: Any, index: int | None) -> bytes:
    try:
        return cloudpickle.dumps((args, kwargs), protocol=5)
    except Exception as exc:
        what = "the arguments" if index is None else f"item {index}"
        raise InvalidInputError(
            f"{what} cannot be pickled ({type(exc).__name__}: {exc}). Pass plain data, or "
            "paths to what the task should open itself. Nothing was submitted."
        ) from exc


__all__ = ["Cluster", "DependencyRequest", "default_cluster", "depend", "KINDS", "ResultRef"]

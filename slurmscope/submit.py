"""The one eager submit path: every ``task(...)`` and ``task.map(items)`` comes here.

In order: gather the dependencies (scopes outermost first, then explicit ones, then job
handles found in the arguments), pickle the payload, merge and check the dependencies,
drop those already satisfied, write the job directory, submit part by part, and start
watching. It takes a function, a name and resources, not a ``Task``.
"""

from __future__ import annotations

import os
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any

from . import checkpoint, ledger, packing, scope
from .backends.submit_many import submit_all
from .bootstrap import command as worker_command
from .callsite import CallSite
from .checkpoint import DEFAULT_MAX_REQUEUES, DEFAULT_WARNING
from .dependency import VIA_DATA_ARGUMENT, Dependency, DependencyClauses, Provenance, merge
from .dependency import never_satisfied as never_satisfied_by
from .errors import DependencyError, InvalidInputError, SubmissionError
from .handle import Handle
from .job_directory import JobDirectory, PackedItems
from .jobs import ArrayJob, Job
from .log import log
from .origin import driver_info
from .packed_maps import function_key, item_checks, pack_size, slurm_kind
from .pickling import (
    by_value,
    check_function_size,
    extract,
    pickle_function,
    pickle_item,
    pickle_scalars,
    refuse_too_big,
    split_call,
)
from .runs import driver_fields
from .runtime import Runtime
from .spec import ArraySpec, JobSpec, Resources, time_to_seconds
from .submission import Part, Submission


def submit(
    runtime: Runtime,
    fn: Callable[..., Any],
    name: str,
    resources: Resources,
    calls: Sequence[Any],
    *,
    array: bool,
    max_concurrent: int | None,
    explicit: Sequence[Dependency],
    site: CallSite,
    pack: int | str | None = None,
) -> Job[Any] | ArrayJob[Any]:
    """Submit ``fn`` once (``array=False``: ``calls`` is one ``(args, kwargs)``) or as an
    array over ``calls`` (items), to the cluster of ``runtime``, and return its handle;
    ``pack``: items per array task, or ``"auto"`` (:mod:`slurmscope.packing`)."""
    if runtime.closed:
        raise SubmissionError(f"{runtime.owner!r} is closed; create a new Cluster.")
    asked_pack = packing.check(pack, len(calls), array)
    if max_concurrent is not None and (
        not isinstance(max_concurrent, int)
        or isinstance(max_concurrent, bool)
        or max_concurrent < 1
    ):
        raise InvalidInputError(
            f"max_concurrent must be a whole number of at least 1, not {max_concurrent!r}."
        )
    size = len(calls)
    limit = runtime.max_item_bytes
    # 1. Every dependency, in merge order: scopes outermost first, then explicit ones.
    gathered: list[Dependency] = []
    for frame in scope.frames_of(runtime.owner):
        gathered.extend(frame.dependencies)
    gathered.extend(explicit)
    # 2. Pickle the payload; handles inside arguments become data dependencies.
    function_blob = pickle_function(fn, name)
    check_function_size(fn, name, function_blob, limit)
    packed = pickle_scalars(calls) if array else None
    item_blobs: PackedItems | list[bytes]
    if packed is not None:  # plain scalars: no handles inside, one fast pass
        if packed.largest > limit:
            index = packed.first_over(limit)
            refuse_too_big(name, index, packed.size(index), array, limit)
        item_blobs = packed
    else:
        item_blobs = blobs = []
        for index, call in enumerate(calls):
            found: list[tuple[Handle, str]] = []
            args, kwargs = split_call(call, array)
            args = extract(args, found, "args")
            kwargs = extract(kwargs, found, "kwargs")
            for handle, path in found:
                detail = f"item {index} {path}" if array else path
                prov = Provenance(VIA_DATA_ARGUMENT, site, detail=detail)
                gathered.append(Dependency("afterok", handle.target_id, prov, handle))
            blob = pickle_item(args, kwargs, index if array else None)
            if len(blob) > limit:
                refuse_too_big(name, index, len(blob), array, limit)
            blobs.append(blob)
    # 3. Merge, check, and drop what is already satisfied.
    kept, dropped = merge(gathered)
    for dup in dropped:
        log.info(
            "slurmscope.dependency.merged",
            task=name,
            kind=dup.kind,
            target=dup.target_id,
            dropped=dup.provenance.describe(),
            kept=next(k for k in kept if k.key == dup.key).provenance.describe(),
        )
    for dep in kept:
        _check_dependency(runtime, dep, size, array)
    active = _drop_satisfied(kept, name)
    # 4. Write the job directory, then submit part by part.
    resources = checkpointing(fn, runtime.defaults.updated(resources.to_json()))
    if array and size == 0:  # nothing to run: no job directory, no scheduler call
        return _empty_map(runtime, name, kept, site)
    # A run being resumed reattaches to what its earlier attempt submitted (slurmscope.ledger).
    reused, planned = ledger.before_submit(runtime, fn, name, calls, array, kept)
    if reused is not None:
        return reused
    per_task = pack_size(runtime, fn, name, size, asked_pack, resources)
    # MaxJobCount: refused before anything is written or submitted (pack="auto" packs to fit)
    per_task = _fit_job_count(runtime, name, size, array, per_task, asked_pack == "auto")
    directory = JobDirectory.create(runtime.root, name, runtime.share_with_group)
    try:
        directory.write_payload(function_blob, item_blobs, driver_info(fn, by_value))
        rerun = ledger.reuse_results(planned, directory)  # a resumed array's tasks that succeeded
        manifest = _manifest(runtime, fn, name, size, array, resources, site, max_concurrent)
        if asked_pack is not None:
            manifest["pack"] = per_task
            manifest["pack_asked"] = asked_pack
        deps_json = [d.json_text for d in kept]
        directory.write_manifest(manifest, dependencies=deps_json)
        directory.write_item_checks(item_checks(active, per_task))
        parts = _submit_parts(
            runtime,
            directory,
            name,
            size,
            array,
            active,
            resources,
            max_concurrent,
            per_task,
            packed=asked_pack is not None,
            rerun=rerun,
        )
        if asked_pack is not None:
            runtime.packed_maps[function_key(fn, name)] = directory.path
    except BaseException:
        shutil.rmtree(directory.path, ignore_errors=True)
        raise
    manifest["parts"] = [p.__dict__ for p in parts]
    manifest["state"] = "submitted"
    directory.write_manifest(manifest, dependencies=deps_json)
    directory.register_ids(runtime.root, runtime.name, [part.job_id for part in parts])
    submission = Submission(directory, name, size, array, parts, kept)
    job_ids = [p.job_id for p in parts]
    items = size if array else None
    logged_pack = per_task if asked_pack is not None else None
    _log_submit(
        runtime, name, job_ids, items, site, kept, str(directory.path), len(dropped), logged_pack
    )
    runtime.poller.watch(submission)
    made: Job[Any] | ArrayJob[Any] = Job(submission, runtime)
    if array:
        made = ArrayJob(submission, runtime)
    ledger.after_submit(runtime, planned, made)  # the run's ledger line
    return made


def _fit_job_count(
    runtime: Runtime, name: str, size: int, array: bool, per_task: int, auto: bool
) -> int:
    """Items per task such that the controller's ``MaxJobCount`` takes the map: as given,
    or, for ``pack="auto"`` (the user allowed packing), packed to the room the controller
    has; raises :class:`ClusterFullError` (naming the limit) when it would still refuse."""
    backend = runtime.backend

    def tasks_and_arrays(per: int) -> tuple[int, int]:
        tasks = -(-size // per) if array else 1
        return tasks, (-(-tasks // (backend.max_array_size or tasks)) if array else 1)

    tasks, arrays = tasks_and_arrays(per_task)
    capacity = None
    if auto and array:
        capacity = backend.capacity_for(tasks, arrays)
        room = None if capacity is None else capacity.max_job_count - (capacity.in_system or 0)
        if capacity is not None and room is not None and 0 < room < tasks:
            fitted = -(-size // room)
            log.info(
                "slurmscope.pack.fitted",
                task=name,
                items=size,
                pack=fitted,
                was=per_task,
                max_job_count=capacity.max_job_count,
                room=room,
            )
            per_task = fitted
            tasks, arrays = tasks_and_arrays(per_task)
    backend.refuse_too_many(name, tasks, arrays, capacity)  # the capacity counted above
    return per_task


def _log_submit(
    runtime: Runtime,
    name: str,
    job_ids: list[str],
    items: int | None,
    site: CallSite,
    deps: Sequence[Dependency],
    directory: str | None,
    dropped: int,
    pack: int | None = None,
) -> None:
    """The ``slurmscope.submit`` event: what was submitted, from where, with which
    dependencies (each with its provenance), and the items per array task if packed."""
    log.info(
        "slurmscope.submit",
        task=name,
        job_ids=job_ids,
        items=items,
        backend=runtime.backend.kind,
        cluster=runtime.name,
        directory=directory,
        submitted_from=str(site),
        from_job=site.job.to_json() if site.job else None,
        dependencies=[_event_dep(d) for d in deps],
        duplicates_dropped=dropped,
        pack=pack,
    )


def _empty_map(
    runtime: Runtime, name: str, deps: list[Dependency], site: CallSite
) -> ArrayJob[Any]:
    """``map([])``: an array of no tasks, already succeeded (a satisfied dependency, no
    results). It writes no job directory of its own (``status`` has nothing to list)
    and reaches no scheduler; its directory is the root's shared, empty ``.empty``."""
    empty = JobDirectory(runtime.root / ".empty")
    empty.results_dir.mkdir(parents=True, exist_ok=True)
    submission = Submission(empty, name, 0, True, [], deps)
    _log_submit(runtime, name, [], 0, site, deps, None, 0)
    return ArrayJob(submission, runtime)


def _check_dependency(runtime: Runtime, dep: Dependency, size: int, array: bool) -> None:
    target = dep.target
    if target is None:
        return
    if target.cluster is not runtime.owner:
        raise DependencyError(
            f"job {dep.target_id} belongs to {target.cluster!r}, not to {runtime.owner!r}; "
            "Slurm cannot express a dependency across clusters "
            f"(given by {dep.provenance.describe()})."
        )
    if dep.kind == "aftercorr":
        if not target.whole_array or not array:
            raise DependencyError(
                "aftercorr pairs the tasks of two arrays element by element: both the "
                "dependency and the submission must be task.map() arrays "
                f"(given by {dep.provenance.describe()})."
            )
        if len(target.indices) != size:
            raise DependencyError(
                f"aftercorr needs arrays of equal length: array {dep.target_id} has "
                f"{len(target.indices)} tasks and this map has {size} items "
                f"(given by {dep.provenance.describe()})."
            )


def _drop_satisfied(deps: list[Dependency], name: str) -> list[Dependency]:
    """Dependencies already decided are resolved here, before the scheduler sees them:
    Slurm forgets finished jobs, and a dependency on a forgotten job fails."""
    active = []
    for dep in deps:
        if dep.target is None:
            active.append(dep)
            continue
        outcome = dep.target.known_outcome()  # an empty array counts as succeeded
        if outcome is None or (dep.kind == "aftercorr" and outcome is False):
            # Undecided, or decided task by task: the scheduler pairs the tasks.
            active.append(dep)
            continue
        why = never_satisfied_by(dep.kind, outcome)
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


def clauses_for_part(
    dependencies: Sequence[Dependency], part: int, pack: int = 1
) -> DependencyClauses:
    """The dependency clauses of one part of a (possibly split) submission of ``pack``
    items per array task.

    Each target knows its scheduler ids; an ``aftercorr`` on a split array depends part by
    part, since ``aftercorr`` pairs task ``i`` with task ``i`` of the same Slurm array.
    Where a pack holds several items, the scheduler's tasks no longer stand for items:
    ``aftercorr`` with a packed map on either side, and ``afterok``/``afternotok`` on one
    item of a packed map, become ``afterany`` on the tasks holding the upstream items, and
    each item checks its upstream item's outcome before it runs (:func:`item_checks`).
    """
    grouped: dict[str, list[str]] = {}
    for dep in dependencies:
        kind = slurm_kind(dep, pack)
        ids = grouped.setdefault(kind, [])
        if dep.kind == "singleton":
            continue
        target = dep.target
        parts = target.submission.parts
        sub = target.submission
        if dep.kind in ("afterok", "afterany", "after") and target.whole_array:
            # Parts known to have succeeded (an earlier array's, reused by a resumed run):
            # satisfied, and the scheduler may have forgotten them.
            parts = tuple(p for p in parts if not _succeeded(sub, p.offset, p.count))
        if dep.kind == "aftercorr":
            if kind == "afterany":
                ids.extend(p.job_id for p in parts)
            else:
                ids.append(parts[part].job_id)
        elif not target.whole_array:
            ids.append(target.target_id)
        elif dep.kind == "after":
            # A whole array, task by task: Slurm (22.05) never releases after:<array> once
            # the array was cancelled while pending, though "after" means "started or
            # cancelled"; it does release after:<array>_<i>.
            ids.extend(
                f"{p.job_id}_{t}"
                for p in parts
                for t in range(p.tasks)
                # not a task whose items an earlier attempt ran (ledger.Rerun)
                if not _succeeded(sub, p.offset + t * p.pack, min(p.pack, p.count - t * p.pack))
            )
        else:
            ids.extend(p.job_id for p in parts)
    return tuple(
        (kind, tuple(dict.fromkeys(ids)))
        for kind, ids in grouped.items()
        if ids or kind == "singleton"
    )


def _succeeded(submission: Submission, offset: int, count: int) -> bool:
    """Whether tasks ``offset .. offset+count-1`` are known to have succeeded."""
    states = submission.states[offset : offset + count]
    return all(s is not None and s.succeeded for s in states)


def _submit_parts(
    runtime: Runtime,
    directory: JobDirectory,
    name: str,
    size: int,
    array: bool,
    deps: list[Dependency],
    resources: Resources,
    max_concurrent: int | None,
    pack: int = 1,
    *,
    packed: bool = False,
    rerun: ledger.Rerun | None = None,
) -> list[Part]:
    backend = runtime.backend
    limit = (backend.max_array_size or size or 1) * pack  # items per part
    bounds = [(o, min(limit, size - o)) for o in range(0, size, limit)] if array else [(0, 1)]
    for dep in deps:
        if slurm_kind(dep, pack) != "aftercorr":
            continue
        if len(dep.target.submission.parts) != len(bounds):
            raise DependencyError(
                f"aftercorr on {dep.target_id}: its parts do not line up with this map's "
                "(the two arrays were split at different MaxArraySize)."
            )
    logs = directory.path / "logs"
    parts: list[Part | None] = []
    specs: list[JobSpec] = []
    for number, (offset, count) in enumerate(bounds):
        only = None if rerun is None else rerun.indices_in(offset, count, pack)
        kept = rerun.earlier_part(offset, count) if rerun and only == () else None
        if kept is not None:  # every task of it succeeded in the earlier array
            parts.append(kept)
            continue
        command = worker_command(str(directory.path), offset)
        specs.append(
            JobSpec(
                name=resources.job_name or name,
                command=command,
                workdir=os.getcwd(),
                stdout=str(logs / ("%A_%a.out" if array else "%j.out")),
                stderr=str(logs / ("%A_%a.err" if array else "%j.err")),
                resources=resources,
                array=ArraySpec(-(-count // pack), max_concurrent, only) if array else None,
                dependencies=clauses_for_part(deps, number, pack),
                environment=_environment(directory, resources, backend.kind)
                | ({packing.ENVIRONMENT: f"{pack}:{size}"} if packed else {}),
            )
        )
        parts.append(None)  # submitted below, in this place
    # In order, or several at once where the backend gains by it; all or none (a part kept
    # from an earlier run is not this submission's to cancel).
    job_ids = iter(submit_all(backend, specs))
    return [
        part if part is not None else Part(next(job_ids), offset, count, pack)
        for part, (offset, count) in zip(parts, bounds, strict=True)
    ]


def checkpointing(fn: Callable[..., Any], resources: Resources) -> Resources:
    """``resources`` with checkpointing on where the task asks for it: an object with a
    ``checkpoint`` method (submitit's form), or ``max_requeues`` given alone."""
    wants = callable(getattr(fn, "checkpoint", None)) or resources.max_requeues is not None
    if wants and resources.checkpoint_warning is None:
        warning = DEFAULT_WARNING
        if resources.time and time_to_seconds(resources.time) <= 2 * warning:
            # a short limit (a test, a quick partition): warn at half of it, not before it
            warning = max(1, time_to_seconds(resources.time) // 2)
        return resources.updated({"checkpoint_warning": warning})
    return resources


def _environment(directory: JobDirectory, resources: Resources, backend: str) -> dict[str, str]:
    env = {"SLURMSCOPE_JOB_DIR": str(directory.path)}
    env.update(ledger.TASK_ENVIRONMENT)  # a task is not its driver's run
    if resources.checkpoint_warning is not None:
        limit = DEFAULT_MAX_REQUEUES if resources.max_requeues is None else resources.max_requeues
        env[checkpoint.ENVIRONMENT] = f"{limit}:{backend}"
    return env


def _manifest(
    runtime: Runtime,
    fn: Callable[..., Any],
    name: str,
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
        "name": name,
        "function": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}",
        "size": size,
        "array": array,
        "max_concurrent": max_concurrent,
        "parts": [],
        "backend": runtime.backend.kind,
        "cluster": runtime.name,
        "run": ledger.run_id(runtime),
        "resources": resources.to_json(),
        "submitted_from": {**site.to_json(), "host": socket.gethostname(), "pid": os.getpid()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **driver_fields(),  # the driver job (`slurmscope run`) this comes from, if any
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
        "job": p.site.job.to_json() if p.site.job else None,
    }

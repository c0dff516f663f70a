"""The pyslurm backend: Slurm's C API in-process, through the pyslurm bindings.

One RPC per submitted array instead of a fork of ``sbatch``, and one RPC
(``pyslurm.Jobs.load()``) for the states of every unfinished job. It submits the very batch
script the sbatch backend submits (:func:`~slurmscope.backends.sbatch.batch_script`), built
into a ``pyslurm.JobSubmitDescription`` from the same backend-neutral
:class:`~slurmscope.spec.JobSpec`.

**One thread.** pyslurm holds the GIL during every RPC and libslurm keeps process-wide state
(its configuration, its connection settings, ``errno``). So every pyslurm call of a backend,
the ``import pyslurm`` included, runs on one thread the backend owns
(``slurmscope-pyslurm``): driver threads put a callable on its queue and wait for its
future. Many threads may submit at once; their RPCs run one after the other, each built
only from its own spec. Retries of transient controller errors sleep on the caller's
thread, not on the RPC thread, so one caller backing off does not hold up the others.

**What pyslurm is used for, and its quirks handled here** (pyslurm 25.11):

- ``JobSubmitDescription(...).submit()`` returns the job id. Dependencies are given as
  Slurm's string, never as a dict: a dict is modified in place by ``submit()`` (its
  ``satisfy`` key is popped), so a retried submission would lose it. A new description is
  built for every attempt. ``time_limit`` goes as whole minutes (an int) when the spec
  holds plain minutes: pyslurm hands a digit *string* to a C integer and fails.
- ``Jobs.load()`` answers every job of the cluster in one RPC. ``Job.array_task_id`` reads
  back as ``None`` for task 0 (pyslurm maps the value 0 to "unset"), the same as for the
  one record that holds an array's still-pending tasks; the latter is told apart by its
  ``array_tasks_waiting`` range. ``Job.load(array_id)`` returns only the first record of
  an array, so it is never used for states.
- ``Job(id).cancel()`` cancels a job or a whole array. It takes an integer id only: a
  started array task can be reached by its own id, but the still-pending tasks of an array
  have none. So cancelling *one task* of an array goes through ``scancel JOBID_INDEX``.
  pyslurm judges the kill RPC by the thread's ``errno``, which libslurm leaves set after
  calls that succeed: an error it raises is believed only if the job has not ended.
- ``pyslurm.Nodes.load()`` gives the nodes' hostnames, for the check that the job
  directory root is shared with them (as the sbatch backend does with ``sinfo``).
- ``pyslurm.Partitions.load()`` and ``pyslurm.Nodes.load()`` are read once, on the first
  submission, for the partitions' limits (``Partition.max_time`` in minutes,
  ``max_cpus_per_node``, ``max_memory_per_node`` in MiB, ``is_default``; ``Node.partitions``,
  ``effective_cpus``, ``real_memory``): a request that can never run is refused at submit.
  pyslurm gives ``"UNLIMITED"`` (a string) or ``None`` where there is no limit.
- ``pyslurm.slurmctld.Config.load()`` is read once, for ``MaxArraySize``
  (``Config.max_array_size``), the cluster's name and the controller's Slurm version.
- ``pyslurm.RPCError`` carries ``errno`` and ``msg`` (``slurm_strerror``); they become
  :class:`~slurmscope.errors.SubmissionError` with Slurm's message. Transient ones
  (controller unreachable, busy, timed out) are retried with backoff.

**Configuration.** ``import pyslurm`` initialises libslurm from ``$SLURM_CONF`` (or
``slurm_conf=``, which is put there before the import), once per process. A file it cannot
read makes libslurm retry for 60 s and then end the whole process, so the path is checked
first and a bad one raises :class:`~slurmscope.errors.BackendUnavailableError` at once,
with the reason libslurm would have given (``cannot stat file ...``).

**Versions.** pyslurm X.Y builds only against Slurm X.Y. Installed against another Slurm
it fails at ``import pyslurm`` (a missing or different ``libslurmfull.so``: "undefined
symbol", "cannot open shared object file"), or its first RPC fails with "Incompatible
versions of client and server code"; a pyslurm newer than the controller cannot talk to
it. Each of these raises :class:`~slurmscope.errors.BackendUnavailableError` naming the
fallback, ``Cluster('sbatch')``. Without pyslurm installed slurmscope loses nothing but
this backend (``pip install 'slurmscope[pyslurm]'``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from queue import SimpleQueue
from types import ModuleType
from typing import Any, TypeVar

from .. import limits
from ..dependency import render
from ..errors import BackendUnavailableError, SchedulerError, SubmissionError
from ..log import log
from ..spec import JobSpec, Resources
from ..states import TERMINAL_STATES, StateMap, TaskState
from ._slurm import (
    FULL_RANGES,
    RLIMITS,
    TRANSIENT,
    expand_array_range,
    local_node_names,
    partial_output,
    propagated_limits,
    slurm_conf_problem,
    submit_environment,
)
from .base import Backend
from .sbatch import batch_script

T = TypeVar("T")

FALLBACK = "Cluster('sbatch')"
INSTALL = "pip install 'slurmscope[pyslurm]'"

# Slurm's error numbers (slurm/slurm_errno.h); the same in every release since 20.02.
EAGAIN = 11
SLURM_PROTOCOL_VERSION_ERROR = 1005
SLURM_PROTOCOL_IO_STREAM_VERSION_ERROR = 1006
ESLURM_INVALID_PARTITION_NAME = 2000
ESLURM_ERROR_ON_DESC_TO_RECORD_COPY = 2007  # "MaxJobCount limit reached" since 23.02
ESLURM_INVALID_JOB_ID = 2017
ESLURM_ALREADY_DONE = 2021
ESLURM_TRANSITION_STATE_NO_UPDATE = 2020
ESLURM_IN_STANDBY_MODE = 2027
ESLURM_DEPENDENCY = 2038
ESLURM_INVALID_ARRAY = 2081
ESLURM_IN_STANDBY_USE_BACKUP = 2131

#: Errors of a controller that is busy, restarting or out of reach: retried with backoff
#: (slurm/slurm_errno.h of Slurm 25.11).
TRANSIENT_ERRNOS = frozenset(
    {
        EAGAIN,
        *range(1001, 1005),  # SLURM_COMMUNICATIONS_{CONNECTION,SEND,RECEIVE,SHUTDOWN}_ERROR
        *range(1800, 1806),  # SLURMCTLD_COMMUNICATIONS_*, _BACKOFF, _HARD_DROP (rate limits)
        ESLURM_ERROR_ON_DESC_TO_RECORD_COPY,
        ESLURM_TRANSITION_STATE_NO_UPDATE,
        ESLURM_IN_STANDBY_MODE,
        ESLURM_IN_STANDBY_USE_BACKUP,
        5004,  # SLURM_PROTOCOL_SOCKET_IMPL_TIMEOUT
        5005,  # SLURM_PROTOCOL_SOCKET_ZERO_BYTES_SENT
    }
)
#: The client's libslurm and the controller cannot talk to each other.
VERSION_ERRNOS = frozenset({SLURM_PROTOCOL_VERSION_ERROR, SLURM_PROTOCOL_IO_STREAM_VERSION_ERROR})

_HINTS = {
    ESLURM_INVALID_PARTITION_NAME: "check partition= (sinfo lists the partitions)",
    ESLURM_DEPENDENCY: "a dependency names a job Slurm does not accept",
    ESLURM_INVALID_ARRAY: "the array is larger than MaxArraySize or malformed",
}

#: sbatch flags an ``extra=[...]`` list may hold with this backend, and the
#: ``JobSubmitDescription`` field each one sets (``None``: a flag without a value).
EXTRA_FLAGS: dict[str, tuple[str, Callable[[str | None], Any]]] = {
    "--nice": ("nice", lambda v: int(v or 0)),
    "--comment": ("comment", str),
    "--exclusive": ("resource_sharing", lambda v: v or "no"),
    "--nodelist": ("required_nodes", str),
    "-w": ("required_nodes", str),
    "--exclude": ("excluded_nodes", str),
    "-x": ("excluded_nodes", str),
    "--reservation": ("reservations", str),
    "--ntasks": ("ntasks", int),
    "-n": ("ntasks", int),
    "--nodes": ("nodes", str),
    "-N": ("nodes", str),
    "--mem-per-cpu": ("memory_per_cpu", str),
    "--licenses": ("licenses", str),
    "-L": ("licenses", str),
    "--requeue": ("is_requeueable", lambda v: True),
    "--no-requeue": ("is_requeueable", lambda v: False),
    "--hold": ("priority", lambda v: 0),
    "--wckey": ("wckey", str),
    "--profile": ("profile_types", str),
}


# -- finding pyslurm ------------------------------------------------------------------------
def _mismatch(detail: str) -> str:
    return (
        f"pyslurm is installed but does not match this cluster's Slurm ({detail}). pyslurm "
        "X.Y builds only against Slurm X.Y: install the pyslurm release of your Slurm, or use "
        f"the Slurm command line instead: {FALLBACK} (or SLURMSCOPE_BACKEND=sbatch)."
    )


def _bad_conf(problem: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"pyslurm cannot read Slurm's configuration: {problem}. Point slurm_conf= (or "
        "SLURM_CONF) at the cluster's slurm.conf, or leave both unset to use Slurm's "
        "default. (libslurm would retry for 60 s, then end this process.)"
    )


#: The SLURM_CONF each loaded pyslurm module (by id) initialised libslurm with: libslurm reads
#: it once per process, at ``import pyslurm``, and keeps that configuration for good.
_loaded_conf: dict[int, str] = {}


def _use_conf(slurm_conf: str | None) -> None:
    """Make libslurm read ``slurm_conf`` (``None``: ``$SLURM_CONF``), or say why it cannot:
    where pyslurm is loaded already with another configuration, a pyslurm cluster would
    silently talk to that other cluster."""
    module = sys.modules.get("pyslurm")
    if module is None:
        if slurm_conf is not None:
            os.environ["SLURM_CONF"] = slurm_conf
        return
    wanted = slurm_conf if slurm_conf is not None else os.environ.get("SLURM_CONF", "")
    loaded = _loaded_conf.get(id(module))
    if loaded is None or os.path.realpath(loaded or ".") == os.path.realpath(wanted or "."):
        return
    raise BackendUnavailableError(
        f"pyslurm is loaded in this process already, with SLURM_CONF={loaded or '(unset)'}, and "
        "libslurm keeps the configuration it first read for the life of the process: "
        f"{'slurm_conf' if slurm_conf is not None else 'SLURM_CONF'}={wanted or '(unset)'} "
        "cannot take effect. Use one configuration per process with pyslurm, or "
        f"{FALLBACK} (it takes slurm_conf= per cluster)."
    )


#: What a process that ``import pyslurm`` would kill prints, kept per configuration: the
#: import runs libslurm's ``slurm_init()``, which ends the whole process (libslurm's
#: ``fatal()``) where it finds no usable slurm.conf. So the first import is tried in a
#: child process; only when that one survives is pyslurm imported here.
_import_checked: dict[tuple[str | None, tuple[str, ...]], str | None] = {}
_import_lock = threading.Lock()

_CHILD = """
import sys
try:
    import pyslurm
except BaseException as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(3)
"""


def _search_path() -> list[str]:
    return [p or os.getcwd() for p in sys.path]


def _import_in_child(timeout: float) -> None:
    """Raise ``BackendUnavailableError`` if ``import pyslurm`` would end this process."""
    if "pyslurm" in sys.modules:
        return  # imported (and libslurm initialised) already
    problem = slurm_conf_problem()  # libslurm would retry 60 s, then end the process
    if problem:
        raise _bad_conf(problem)
    key = (os.environ.get("SLURM_CONF"), tuple(_search_path()))
    with _import_lock:
        if key not in _import_checked:
            env = {**os.environ, **FULL_RANGES, "PYTHONPATH": os.pathsep.join(key[1])}
            try:
                proc = subprocess.run(
                    [sys.executable, "-c", _CHILD],
                    capture_output=True,
                    text=True,
                    env=env,
                    timeout=timeout,
                    check=False,
                )
            except subprocess.TimeoutExpired:
                _import_checked[key] = (
                    f"import pyslurm did not finish within {timeout} s in a child process"
                )
                raise BackendUnavailableError(
                    f"import pyslurm did not finish within {timeout} s (tried in a child "
                    "process); check SLURM_CONF and that slurmctld answers."
                ) from None
            if proc.returncode == 0:
                _import_checked[key] = None
            elif proc.returncode == 3 or "No module named 'pyslurm'" in proc.stderr:
                _import_checked[key] = ""  # an ordinary import error: _import explains it
            else:
                lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
                _import_checked[key] = " / ".join(lines[-3:]) or f"exit code {proc.returncode}"
        why = _import_checked[key]
    if why:
        raise BackendUnavailableError(
            f"import pyslurm ends the process here (libslurm's slurm_init() failed: {why}; "
            "tried in a child process, so this one lives on). Point SLURM_CONF at the "
            f"cluster's slurm.conf, or use {FALLBACK}."
        )


def _import() -> ModuleType:
    """``import pyslurm``, with errors that say what to do.

    The import initialises libslurm from ``$SLURM_CONF``; a file it cannot read makes
    libslurm retry for 60 s and then end the process (``fatal()``), so it is checked first.
    """
    if "pyslurm" not in sys.modules:
        problem = slurm_conf_problem()
        if problem:
            raise _bad_conf(problem)
    conf = os.environ.get("SLURM_CONF", "")
    try:
        import pyslurm
    except ModuleNotFoundError as exc:
        if exc.name != "pyslurm":
            raise BackendUnavailableError(_mismatch(f"import pyslurm failed: {exc}")) from exc
        raise BackendUnavailableError(
            f"pyslurm is not installed: {INSTALL} (it must match your Slurm release), or use "
            f"{FALLBACK}."
        ) from exc
    except (ImportError, OSError) as exc:  # a libslurm of another release: undefined symbols
        raise BackendUnavailableError(_mismatch(f"import pyslurm failed: {exc}")) from exc
    _loaded_conf.setdefault(id(pyslurm), conf)
    return pyslurm


def _major_minor(version: str | None) -> tuple[int, int] | None:
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def _probe(
    slurm_conf: str | None = None, timeout: float = 60.0
) -> tuple[ModuleType, dict[str, Any]]:
    """Import pyslurm, ping the controller and read its configuration (one thread only)."""
    _use_conf(slurm_conf)
    _import_in_child(timeout)
    pyslurm = _import()
    try:
        pyslurm.slurmctld.ping(0)
        config = pyslurm.slurmctld.Config.load()
    except pyslurm.RPCError as exc:
        if exc.errno in VERSION_ERRNOS:
            raise BackendUnavailableError(
                _mismatch(f"pyslurm {pyslurm.__version__}: {exc.msg}")
            ) from exc
        hint = ""
        if exc.errno in (1802, 5005):  # the controller took the connection, then hung up
            hint = (
                f" A controller of an older Slurm than pyslurm {pyslurm.__version__} was built "
                "for does this too (it refuses the newer protocol): "
                + _mismatch("check `scontrol show config | grep SLURM_VERSION`")
            )
        raise BackendUnavailableError(
            f"pyslurm cannot reach the Slurm controller: {exc.msg} (errno {exc.errno}). "
            "Check that slurmctld runs and SLURM_CONF points at its slurm.conf." + hint
        ) from exc
    ours, theirs = _major_minor(pyslurm.__version__), _major_minor(config.version)
    if ours is not None and theirs is not None and ours > theirs:
        raise BackendUnavailableError(
            _mismatch(
                f"pyslurm {pyslurm.__version__} is newer than the controller's Slurm "
                f"{config.version}, and Slurm refuses clients newer than its controller"
            )
        )
    mpi_params = getattr(config, "mpi_parameters", None) or {}
    return pyslurm, {
        "hydra_bootstrap": "disable_slurm_hydra_bootstrap" not in mpi_params,
        "rlimits": propagated_limits(
            getattr(config, "propagate_resource_limits", None) or (),
            getattr(config, "propagate_resource_limits_except", None) or (),
        ),
        "cluster_name": config.cluster_name or "slurm",
        "max_array_size": config.max_array_size,
        "slurm_version": config.version,
        "pyslurm_version": pyslurm.__version__,
    }


def reachable(timeout: float = 10.0) -> tuple[bool, str]:
    """Whether pyslurm imports, matches the cluster's Slurm, and the controller answers.

    Never ends the calling process: the first import is tried in a child process.
    """
    rpc = _RPCThread("slurmscope-pyslurm-probe")
    try:
        _, info = rpc.run(_probe, None, timeout, timeout=timeout)
    except BackendUnavailableError as exc:
        log.info("slurmscope.pyslurm.unusable", reason=str(exc))
        return False, str(exc)
    except FutureTimeout:
        return False, f"the Slurm controller did not answer pyslurm within {timeout} s"
    finally:
        rpc.close(wait=False)
    return True, (
        f"pyslurm {info['pyslurm_version']} imports and the controller answers "
        f"(Slurm {info['slurm_version']}, cluster {info['cluster_name']})"
    )


#: The options ``Cluster('pyslurm', ...)`` passes to this backend.
OPTIONS: tuple[str, ...] = ("retries", "retry_delay", "slurm_conf")


def create(root: Path, **options: Any) -> PyslurmBackend:
    """The pyslurm backend (``root``, the cluster's job root, is not its concern)."""
    return PyslurmBackend(**options)


# -- the one thread -------------------------------------------------------------------------
class _RPCThread:
    """The one thread that makes every pyslurm call: a queue of callables and futures.

    Started on first use; :meth:`close` stops it, and a later call starts a new one.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._queue: SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = SimpleQueue()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def run(self, fn: Callable[..., T], *args: Any, timeout: float | None = None) -> T:
        """Run ``fn(*args)`` on the thread and return its result (or raise its error)."""
        if threading.current_thread() is self._thread:
            return fn(*args)
        future: Future[T] = Future()
        with self._lock:
            if self._thread is None:
                self._queue = SimpleQueue()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._queue,), name=self.name, daemon=True
                )
                self._thread.start()
            self._queue.put((lambda: fn(*args), future))
        return future.result(timeout=timeout)

    @staticmethod
    def _loop(queue: SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None]) -> None:
        while (item := queue.get()) is not None:
            call, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as exc:  # handed to the caller
                future.set_exception(exc)

    def close(self, wait: bool = True) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            if thread is not None:
                self._queue.put(None)
        if thread is not None and wait and thread is not threading.current_thread():
            thread.join(timeout=60)


# -- from a spec to a JobSubmitDescription ---------------------------------------------------
def _minutes(time: str | None) -> int | str | None:
    """pyslurm takes a Slurm time string, but plain minutes only as an int."""
    if time is None:
        return None
    return int(time) if time.isdigit() else time


#: SLURM_BITSTR_LEN as the user's environment had it when slurmscope was imported.
_USER_BITSTR_LEN = os.environ.get("SLURM_BITSTR_LEN")


def job_environment(
    spec: JobSpec, rlimits: Sequence[str] = RLIMITS, hydra_bootstrap: bool = True
) -> dict[str, str]:
    """The environment a job gets from ``sbatch --export=ALL``: the submitting process's,
    the variables sbatch adds (:func:`~slurmscope.backends._slurm.submit_environment`),
    then the spec's own."""
    env = dict(os.environ)
    # SLURM_BITSTR_LEN is set around each load on the RPC thread (_load_jobs): a copy taken
    # meanwhile must not hand it to the job. The user's own value is kept.
    if _USER_BITSTR_LEN is None:
        env.pop("SLURM_BITSTR_LEN", None)
    else:
        env["SLURM_BITSTR_LEN"] = _USER_BITSTR_LEN
    added = submit_environment(rlimits, gpus=spec.resources.gpus, hydra_bootstrap=hydra_bootstrap)
    return {**env, **added, **spec.environment}


def description_fields(
    spec: JobSpec, rlimits: Sequence[str] = RLIMITS, hydra_bootstrap: bool = True
) -> dict[str, Any]:
    """The ``pyslurm.JobSubmitDescription`` fields for ``spec``: plain values only.

    The environment is given as a dict (:func:`job_environment`), the way ``sbatch
    --export=ALL`` passes it; a dict makes pyslurm add only the job's own variables,
    without ``SLURM_GET_USER_ENV``.
    """
    r = spec.resources
    fields: dict[str, Any] = {
        "name": r.job_name or spec.name,
        "script": batch_script(spec),
        "standard_output": spec.stdout,
        "standard_error": spec.stderr,
        "working_directory": spec.workdir,
        "environment": job_environment(spec, rlimits, hydra_bootstrap),
        # Left unset, pyslurm sends NO_VAL, which slurmctld reads as every profile on
        # (SLURM_PROFILE=Energy,Lustre,Network,Task): where acct_gather_profile is
        # configured, every job would be profiled. sbatch sends "not set"; "none" is the
        # nearest pyslurm can say (--profile in extra= overrides it).
        "profile_types": "none",
        "kill_on_invalid_dependency": spec.kill_on_invalid_dep,
    }
    if spec.array is not None:
        fields["array"] = spec.array.render()
    if spec.dependencies:
        fields["dependencies"] = render(spec.dependencies)  # a str: a dict is mutated
    for name, value in (
        ("time_limit", _minutes(r.time)),
        ("memory_per_node", r.mem),
        ("cpus_per_task", r.cpus_per_task),
        ("gpus", r.gpus),
        ("partitions", r.partition),
        ("account", r.account),
        ("qos", r.qos),
        ("constraints", r.constraint),
    ):
        if value is not None:
            fields[name] = value
    for flag in r.extra:
        name, sep, value = flag.partition("=")
        if name not in EXTRA_FLAGS:
            raise SubmissionError(
                f"the pyslurm backend cannot pass the sbatch flag {flag!r}: it knows "
                f"{', '.join(sorted(EXTRA_FLAGS))}. Use {FALLBACK} for other flags."
            )
        attribute, convert = EXTRA_FLAGS[name]
        try:
            fields[attribute] = convert(value if sep else None)
        except ValueError as exc:
            raise SubmissionError(f"invalid value in the sbatch flag {flag!r}: {exc}") from exc
    return fields


def _dependency_text(deps: dict[str, Any] | None) -> str:
    """``Job.dependencies`` (a dict) back to Slurm's syntax, e.g. ``afterok:12_*(unfulfilled)``.

    The order of the kinds is pyslurm's (after, afterany, ..., afterok), not the order they
    were given in: pyslurm hands out a dict.
    """
    if not deps:
        return ""
    clauses = []
    for kind, ids in deps.items():
        if kind == "satisfy":
            continue
        if kind == "singleton":
            if ids:
                clauses.append("singleton")
            continue
        if ids:
            clauses.append(":".join([kind, *map(str, ids)]))
    joiner = "?" if deps.get("satisfy") == "any" else ","
    return joiner.join(clauses)


class PyslurmBackend(Backend):
    """Talks to Slurm through pyslurm's C bindings, on one dedicated thread."""

    kind = "pyslurm"
    poll_interval = (0.25, 5.0)

    def __init__(
        self, *, retries: int = 6, retry_delay: float = 0.5, slurm_conf: str | None = None
    ) -> None:
        """``slurm_conf`` points at another cluster's slurm.conf (default: ``$SLURM_CONF``
        or Slurm's own default). libslurm reads it once per process, at ``import pyslurm``:
        every pyslurm cluster of a process must use the same one."""
        problem = slurm_conf_problem(slurm_conf)
        if problem:
            raise _bad_conf(problem)
        self.retries = retries
        self.retry_delay = retry_delay
        self.calls: dict[str, int] = {"submit": 0, "load": 0, "cancel": 0}
        self._rpc = _RPCThread("slurmscope-pyslurm")
        self._partitions: dict[str, limits.PartitionLimits] | None = None
        self._limits_lock = threading.Lock()
        try:
            self._pyslurm, self._info = self._rpc.run(_probe, slurm_conf)
        except BaseException:
            self._rpc.close()
            raise
        self.cluster_name = self._info["cluster_name"]
        self.pyslurm_version = self._info["pyslurm_version"]
        self.slurm_version = self._info["slurm_version"]
        log.info(
            "slurmscope.pyslurm.ready",
            pyslurm=self.pyslurm_version,
            slurm=self.slurm_version,
            cluster=self.cluster_name,
        )

    @property
    def rpc_thread(self) -> threading.Thread | None:
        """The thread every pyslurm call of this backend runs on (``None`` until first use)."""
        return self._rpc.thread

    @property
    def max_array_size(self) -> int | None:
        return self._info["max_array_size"] or 1001

    def close(self) -> None:
        """Stop the RPC thread; a later call (a handle still waiting) starts a new one."""
        self._rpc.close()

    def request_limits(self, resources: Resources) -> list[limits.PartitionLimits] | None:
        """From ``pyslurm.Partitions.load()`` and ``pyslurm.Nodes.load()``, read once."""
        with self._limits_lock:
            if self._partitions is None:
                try:
                    self._partitions = self._call("load", self._load_limits)
                except self._pyslurm.RPCError as exc:  # Slurm judges alone, as before
                    log.info("slurmscope.limits.unknown", backend=self.kind, error=str(exc.msg))
                    self._partitions = {}
        return limits.for_request(resources, self._partitions)

    # -- the seam -----------------------------------------------------------------------------
    def submit(self, spec: JobSpec) -> str:
        self.refuse_impossible(spec)
        fields = description_fields(spec, self._info["rlimits"], self._info["hydra_bootstrap"])
        if "nodes" not in fields:
            # Without nodes, JobSubmitDescription pins the job to exactly one node (min =
            # max = 1), where sbatch leaves the count to Slurm: give Slurm the same room.
            known = self.request_limits(spec.resources) or []
            most = max((part.nodes for part in known), default=1)
            if most > 1:
                fields["nodes"] = f"1-{most}"
        pyslurm = self._pyslurm

        def submit() -> int:
            # A new description every attempt, and dependencies as a string: pyslurm
            # modifies a dependency dict in place.
            return pyslurm.JobSubmitDescription(**fields).submit()

        try:
            job_id = self._call("submit", submit)
        except pyslurm.RPCError as exc:
            raise self._error("Slurm refused the job", exc) from exc
        except (ValueError, TypeError) as exc:  # pyslurm's own checks, before any RPC
            raise SubmissionError(f"pyslurm refused the job description: {exc}") from exc
        return str(job_id)

    def states(self, job_ids: Sequence[str]) -> StateMap:
        if not job_ids:
            return {}
        try:
            records = self._call("load", self._load_all, retries=0)  # the poller backs off
        except self._pyslurm.RPCError as exc:
            raise self._error("pyslurm.Jobs.load() failed", exc, SchedulerError) from exc
        wanted = set(job_ids)
        answer: dict[str, dict[int, TaskState]] = {}
        for job_id, indices, state in records:
            if job_id in wanted:
                tasks = answer.setdefault(job_id, {})
                for index in indices:
                    tasks[index] = state
        return answer

    def cancel(self, job_id: str, index: int | None = None) -> None:
        if index is not None:
            # pyslurm.Job takes an integer id, and pending array tasks have none of their
            # own. One task goes to scancel as JOBID_INDEX.
            self._scancel(f"{job_id}_{index}")
            return
        pyslurm = self._pyslurm
        try:
            self._call("cancel", self._cancel_job, int(job_id))
        except pyslurm.RPCError as exc:
            if exc.errno in (ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID):
                return
            raise self._error(f"cancelling job {job_id} failed", exc, SchedulerError) from exc

    def _cancel_job(self, job_id: int) -> None:
        """``Job(id).cancel()``, on the RPC thread, believed only when the job says so.

        pyslurm decides whether the kill RPC failed from the thread's ``errno`` (not from
        the RPC's return code), and libslurm does not clear ``errno`` on success: a cancel
        that worked can raise with whatever an earlier call (or a socket call inside this
        one) left there. So a raised error counts only if the job has not in fact ended or
        been cancelled.
        """
        pyslurm = self._pyslurm
        try:
            pyslurm.Job(job_id).cancel()
        except pyslurm.RPCError as exc:
            states = [
                job.state
                for job in self._load_jobs().values()
                if job.id == job_id or job.array_id == job_id
            ]
            if all(state in TERMINAL_STATES for state in states):
                log.info(
                    "slurmscope.pyslurm.stale_errno",
                    job_id=job_id,
                    errno=exc.errno,
                    error=exc.msg,
                    states=sorted(set(states)),
                )
                return
            raise

    def node_hosts(self) -> list[str]:
        """The cluster's nodes (``pyslurm.Nodes.load()``) for the check that the root is
        shared: a node whose ``NodeAddr`` is this machine counts as this machine."""
        pyslurm = self._pyslurm
        try:
            nodes = self._call(
                "load",
                lambda: [(n.hostname or n.name, n.address) for n in pyslurm.Nodes.load().values()],
            )
        except pyslurm.RPCError:
            return []
        return local_node_names(nodes)

    # -- introspection for tests and the CLI ------------------------------------------------
    def recorded_dependencies(self, job_id: str) -> str:
        """The dependencies Slurm holds for a job, in Slurm's syntax (from ``Job.load``)."""
        pyslurm = self._pyslurm
        try:
            deps = self._call("load", lambda: pyslurm.Job.load(int(job_id)).dependencies)
        except pyslurm.RPCError as exc:
            raise self._error(f"pyslurm.Job.load({job_id}) failed", exc, SchedulerError) from exc
        return _dependency_text(deps)

    # -- on the RPC thread --------------------------------------------------------------------
    def _load_jobs(self) -> Any:
        """``Jobs.load()`` with array task ranges in full (``SLURM_BITSTR_LEN=0``), not cut
        at 64 characters with "...". libslurm reads the variable once, at the first range it
        formats, which happens inside some load; so it is set for every load, and only then:
        pyslurm copies every ``SLURM_*`` variable of the process into the jobs it submits,
        which must not get it."""
        saved = {name: os.environ.get(name) for name in FULL_RANGES}
        os.environ.update(FULL_RANGES)
        try:
            return self._pyslurm.Jobs.load()
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _load_all(self) -> list[tuple[str, list[int], TaskState]]:
        """Every job record as (job id as submitted, task indices, state)."""
        out = []
        for job in self._load_jobs().values():
            state = TaskState(job.state, job.state_reason, _exit_code(job))
            if job.array_id is None:  # a single job
                out.append((str(job.id), [0], state))
                continue
            if job.array_task_id is not None:
                indices = [job.array_task_id]
            elif job.array_tasks_waiting:  # the record of the still-pending tasks
                indices = expand_array_range(job.array_tasks_waiting)
            else:  # task 0: pyslurm reads the index 0 back as None
                indices = [0]
            out.append((str(job.array_id), indices, state))
        return out

    def _load_limits(self) -> dict[str, limits.PartitionLimits]:
        """Every partition's limits (on the RPC thread)."""
        pyslurm = self._pyslurm
        parts = [
            {
                "name": p.name,
                "default": bool(p.is_default),
                "max_time": p.max_time * 60 if _number(p.max_time) else None,  # minutes
                "max_cpus_per_node": p.max_cpus_per_node if _number(p.max_cpus_per_node) else None,
                "max_mem_per_node": p.max_memory_per_node
                if _number(p.max_memory_per_node)
                else None,
                "max_nodes": p.max_nodes if _number(p.max_nodes) else None,
            }
            for p in pyslurm.Partitions.load().values()
        ]
        nodes = [
            limits.NodeInfo(
                tuple(n.partitions or ()),
                next((c for c in (n.effective_cpus, n.total_cpus) if _number(c) and c), None),
                n.real_memory if _number(n.real_memory) else None,
            )
            for n in pyslurm.Nodes.load().values()
        ]
        return limits.build(parts, nodes)

    # -- calls, retries and errors ------------------------------------------------------------
    def _call(self, what: str, fn: Callable[..., T], *args: Any, retries: int | None = None) -> T:
        """Run ``fn`` on the RPC thread; retry transient Slurm errors with backoff."""
        retries = self.retries if retries is None else retries
        delay = self.retry_delay
        for attempt in range(retries + 1):
            self.calls[what] = self.calls.get(what, 0) + 1
            try:
                return self._rpc.run(fn, *args)
            except self._pyslurm.RPCError as exc:
                if exc.errno in VERSION_ERRNOS:
                    raise BackendUnavailableError(
                        _mismatch(f"pyslurm {self.pyslurm_version}: {exc.msg}")
                    ) from exc
                if attempt >= retries or not _transient(exc):
                    raise
                log.warning(
                    "slurmscope.slurm.retry",
                    command=f"pyslurm {what}",
                    error=exc.msg,
                    errno=exc.errno,
                    attempt=attempt + 1,
                    retry_in=delay,
                )
            time.sleep(delay)  # on the caller's thread: the RPC thread serves others
            delay = min(delay * 2, 15.0)
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(
        self, what: str, exc: Any, kind: type[SubmissionError | SchedulerError] = SubmissionError
    ) -> SubmissionError | SchedulerError:
        hint = _HINTS.get(exc.errno)
        if exc.errno == ESLURM_INVALID_ARRAY:
            hint = f"{hint}; MaxArraySize is {self.max_array_size}"
        tail = f"; {hint}" if hint else ""
        return kind(f"{what}: {exc.msg} (Slurm errno {exc.errno}{tail})")

    def _scancel(self, target: str) -> None:
        scancel = shutil.which("scancel")
        if scancel is None:
            raise SchedulerError(
                f"cannot cancel array task {target}: pyslurm has no call for one task of an "
                "array and scancel is not on PATH. Cancel the whole array instead."
            )
        log.info("slurmscope.pyslurm.cancel_task", target=target, via="scancel")
        self.calls["scancel"] = self.calls.get("scancel", 0) + 1
        timeout = getattr(self, "scancel_timeout", 60.0)
        try:
            proc = subprocess.run(
                [scancel, target], capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            said = partial_output(exc)
            raise SchedulerError(
                f"scancel {target} did not finish within {timeout} s"
                + (f"; it said: {said}" if said else "")
            ) from exc
        if proc.returncode != 0 and "Invalid job id" not in proc.stderr:
            if "already completing or completed" in proc.stderr:
                return
            raise SchedulerError(f"scancel {target} failed: {proc.stderr.strip()}")


def _number(value: Any) -> bool:
    """A pyslurm limit that is a number (not ``"UNLIMITED"``, not ``None``)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _exit_code(job: Any) -> str | None:
    """``Job.exit_code`` and ``Job.exit_code_signal`` as Slurm shows them (``"1:0"``), once
    the job has ended; ``None`` before, or where this pyslurm does not have them."""
    if job.state not in TERMINAL_STATES:
        return None
    code, signal = getattr(job, "exit_code", None), getattr(job, "exit_code_signal", None)
    if code is None and signal is None:
        return None
    return f"{code or 0}:{signal or 0}"


def _transient(exc: Any) -> bool:
    if exc.errno in TRANSIENT_ERRNOS:
        return True
    return any(t in str(exc.msg) for t in TRANSIENT)

"""Finding pyslurm: importing it without risking this process, and checking that it fits
the cluster's Slurm.

``import pyslurm`` initialises libslurm from ``$SLURM_CONF`` (or ``slurm_conf=``, which is
put there before the import), once per process. A file it cannot read makes libslurm retry
for 60 s and then end the whole process, so the path is checked first, and the first
import is tried in a child process. pyslurm X.Y builds only against Slurm X.Y: each way a
mismatch shows raises :class:`~slurmscope.errors.BackendUnavailableError` naming the
fallback, :data:`FALLBACK`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from types import ModuleType

from ..errors import BackendUnavailableError
from ._slurm import FULL_RANGES, VERSION_ERRNOS, slurm_conf_problem
from .pyslurm_environment import propagated_limits

FALLBACK = "Cluster('sbatch')"
INSTALL = "pip install 'slurmscope[pyslurm]'"


@dataclass(frozen=True)
class ClusterInfo:
    """What a pyslurm backend reads of the controller's configuration, once."""

    #: Whether an ``mpirun`` in a job bootstraps Hydra through Slurm (``MpiParams``).
    hydra_bootstrap: bool
    #: The resource limits a job gets from the submitting process.
    rlimits: list[str]
    cluster_name: str
    #: ``MaxArraySize`` (``None`` where pyslurm does not say).
    max_array_size: int | None
    #: ``MaxJobCount`` (``None`` where pyslurm does not say).
    max_job_count: int | None
    #: ``SchedulerParameters`` as a dict (``max_array_tasks`` caps the tasks of one array).
    scheduler_parameters: dict[str, object]
    slurm_version: str
    pyslurm_version: str


def mismatch(detail: str) -> str:
    return (
        f"pyslurm is installed but does not match this cluster's Slurm ({detail}). pyslurm "
        "X.Y builds only against Slurm X.Y: install the pyslurm release of your Slurm, or use "
        f"the Slurm command line instead: {FALLBACK} (or SLURMSCOPE_BACKEND=sbatch)."
    )


def bad_conf(problem: str) -> BackendUnavailableError:
    return BackendUnavailableError(
        f"pyslurm cannot read Slurm's configuration: {problem}. Point slurm_conf= (or "
        "SLURM_CONF) at the cluster's slurm.conf, or leave both unset to use Slurm's "
        "default. (libslurm would retry for 60 s, then end this process.)"
    )


#: The SLURM_CONF each loaded pyslurm module (by id) initialised libslurm with: libslurm reads
#: it once per process, at ``import pyslurm``, and keeps that configuration for good.
_loaded_conf: dict[int, str] = {}


def use_conf(slurm_conf: str | None) -> None:
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
        raise bad_conf(problem)
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
                _import_checked[key] = ""  # an ordinary import error: import_pyslurm explains it
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


def import_pyslurm() -> ModuleType:
    """``import pyslurm``, with errors that say what to do.

    The import initialises libslurm from ``$SLURM_CONF``; a file it cannot read makes
    libslurm retry for 60 s and then end the process (``fatal()``), so it is checked first.
    """
    if "pyslurm" not in sys.modules:
        problem = slurm_conf_problem()
        if problem:
            raise bad_conf(problem)
    conf = os.environ.get("SLURM_CONF", "")
    try:
        import pyslurm
    except ModuleNotFoundError as exc:
        if exc.name != "pyslurm":
            raise BackendUnavailableError(mismatch(f"import pyslurm failed: {exc}")) from exc
        raise BackendUnavailableError(
            f"pyslurm is not installed: {INSTALL} (it must match your Slurm release), or use "
            f"{FALLBACK}."
        ) from exc
    except (ImportError, OSError) as exc:  # a libslurm of another release: undefined symbols
        raise BackendUnavailableError(mismatch(f"import pyslurm failed: {exc}")) from exc
    module: ModuleType = pyslurm
    _loaded_conf.setdefault(id(module), conf)
    return module


def _major_minor(version: str | None) -> tuple[int, int] | None:
    try:
        major, minor = str(version).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def probe(slurm_conf: str | None = None, timeout: float = 60.0) -> tuple[ModuleType, ClusterInfo]:
    """Import pyslurm, ping the controller and read its configuration (one thread only)."""
    use_conf(slurm_conf)
    _import_in_child(timeout)
    pyslurm = import_pyslurm()
    try:
        pyslurm.slurmctld.ping(0)
        config = pyslurm.slurmctld.Config.load()
    except pyslurm.RPCError as exc:
        if exc.errno in VERSION_ERRNOS:
            raise BackendUnavailableError(
                mismatch(f"pyslurm {pyslurm.__version__}: {exc.msg}")
            ) from exc
        hint = ""
        if exc.errno in (1802, 5005):  # the controller took the connection, then hung up
            hint = (
                f" A controller of an older Slurm than pyslurm {pyslurm.__version__} was built "
                "for does this too (it refuses the newer protocol): "
                + mismatch("check `scontrol show config | grep SLURM_VERSION`")
            )
        raise BackendUnavailableError(
            f"pyslurm cannot reach the Slurm controller: {exc.msg} (errno {exc.errno}). "
            "Check that slurmctld runs and SLURM_CONF points at its slurm.conf." + hint
        ) from exc
    ours, theirs = _major_minor(pyslurm.__version__), _major_minor(config.version)
    if ours is not None and theirs is not None and ours > theirs:
        raise BackendUnavailableError(
            mismatch(
                f"pyslurm {pyslurm.__version__} is newer than the controller's Slurm "
                f"{config.version}, and Slurm refuses clients newer than its controller"
            )
        )
    mpi_params = getattr(config, "mpi_parameters", None) or {}
    return pyslurm, ClusterInfo(
        hydra_bootstrap="disable_slurm_hydra_bootstrap" not in mpi_params,
        rlimits=propagated_limits(
            getattr(config, "propagate_resource_limits", None) or (),
            getattr(config, "propagate_resource_limits_except", None) or (),
        ),
        cluster_name=str(config.cluster_name or "slurm"),
        max_array_size=config.max_array_size,
        max_job_count=getattr(config, "max_job_count", None),
        scheduler_parameters=dict(getattr(config, "scheduler_parameters", None) or {}),
        slurm_version=str(config.version),
        pyslurm_version=str(pyslurm.__version__),
    )

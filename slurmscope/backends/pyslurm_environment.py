"""The environment ``sbatch`` gives a job beyond the submitting process's own, for the
pyslurm backend to give the same (a job submitted through libslurm gets none of it unless
it is given): the submit directory and host, the umask, the priority, the propagated
resource limits, and the settings that make an ``mpirun`` inside the job launch through
Slurm; and a job that gets exactly the environment it is given (pyslurm would add the
submitting process's ``SLURM_*`` variables).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping

#: The resource limits ``sbatch`` propagates by default (``PropagateResourceLimits=ALL``).
RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS")
_RLIM_INFINITY = 2**64 - 1


def submit_environment(
    limits: Iterable[str] = RLIMITS,
    *,
    gpus: int | None = None,
    cpus_per_task: int | None = None,
    ntasks: int | None = None,
    hydra_bootstrap: bool = True,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The variables ``sbatch`` (25.11) adds to a job's environment from the submitting
    process, over the process's own environment.

    ``SLURM_SUBMIT_DIR``, ``SLURM_SUBMIT_HOST``, ``SLURM_UMASK``, ``SLURM_PRIO_PROCESS``,
    ``SLURM_RLIMIT_<name>`` for each of ``limits`` (see :func:`propagated_limits`),
    ``SLURM_GPUS`` for ``--gpus``, ``SLURM_CPUS_PER_TASK`` for ``--cpus-per-task`` and
    ``SLURM_NTASKS``/``SLURM_NPROCS`` for ``--ntasks`` (src/sbatch/opt.c ``set_envs``: slurmd
    sets them for the job only where the submitted environment has them), and the settings that make an ``mpirun`` inside the job
    launch through Slurm (Open MPI's and PRRTE's ``--external-launcher``, Hydra's ``slurm``
    bootstrap unless the user chose another or ``MpiParams=disable_slurm_hydra_bootstrap``:
    ``hydra_bootstrap``; src/common/env.c ``set_env_from_opts``). slurmstepd applies the
    umask and the limits to the job. A job submitted through pyslurm gets none of these
    unless they are given, so the pyslurm backend adds them. The user's settings are read
    from ``environ`` (the environment passed on; the process's by default).
    """
    given = os.environ if environ is None else environ
    env: dict[str, str] = {}
    for name in ("OMPI_MCA_plm_slurm_args", "PRTE_MCA_plm_slurm_args"):
        env[name] = given.get(name, "--external-launcher")
    for bootstrap, extra in (
        ("HYDRA_BOOTSTRAP", "HYDRA_LAUNCHER_EXTRA_ARGS"),
        ("I_MPI_HYDRA_BOOTSTRAP", "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS"),
    ):
        chosen = given.get(bootstrap)
        if (chosen is None and hydra_bootstrap) or chosen == "slurm":
            env[bootstrap] = chosen or "slurm"
            env[extra] = given.get(extra, "--external-launcher")
    if gpus is not None:
        env["SLURM_GPUS"] = str(gpus)
    if cpus_per_task is not None:
        env["SLURM_CPUS_PER_TASK"] = str(cpus_per_task)
    if ntasks is not None:
        env["SLURM_NTASKS"] = env["SLURM_NPROCS"] = str(ntasks)
    with contextlib.suppress(OSError):
        env["SLURM_SUBMIT_DIR"] = os.getcwd()
    env["SLURM_SUBMIT_HOST"] = socket.gethostname()
    env["SLURM_UMASK"] = given.get("SLURM_UMASK") or f"0{current_umask():03o}"
    with contextlib.suppress(OSError):
        env["SLURM_PRIO_PROCESS"] = str(os.getpriority(os.PRIO_PROCESS, 0))
    for name in limits:
        limit = getattr(resource, f"RLIMIT_{name}", None)
        if limit is None:
            continue
        soft = resource.getrlimit(limit)[0]
        env[f"SLURM_RLIMIT_{name}"] = str(
            _RLIM_INFINITY if soft == resource.RLIM_INFINITY else soft
        )
    return env


_umask_lock = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status``): the classic
    ``umask(0); umask(old)`` leaves the whole process at 000 for a moment, which another
    thread creating files (or reading it the same way) would get."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _umask_lock:  # no /proc: at least our own threads never see the 000
        mask = os.umask(0o077)
        os.umask(mask)
    return mask


def propagated_limits(include: Iterable[str] = (), exclude: Iterable[str] = ()) -> list[str]:
    """The limits slurm.conf's ``PropagateResourceLimits`` (``include``: empty or ``ALL`` for
    all, ``NONE`` for none) and ``PropagateResourceLimitsExcept`` (``exclude``) name."""
    wanted = {part.strip().upper().removeprefix("RLIMIT_") for part in include if part.strip()}
    unwanted = {part.strip().upper().removeprefix("RLIMIT_") for part in exclude}
    if "NONE" in wanted:
        return []
    names = RLIMITS if not wanted or "ALL" in wanted else [n for n in RLIMITS if n in wanted]
    return [name for name in names if name not in unwanted]


@contextlib.contextmanager
def given_environment_only(description_class: type) -> Iterator[None]:
    """While a job is submitted: the job gets exactly the environment it is given.

    pyslurm copies every ``SLURM_*`` variable of the submitting process into the job first,
    under the given ones (``JobSubmitDescription._set_environment`` reads the process's
    environment as its module's ``pyenviron``); inside a job, those describe that job
    (:mod:`slurmscope.backends.inherited`), and a given environment cannot take a variable
    away. So that module sees an empty process environment meanwhile: the environment the
    backend gives (the process's, without what describes its job) is all the job gets.
    Only the pyslurm backend's RPC thread submits, and only there is this used.
    """
    module = sys.modules.get(description_class.__module__)
    if module is None or not hasattr(module, "pyenviron"):
        yield  # another pyslurm (a test double) that copies nothing by itself
        return
    saved = module.pyenviron
    module.pyenviron = {}  # type: ignore[attr-defined]
    try:
        yield
    finally:
        module.pyenviron = saved  # type: ignore[attr-defined]

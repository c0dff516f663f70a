"""What the two Slurm backends (sbatch and pyslurm) share: the text Slurm speaks.

Array ranges as Slurm prints them, the controller messages that mean "try again", and the
environment ``sbatch`` adds to every job (so that a job submitted through pyslurm sees the
same one).
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import stat
import subprocess
import threading
from collections.abc import Iterable

#: Messages of a controller that is busy or restarting; anything else is permanent.
TRANSIENT = (
    "Socket timed out",
    "temporarily unable to accept job",
    "Unable to contact slurm controller",
    "Slurm backup controller in standby mode",
    "Zero Bytes were transmitted or received",
    "Connection refused",
    "Transport endpoint is not connected",
    "Resource temporarily unavailable",
    "Rate limit exceeded",
)

#: Environment for Slurm clients: array task ranges printed in full. By default libslurm
#: cuts them at 64 characters with "..." (``SLURM_BITSTR_LEN``), and the cut-off tasks would
#: be missing from the answer.
FULL_RANGES = {"SLURM_BITSTR_LEN": "0"}


def expand_array_range(text: str) -> list[int]:
    """The task indices of a range as Slurm prints it.

    ``0-3,7,9-10%2`` -> [0, 1, 2, 3, 7, 9, 10]; a stride ``0-20:5`` -> [0, 5, 10, 15, 20];
    brackets are allowed (``[1-3]``). A range cut short with ``...`` (``SLURM_BITSTR_LEN``)
    gives the indices before the cut: the last, incomplete piece is dropped.
    """
    text = text.strip().split("%")[0].strip("[]")
    truncated = text.endswith("...")
    pieces = text.removesuffix("...").split(",")
    if truncated:
        pieces = pieces[:-1]
    out: list[int] = []
    for piece in pieces:
        span, _, step = piece.partition(":")
        lo, _, hi = span.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (step and not step.isdigit()):
            continue
        out.extend(range(int(lo), int(hi or lo) + 1, int(step or 1) or 1))
    return out


#: The resource limits ``sbatch`` propagates by default (``PropagateResourceLimits=ALL``).
RLIMITS = ("CPU", "FSIZE", "DATA", "STACK", "CORE", "RSS", "NPROC", "NOFILE", "MEMLOCK", "AS")
_RLIM_INFINITY = 2**64 - 1


def submit_environment(
    limits: Iterable[str] = RLIMITS, *, gpus: int | None = None, hydra_bootstrap: bool = True
) -> dict[str, str]:
    """The variables ``sbatch`` (25.11) adds to a job's environment from the submitting
    process, over the process's own environment.

    ``SLURM_SUBMIT_DIR``, ``SLURM_SUBMIT_HOST``, ``SLURM_UMASK``, ``SLURM_PRIO_PROCESS``,
    ``SLURM_RLIMIT_<name>`` for each of ``limits`` (see :func:`propagated_limits`),
    ``SLURM_GPUS`` for ``--gpus``, and the settings that make an ``mpirun`` inside the job
    launch through Slurm (Open MPI's and PRRTE's ``--external-launcher``, Hydra's ``slurm``
    bootstrap unless the user chose another or ``MpiParams=disable_slurm_hydra_bootstrap``:
    ``hydra_bootstrap``; src/common/env.c ``set_env_from_opts``). slurmstepd applies the
    umask and the limits to the job. A job submitted through pyslurm gets none of these
    unless they are given, so the pyslurm backend adds them.
    """
    env: dict[str, str] = {}
    for name in ("OMPI_MCA_plm_slurm_args", "PRTE_MCA_plm_slurm_args"):
        env[name] = os.environ.get(name, "--external-launcher")
    for bootstrap, extra in (
        ("HYDRA_BOOTSTRAP", "HYDRA_LAUNCHER_EXTRA_ARGS"),
        ("I_MPI_HYDRA_BOOTSTRAP", "I_MPI_HYDRA_BOOTSTRAP_EXEC_EXTRA_ARGS"),
    ):
        chosen = os.environ.get(bootstrap)
        if (chosen is None and hydra_bootstrap) or chosen == "slurm":
            env[bootstrap] = chosen or "slurm"
            env[extra] = os.environ.get(extra, "--external-launcher")
    if gpus is not None:
        env["SLURM_GPUS"] = str(gpus)
    with contextlib.suppress(OSError):
        env["SLURM_SUBMIT_DIR"] = os.getcwd()
    env["SLURM_SUBMIT_HOST"] = socket.gethostname()
    env["SLURM_UMASK"] = os.environ.get("SLURM_UMASK") or f"0{current_umask():03o}"
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


def slurm_conf_problem(slurm_conf: str | None = None) -> str | None:
    """Why the slurm.conf that Slurm's commands (and libslurm) would read cannot be read:
    ``slurm_conf`` if given, else ``$SLURM_CONF``; ``None`` when it can, or when neither is
    set (Slurm then finds its configuration its own way).

    Slurm retries a file it cannot stat once a second for 60 s before it gives up (and
    libslurm then ends the whole process), so this is checked first, in microseconds, with
    the reason Slurm would give in the end.
    """
    path = slurm_conf or os.environ.get("SLURM_CONF")
    if not path:
        if slurm_conf is None and os.environ.get("SLURM_CONF") == "":
            # libslurm takes an empty SLURM_CONF as the path "" and retries it for 60 s.
            return "SLURM_CONF is set but empty (unset it for Slurm's default)"
        return None
    source = "slurm_conf" if slurm_conf else "SLURM_CONF"
    try:
        info = os.stat(path)
    except OSError as exc:
        return f"{source}={path}: cannot stat file {path}: {exc.strerror}"
    if not stat.S_ISREG(info.st_mode):
        return f"{source}={path} is not a file"
    if not os.access(path, os.R_OK):
        return f"{source}={path}: cannot read the file (permission denied)"
    return None


def local_node_names(nodes: Iterable[tuple[str | None, str | None]]) -> list[str]:
    """The names to check the job directory root against, one per node given as
    (hostname, NodeAddr): a node whose address is this machine (loopback, or one of its own
    addresses) is named as this machine, whatever its hostname; others by hostname."""
    here = socket.gethostname()
    own = {"127.0.0.1", "::1", "localhost", here}
    with contextlib.suppress(OSError):
        own.update(socket.gethostbyname_ex(here)[2])
    names = set()
    for hostname, address in nodes:
        if address and (address in own or address.startswith("127.")):
            names.add(here)
        elif hostname or address:
            names.add(hostname or address or "")
    return sorted(names)


def partial_output(exc: subprocess.TimeoutExpired) -> str:
    """What a command had printed on stderr when it was stopped for taking too long."""
    err = exc.stderr or b""
    text = err.decode(errors="replace") if isinstance(err, bytes) else err
    return " ".join(text.split())

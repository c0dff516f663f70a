"""What the two Slurm backends (sbatch and pyslurm) share: what Slurm's answers mean.

Which errors mean "try again" (as messages and as Slurm error numbers) and the one retry
loop with backoff both backends use for them; which mean the job to cancel has ended
already; array ranges as Slurm prints them; an exit code in words; the check of the
slurm.conf Slurm would read; the names of the nodes to check the job root against.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from ..errors import SchedulerError
from ..log import log

T = TypeVar("T")

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

# Slurm's error numbers (slurm/slurm_errno.h); the same in every release since 20.02.
EAGAIN = 11
SLURM_PROTOCOL_VERSION_ERROR = 1005
SLURM_PROTOCOL_IO_STREAM_VERSION_ERROR = 1006
ESLURM_INVALID_PARTITION_NAME = 2000
ESLURM_ERROR_ON_DESC_TO_RECORD_COPY = 2007  # "MaxJobCount limit reached" since 23.02
ESLURM_INVALID_JOB_ID = 2017
ESLURM_TRANSITION_STATE_NO_UPDATE = 2020
ESLURM_ALREADY_DONE = 2021
ESLURM_IN_STANDBY_MODE = 2027
ESLURM_DEPENDENCY = 2038
ESLURM_INVALID_ARRAY = 2081
ESLURM_IN_STANDBY_USE_BACKUP = 2131

#: Error numbers of a controller that is busy, restarting or out of reach: retried with
#: backoff (slurm/slurm_errno.h of Slurm 25.11).
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


def is_transient(message: str, errno: int | None = None) -> bool:
    """Whether an error (Slurm's message, and its number where known) means "try again"."""
    return errno in TRANSIENT_ERRNOS or any(t in message for t in TRANSIENT)


#: Backoff between two attempts: the first delay doubles up to this many seconds.
MAX_RETRY_DELAY = 15.0


def retry_transient(
    attempt: Callable[[], T],
    *,
    transient: Callable[[Exception], Mapping[str, object] | None],
    retries: int,
    delay: float,
    command: str,
) -> T:
    """``attempt()``, tried again after an error ``transient`` calls transient (it returns
    the error's fields for the log, else ``None``), at most ``retries`` more times, with
    backoff (``delay`` seconds, doubled each time, at most :data:`MAX_RETRY_DELAY`). The
    sleep is on the caller's thread. Any other error, or the last one, is raised."""
    for number in itertools.count(1):
        try:
            return attempt()
        except Exception as exc:
            fields = transient(exc)
            if fields is None or number > retries:
                raise
            log.warning(
                "slurmscope.slurm.retry", command=command, **fields, attempt=number, retry_in=delay
            )
        time.sleep(delay)
        delay = min(delay * 2, MAX_RETRY_DELAY)
    raise AssertionError("unreachable")  # pragma: no cover


#: What ``scancel`` prints, and the error numbers of the kill RPC, for a job that has ended
#: already or that Slurm has forgotten: cancelling it is no error.
ALREADY_ENDED = ("Invalid job id", "already completing or completed")
ALREADY_ENDED_ERRNOS = frozenset({ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID})


def check_scancel(target: str, proc: subprocess.CompletedProcess[str]) -> None:
    """Raise :class:`SchedulerError` where ``scancel target`` failed, unless only because
    the job has ended already."""
    if proc.returncode != 0 and not any(text in proc.stderr for text in ALREADY_ENDED):
        raise SchedulerError(f"scancel {target} failed: {proc.stderr.strip()}")


#: Environment for Slurm clients: array task ranges printed in full. By default libslurm
#: cuts them at 64 characters with "..." (``SLURM_BITSTR_LEN``), and the cut-off tasks would
#: be missing from the answer.
FULL_RANGES = {"SLURM_BITSTR_LEN": "0"}

#: ``SLURM_BITSTR_LEN`` as the user's environment had it when slurmscope was imported: the
#: pyslurm backend sets :data:`FULL_RANGES` in the process's environment around each load
#: (libslurm reads it there), so a copy of the environment taken meanwhile, by any thread,
#: has it too.
_USER_BITSTR_LEN = os.environ.get("SLURM_BITSTR_LEN")


def users_ranges(env: dict[str, str]) -> dict[str, str]:
    """``env`` (a copy of the process's environment, for a job) with ``SLURM_BITSTR_LEN`` as
    the user had it, not as a load in another thread may have set it for a moment."""
    if _USER_BITSTR_LEN is None:
        env.pop("SLURM_BITSTR_LEN", None)
    else:
        env["SLURM_BITSTR_LEN"] = _USER_BITSTR_LEN
    return env


def expand_array_range(text: str) -> list[int]:
    """The task indices of a range as Slurm prints it.

    ``0-3,7,9-10%2`` -> [0, 1, 2, 3, 7, 9, 10]; a stride ``0-20:5`` -> [0, 5, 10, 15, 20];
    brackets are allowed (``[1-3]``). A range cut short with ``...`` (``SLURM_BITSTR_LEN``)
    gives the indices before the cut: the last, incomplete piece is dropped.
    """
    return [i for span in array_range_spans(text) for i in span]


def tasks_per_array(max_array_size: int, scheduler_parameters: Mapping[str, object]) -> int:
    """How many tasks one array may hold: ``MaxArraySize``, or ``max_array_tasks`` of
    ``SchedulerParameters`` where that is smaller (slurmctld refuses an array of more tasks
    than either allows, ``_valid_array_inx``)."""
    value = scheduler_parameters.get("max_array_tasks")
    try:
        tasks = int(str(value))
    except ValueError:
        return max_array_size
    return min(max_array_size, tasks) if tasks > 0 else max_array_size


def scheduler_parameters(text: str) -> dict[str, str]:
    """``SchedulerParameters`` as ``scontrol show config`` prints it, as a dict."""
    out = {}
    for item in text.split(","):
        key, _, value = item.strip().partition("=")
        if key:
            out[key] = value
    return out


#: What a controller that holds ``MaxJobCount`` jobs answers a submission with: EAGAIN
#: ("Resource temporarily unavailable"; sbatch itself retries it for two minutes, saying
#: "temporarily unable to accept job") or, since 23.02, "MaxJobCount limit reached".
FULL_ERRNOS = frozenset({EAGAIN, ESLURM_ERROR_ON_DESC_TO_RECORD_COPY})
FULL_MESSAGES = (
    "Resource temporarily unavailable",
    "temporarily unable to accept job",
    "job queue full",
    "MaxJobCount",
)


def array_range_spans(text: str) -> list[range]:
    """The task indices of a range as Slurm prints it, as spans, without listing them
    (``0-3,7,9-10%2`` -> [range(0, 4), range(7, 8), range(9, 11)]): a pending array of
    1,000,000 tasks is one span. A range cut short with ``...`` loses its last piece."""
    text = text.strip().split("%")[0].strip("[]")
    truncated = text.endswith("...")
    pieces = text.removesuffix("...").split(",")
    if truncated:
        pieces = pieces[:-1]
    spans = []
    for piece in pieces:
        span, _, step = piece.partition(":")
        lo, _, hi = span.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()) or (step and not step.isdigit()):
            continue
        spans.append(range(int(lo), int(hi or lo) + 1, int(step or 1) or 1))
    return spans


def count_array_range(text: str) -> int:
    """How many task indices a range as Slurm prints it holds (``0-3,7,9-10%2`` -> 7)."""
    return sum(map(len, array_range_spans(text)))


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

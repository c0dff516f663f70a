"""TEST DOUBLE OF pyslurm -- THIS IS NOT pyslurm.

##########################################################################################
#  A stand-in for the pyslurm C bindings, used by slurmscope's tests only. It carries out #
#  every call ON THE REAL SLURM TEST CLUSTER through the Slurm command line: sbatch,      #
#  scontrol (show job / show node / show config / ping) and scancel. Nothing is           #
#  simulated in memory: job ids, states, dependencies and errors are Slurm's own.         #
##########################################################################################

Why: pyslurm 25.11.x, the only release on PyPI, builds only against Slurm 25.11, and the
machines slurmscope is tested on have Slurm 22.05, 24.11 or 26.05. So slurmscope's pyslurm
backend is tested through this double. It is importable only when a test puts
``tests/pyslurm_double`` on ``sys.path`` (tests/pyslurm_support.py); where a real pyslurm
imports, the tests use that instead.

It implements exactly the part of pyslurm 25.11's API that slurmscope uses, with pyslurm's
names, types, units and documented behaviour, quirks included (each was read in pyslurm's
source: pyslurm/core/job/submission.pyx, job.pyx, util.pyx, core/error.pyx,
core/slurmctld/*.pyx, utils/uint.pyx, xcollections.pyx):

- ``JobSubmitDescription(**fields).submit() -> int``; unknown attributes raise
  ``AttributeError`` as on pyslurm's cdef class; ``submit()`` fills in pyslurm's defaults
  (``ntasks``, ``cpus_per_task`` = 1, ``working_directory`` = cwd, ``environment`` = "ALL")
  on the object. ``memory_per_node``/``memory_per_cpu`` take MiB as an int or a string
  with a K|M|G|T suffix; ``time_limit`` a Slurm time string or minutes as an *int* (a
  digit string raises ``TypeError``, as when pyslurm assigns it to a C integer);
  ``partitions`` a list or a comma string; ``dependencies`` a string or a dict -- a dict
  is **modified in place** (``satisfy`` is popped); ``environment`` "ALL", "NONE" or a dict
  (a dict exports only the current ``SLURM_*`` variables and the dict's).
- ``Jobs.load()``: every job of the cluster in one call, a mapping of cluster -> {id: Job}
  whose ``values()`` yields every ``Job``.
- ``Job.load(job_id)`` returns **only the first record** for an array job id.
- ``Job.array_task_id`` reads **index 0 back as None** (pyslurm's ``u32_parse`` treats 0
  as unset), as it does for the record of an array's pending tasks, whose indices are in
  ``Job.array_tasks_waiting`` (throttle suffix removed).
- ``Job.dependencies``: a dict by kind (``satisfy``, ``singleton`` keys included), ids as
  Slurm shows them (``"12_*(unfulfilled)"``), or ``None``.
- ``Job(job_id).cancel()`` sends SIGKILL and ignores "already done" and, for SIGKILL,
  "invalid job id".
- ``Nodes.load()``: every node, ``Node.name``, ``Node.hostname``, ``Node.address``,
  ``Node.partitions`` (a list), ``Node.total_cpus``, ``Node.effective_cpus``,
  ``Node.real_memory`` (MiB).
- ``Partitions.load()``: every partition (it loads ``slurmctld.Config`` too, as pyslurm
  does); ``Partition.name``, ``is_default``, ``max_time`` (minutes), ``max_cpus_per_node``,
  ``max_nodes``, ``max_memory_per_node``/``max_memory_per_cpu`` (MiB), ``nodes``,
  ``total_cpus``, ``total_nodes``, ``state``. A limit that is infinite reads
  ``"UNLIMITED"`` (``pyslurm.constants.UNLIMITED``), one that is unset ``None``
  (``u32_parse``, ``_raw_time``, ``_get_memory``).
- ``slurmctld.ping(0)``, ``slurmctld.Config.load()`` (``max_array_size``,
  ``cluster_name``, ``version``).
- ``RPCError(errno, msg)`` with Slurm's errno and ``slurm_strerror`` text, taken from the
  CLI's error message.

- ``import pyslurm`` initialises libslurm (``slurm_init()``, unless
  ``PYSLURM_DISABLE_AUTO_INIT`` is set): with ``$SLURM_CONF`` naming a file that cannot be
  stat'ed, libslurm logs ``cannot stat file``, retries once a second for 60 s, and then
  ``fatal()`` ends the whole process with exit code 1. The double prints the same lines and
  ends the process the same way, without the 60 s.

What it cannot reproduce: the GIL held during an RPC (here the GIL is released while a
command runs), pyslurm's memory handling, and JobSubmitDescription fields slurmscope does
not use (setting one makes ``submit()`` raise ``NotImplementedError``, rather than act
differently from pyslurm).

``__version__`` is the Slurm release of the command line it drives (``sbatch
--version``) with a ``+test-double`` suffix: a real pyslurm always carries the major.minor
of the Slurm it was built against, and this double is "built" against the CLI it runs.

``_double`` holds the test controls (not pyslurm API): the log of calls with the thread each
ran on, the descriptions submitted, injected RPC errors, and a simulated protocol mismatch.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from typing import Any

MODELLED_ON = "25.11.2"  # the pyslurm release whose API this double follows

SLURM_SUCCESS = 0
SLURM_ERROR = -1
_NO_VAL = 0xFFFFFFFE

# slurm_strerror() texts (src/common/slurm_errno.c) of the errors the CLI may report.
_ERRNO_BY_MESSAGE = {
    "Resource temporarily unavailable": 11,
    "Unexpected message received": 1000,
    "Communication connection failure": 1001,
    "Message send failure": 1002,
    "Message receive failure": 1003,
    "Communication shutdown failure": 1004,
    "Incompatible versions of client and server code": 1005,
    "I/O stream version number error": 1006,
    "Protocol authentication error": 1007,
    "Unable to contact slurm controller (connect failure)": 1800,
    "Unable to contact slurm controller (send failure)": 1801,
    "Unable to contact slurm controller (receive failure)": 1802,
    "Unable to contact slurm controller (shutdown failure)": 1803,
    "Rate limit exceeded, please retry momentarily": 1804,
    "Invalid partition name specified": 2000,
    "No partition specified or system default partition": 2001,
    "Access/permission denied": 2002,
    "More processors requested than permitted": 2005,
    "Node count specification invalid": 2006,
    "Unable to create job record, try again": 2007,
    "MaxJobCount limit reached": 2007,
    "Invalid user id": 2010,
    "Requested node configuration is not available": 2014,
    "Requested partition configuration not available now": 2015,
    "Invalid job id specified": 2017,
    "Invalid node name specified": 2018,
    "Job can not be altered now, try again later": 2020,
    "Job/step already completing or completed": 2021,
    "Slurm backup controller in standby mode": 2027,
    "Invalid feature specification": 2029,
    "Job dependency problem": 2038,
    "Invalid account or account/partition combination specified": 2045,
    "Job violates accounting/QOS policy (job submit limit, user's size and/or time limits)": 2050,
    "Requested time limit is invalid (missing or exceeds some limit)": 2051,
    "Invalid qos specification": 2066,
    "Circular job dependency": 2071,
    "Invalid generic resource (gres) specification": 2072,
    "Invalid job array specification": 2081,
    "Socket timed out on send/recv operation": 5004,
    "Zero Bytes were transmitted or received": 5005,
}
_MESSAGE_BY_ERRNO = {v: k for k, v in _ERRNO_BY_MESSAGE.items()}
_MESSAGE_BY_ERRNO[2007] = "Unable to create job record, try again"  # Slurm 22.05's text

_MEMORY_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40, "P": 2**50, "E": 2**60}


# -- errors (pyslurm/core/error.pyx) ---------------------------------------------------------
def slurm_strerror(errno: int) -> str:
    if errno == SLURM_ERROR:
        return "Unspecified error"
    if 0 < errno < 1000:
        return os.strerror(errno)
    return _MESSAGE_BY_ERRNO.get(errno, "Unknown error")


class PyslurmError(Exception):
    """The base Exception for all Pyslurm errors."""


class RPCError(PyslurmError):
    """A Slurm RPC failed: ``errno`` is Slurm's error number, ``msg`` its text."""

    def __init__(self, errno: int = SLURM_ERROR, msg: str | None = None) -> None:
        self.msg = msg
        self.errno = errno
        if not msg:
            self.msg = slurm_strerror(errno)
        super().__init__(self.msg)


error = types.SimpleNamespace(PyslurmError=PyslurmError, RPCError=RPCError)


# -- test controls (not pyslurm API) ---------------------------------------------------------
class _DoubleControl:
    """What tests inspect and inject. Not part of pyslurm."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            #: (call name, thread) for every RPC, in order.
            self.calls: list[tuple[str, threading.Thread]] = []
            #: the attribute values of every submitted description, as given.
            self.submitted: list[dict[str, Any]] = []
            self._faults: list[list[Any]] = []
            #: every RPC fails as with a libslurm of another Slurm release.
            self.protocol_mismatch = False

    def fail_next(self, call: str, errno: int, times: int = 1) -> None:
        """The next ``times`` RPCs whose name starts with ``call`` raise ``RPCError(errno)``."""
        with self.lock:
            self._faults.append([call, errno, times])

    def threads(self) -> set[threading.Thread]:
        with self.lock:
            return {thread for _, thread in self.calls}

    def rpc(self, name: str) -> None:
        """Record one RPC; raise the injected error, if any."""
        with self.lock:
            self.calls.append((name, threading.current_thread()))
            if self.protocol_mismatch:
                raise RPCError(1005)
            for fault in self._faults:
                if name.startswith(fault[0]) and fault[2] > 0:
                    fault[2] -= 1
                    raise RPCError(fault[1])


_double = _DoubleControl()


# -- running the Slurm CLI ------------------------------------------------------------------
def _command(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RPCError(1800, f"Unable to contact slurm controller (connect failure): no {name}")
    return path


def _run(
    args: list[str], stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            [_command(args[0]), *args[1:]],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise RPCError(5004) from exc


def _error_from(stderr: str) -> RPCError:
    """The RPCError pyslurm would raise for the error a Slurm command printed."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        for message, errno in _ERRNO_BY_MESSAGE.items():
            if line.endswith(message):
                return RPCError(errno)
    return RPCError(SLURM_ERROR, lines[-1] if lines else "Unspecified error")


def _cli_version() -> str:
    try:
        out = subprocess.run(
            [_command("sbatch"), "--version"], capture_output=True, text=True, check=True
        ).stdout
    except (RPCError, OSError, subprocess.CalledProcessError) as exc:
        raise ImportError(f"pyslurm TEST DOUBLE: the Slurm command line is missing: {exc}") from exc
    match = re.search(r"(\d+)\.(\d+)", out)
    if match is None:
        raise ImportError(f"pyslurm TEST DOUBLE: cannot read the Slurm version from {out!r}")
    return f"{match.group(1)}.{match.group(2)}.0+test-double"


def _slurm_init() -> None:
    """api.slurm_init() at import: libslurm's slurm_conf_init() -> s_p_parse_file()."""
    path = os.environ.get("SLURM_CONF")
    if not path:
        return
    try:
        os.stat(path)
    except OSError as exc:
        sys.stderr.write(
            f"error: s_p_parse_file: cannot stat file {path}: {exc.strerror}, retrying in 1sec "
            "up to 60sec\nfatal: Unable to process configuration file\n"
        )
        sys.stderr.flush()
        os._exit(1)  # libslurm's fatal(): the process ends, no exception to catch


# pyslurm calls slurm_init() at the end of its import; here it comes before the version is
# read, since ``sbatch --version`` reads the configuration too (and would retry for 60 s).
if not os.environ.get("PYSLURM_DISABLE_AUTO_INIT"):
    _slurm_init()

__version__ = _cli_version()


# -- helpers with pyslurm's semantics ---------------------------------------------------------
def _dehumanize(value: Any) -> int | None:
    """pyslurm.utils.helpers.dehumanize: MiB, from an int or "5M"/"3G"."""
    if not value:
        return None
    parts = re.split(f"([{' '.join(_MEMORY_UNITS)}])", str(value))
    if len(parts) == 1:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"Invalid value specified: {value}") from None
    return round(float(parts[0]) * _MEMORY_UNITS[parts[1]] / _MEMORY_UNITS["M"])


def _time_str2mins(text: str) -> int:
    """libslurm's slurm_time_str2mins: minutes, seconds rounded up."""
    days, hours, minutes, seconds = 0, 0, 0, 0
    body = text
    if "-" in text:
        d, body = text.split("-", 1)
        days = int(d)
        nums = [int(x) for x in body.split(":")]
        hours, minutes, seconds = (nums + [0, 0, 0])[:3]
    else:
        nums = [int(x) for x in body.split(":")]
        if len(nums) == 1:
            minutes = nums[0]
        elif len(nums) == 2:
            minutes, seconds = nums
        else:
            hours, minutes, seconds = nums[:3]
    total = ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    return (total + 59) // 60


def _timestr_to_mins(value: Any) -> int | None:
    """pyslurm.utils.ctime.timestr_to_mins, then the assignment to a C uint32_t."""
    if value is None:
        return None
    if str(value).isdigit():
        if isinstance(value, str):  # pyslurm returns the str itself: Cython refuses it
            raise TypeError("an integer is required")
        return int(value)
    if str(value).casefold() == "unlimited":
        return None
    try:
        return _time_str2mins(str(value))
    except ValueError:
        raise ValueError(f"Invalid Time Specification: {value}.") from None


def _parse_dependencies(value: Any) -> str | None:
    """pyslurm's _parse_dependencies: a dict is modified in place (``satisfy`` popped)."""
    if isinstance(value, str):
        return value
    if value is None:
        return None
    satisfy = value.pop("satisfy", "all").casefold()
    delim = "?" if satisfy == "any" else ","
    out = []
    for condition, ids in value.items():
        if condition == "singleton" and bool(ids):
            out.append("singleton")
            continue
        if not isinstance(ids, list):
            ids = str(ids).split(",")
        out.append(f"{condition}:{':'.join(str(i) for i in ids)}")
    return delim.join(out)


def _dependency_str_to_dict(text: str | None) -> dict[str, Any] | None:
    """pyslurm.core.job.util.dependency_str_to_dict."""
    if not text:
        return None
    out: dict[str, Any] = {
        "after": [],
        "afterany": [],
        "afterburstbuffer": [],
        "aftercorr": [],
        "afternotok": [],
        "afterok": [],
        "singleton": False,
        "satisfy": "all",
    }
    delim = ","
    if "?" in text:
        delim = "?"
        out["satisfy"] = "any"
    for item in text.split(delim):
        if item == "singleton":
            out["singleton"] = True
        kind_and_jobs = item.split(":", 1)
        if len(kind_and_jobs) != 2 or kind_and_jobs[0] not in out:
            continue
        for job in kind_and_jobs[1].split(":"):
            out[kind_and_jobs[0]].append(int(job) if job.isdigit() else job)
    return out


# -- JobSubmitDescription (pyslurm/core/job/submission.pyx) -----------------------------------
_PUBLIC_FIELDS = (  # in the order of submission.pxd
    "name account user_id group_id priority site_factor wckey array batch_constraints "
    "begin_time clusters cluster_constraints comment admin_comment requires_contiguous_nodes "
    "cores_reserved_for_system threads_reserved_for_system working_directory cpu_frequency "
    "nodes deadline delay_boot_time dependencies excluded_nodes required_nodes constraints "
    "kill_on_node_fail licenses mail_user mail_types mcs_label memory_per_cpu memory_per_node "
    "memory_per_gpu network nice log_files_open_mode overcommit partitions profile_types "
    "accounting_gather_frequency qos requires_node_reboot is_requeueable reservations script "
    "script_args environment resource_sharing distribution time_limit time_limit_min "
    "container container_id cpus_per_task cpus_per_gpu sockets_per_node cores_per_socket "
    "threads_per_core gpus gpus_per_socket gpus_per_task gres_per_node gpu_binding ntasks "
    "ntasks_per_node ntasks_per_socket ntasks_per_core ntasks_per_gpu switches signal "
    "standard_in standard_output standard_error kill_on_invalid_dependency "
    "spreads_over_nodes use_min_nodes gres_binding gres_tasks_per_sharing "
    "temporary_disk_per_node get_user_environment min_cpus_per_node wait_all_nodes "
    "selinux_context segment_size reserved_ports extra"
)
_PUBLIC = _PUBLIC_FIELDS.split()

# The fields this double turns into sbatch options. Others raise NotImplementedError.
_MODELLED = {
    "name",
    "account",
    "array",
    "comment",
    "constraints",
    "cpus_per_task",
    "dependencies",
    "environment",
    "excluded_nodes",
    "gpus",
    "is_requeueable",
    "kill_on_invalid_dependency",
    "licenses",
    "log_files_open_mode",
    "memory_per_cpu",
    "memory_per_node",
    "nice",
    "nodes",
    "ntasks",
    "partitions",
    "priority",
    "profile_types",
    "qos",
    "required_nodes",
    "reservations",
    "resource_sharing",
    "script",
    "signal",
    "standard_error",
    "standard_in",
    "standard_output",
    "time_limit",
    "wckey",
    "working_directory",
}


def _as_list(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


class JobSubmitDescription:
    """pyslurm.JobSubmitDescription, submitted with ``sbatch`` (script on stdin)."""

    __slots__ = tuple(_PUBLIC)

    def __init__(self, **kwargs: Any) -> None:
        for name in _PUBLIC:
            object.__setattr__(self, name, None)
        for key, value in kwargs.items():
            setattr(self, key, value)  # AttributeError for unknown names, like pyslurm

    def __repr__(self) -> str:
        return "pyslurm.JobSubmitDescription"

    def submit(self) -> int:
        """Submit the batch job; returns its id. Raises RPCError when Slurm refuses it."""
        given = {
            n: (dict(v) if isinstance(v, dict) else v)
            for n in _PUBLIC
            if (v := getattr(self, n)) is not None
        }
        self._validate_options()
        self._set_defaults()
        args, env, script = self._sbatch()
        _double.rpc("JobSubmitDescription.submit")
        with _double.lock:
            _double.submitted.append(given)
        proc = _run(["sbatch", "--parsable", *args], stdin=script, env=env)
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        return int(proc.stdout.strip().split(";")[0])

    # -- pyslurm's checks and defaults ----------------------------------------------------------
    def _validate_options(self) -> None:
        if not self.script:
            raise ValueError("You need to provide a batch script.")
        memories = [self.memory_per_cpu, self.memory_per_node, self.memory_per_gpu]
        if sum(1 for m in memories if m) > 1:
            raise ValueError(
                "Only one of memory_per_cpu, memory_per_node or memory_per_gpu can be set."
            )

    def _set_defaults(self) -> None:
        if not self.ntasks:
            self.ntasks = 1
        if not self.cpus_per_task:
            self.cpus_per_task = 1
        if not self.working_directory:
            self.working_directory = os.getcwd()
        if not self.environment:
            self.environment = "ALL"

    def _script(self) -> str:
        script = self.script
        if os.path.isfile(str(script)):
            with open(script) as fh:
                script = fh.read()
        elif self.script_args:
            raise ValueError(
                "Passing arguments to a script is only allowed if it was loaded from a file."
            )
        if not script or script.isspace():
            raise ValueError("Batch script is empty or none was provided.")
        if not script.startswith("#!"):
            raise ValueError(
                "Not a valid Batch script. First line must start with '#!',"
                "followed by the path to an interpreter"
            )
        if "\0" in script:
            raise ValueError("The Slurm Controller does not allow scripts that contain a NULL")
        if "\r\n" in script:
            raise ValueError("Batch script contains DOS line breaks (\\r\\n)")
        return script

    def _sbatch(self) -> tuple[list[str], dict[str, str], str]:
        unmodelled = [
            n for n in _PUBLIC if n not in _MODELLED and getattr(self, n) not in (None, False)
        ]
        if unmodelled:
            raise NotImplementedError(
                f"the pyslurm TEST DOUBLE does not model JobSubmitDescription fields {unmodelled}"
            )
        script = self._script()
        args = [f"--chdir={self.working_directory}", f"--ntasks={int(self.ntasks)}"]
        args.append(f"--cpus-per-task={int(self.cpus_per_task)}")
        text = {
            "name": "--job-name",
            "account": "--account",
            "array": "--array",
            "comment": "--comment",
            "constraints": "--constraint",
            "qos": "--qos",
            "wckey": "--wckey",
            "standard_output": "--output",
            "standard_error": "--error",
            "standard_in": "--input",
            "nodes": "--nodes",
            "profile_types": "--profile",
        }
        for field, flag in text.items():
            value = getattr(self, field)
            if value is not None:
                args.append(f"{flag}={value}")
        lists = {
            "partitions": "--partition",
            "excluded_nodes": "--exclude",
            "required_nodes": "--nodelist",
            "licenses": "--licenses",
            "reservations": "--reservation",
        }
        for field, flag in lists.items():
            value = getattr(self, field)
            if value:
                args.append(f"{flag}={_as_list(value)}")
        dependency = _parse_dependencies(self.dependencies)
        if dependency:
            args.append(f"--dependency={dependency}")
        minutes = _timestr_to_mins(self.time_limit)
        if minutes is not None:
            args.append(f"--time={minutes}")
        elif self.time_limit is not None:
            args.append("--time=UNLIMITED")
        if self.memory_per_cpu:
            args.append(f"--mem-per-cpu={_dehumanize(self.memory_per_cpu)}M")
        elif self.memory_per_node:
            args.append(f"--mem={_dehumanize(self.memory_per_node)}M")
        if self.gpus:
            args.append(f"--gpus={self.gpus}")
        if self.kill_on_invalid_dependency is not None:
            yes = "yes" if self.kill_on_invalid_dependency else "no"
            args.append(f"--kill-on-invalid-dep={yes}")
        if self.nice:
            args.append(f"--nice={int(self.nice)}")
        if self.is_requeueable is not None:
            args.append("--requeue" if self.is_requeueable else "--no-requeue")
        if self.signal:  # "B:SIGUSR1@30", as pyslurm parses it; sbatch's name has no SIG
            args.append(f"--signal={str(self.signal).replace('SIG', '')}")
        if self.log_files_open_mode in ("append", "truncate"):
            args.append(f"--open-mode={self.log_files_open_mode}")
        if self.priority is not None:
            args.append("--hold" if int(self.priority) == 0 else f"--priority={self.priority}")
        sharing = (self.resource_sharing or "").casefold()
        if sharing in ("no", "exclusive"):
            args.append("--exclusive")
        elif sharing in ("user", "mcs"):
            args.append(f"--exclusive={sharing}")
        elif sharing in ("yes", "oversubscribe"):
            args.append("--oversubscribe")
        return args, self._environment(args), script

    def _environment(self, args: list[str]) -> dict[str, str]:
        """pyslurm's _set_environment, as the environment of sbatch plus ``--export``."""
        value = self.environment
        slurm_vars = {k: v for k, v in os.environ.items() if k.startswith("SLURM_")}
        if isinstance(value, dict):
            env = {**slurm_vars, **{str(k): str(v) for k, v in value.items()}}
            args.append("--export=ALL")
            return env
        if value is None or str(value).casefold() == "all":
            args.append("--export=ALL")
            return dict(os.environ)
        if str(value).casefold() == "none":
            args.append("--export=NONE")
            return dict(os.environ)
        raise NotImplementedError(
            "the pyslurm TEST DOUBLE models environment as 'ALL', 'NONE' or a dict"
        )


# -- Job and Jobs (pyslurm/core/job/job.pyx) --------------------------------------------------
def _records(text: str, first: str = "JobId") -> Iterator[dict[str, str]]:
    """``scontrol --oneliner show job|node`` lines as dicts (a value may hold spaces)."""
    for line in text.splitlines():
        fields: dict[str, str] = {}
        last = None
        for token in line.split(" "):
            if not token:
                continue
            key, sep, value = token.partition("=")
            if sep and re.fullmatch(r"[A-Za-z_:/]+", key):
                if key not in fields:
                    fields[key] = value
                    last = key
                else:
                    last = None
            elif last is not None:
                fields[last] += " " + token
        if first in fields:
            yield fields


class Job:
    """pyslurm.Job: one job record as slurmctld holds it."""

    def __init__(self, job_id: int) -> None:
        self._fields: dict[str, str] = {"JobId": str(int(job_id))}
        self._cluster = _local_cluster()

    @classmethod
    def _from_fields(cls, fields: dict[str, str], cluster: str) -> Job:
        job = cls.__new__(cls)
        job._fields = fields
        job._cluster = cluster
        return job

    def __repr__(self) -> str:
        return f"pyslurm.Job({self.id})"

    @staticmethod
    def load(job_id: int) -> Job:
        """slurm_load_job: for an array job id, only the first record comes back."""
        _double.rpc("Job.load")
        proc = _run(["scontrol", "--oneliner", "show", "job", str(int(job_id))])
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        for fields in _records(proc.stdout):
            return Job._from_fields(fields, _local_cluster())
        raise RPCError(msg="RPC was successful but got no job data, this should never happen")

    def cancel(self) -> None:
        """slurm_kill_job(id, SIGKILL): already-done and unknown jobs are no error."""
        _double.rpc("Job.cancel")
        proc = _run(["scancel", str(self.id)])
        if proc.returncode != 0:
            exc = _error_from(proc.stderr)
            if exc.errno not in (2021, 2017):  # ESLURM_ALREADY_DONE, ESLURM_INVALID_JOB_ID
                raise exc

    # -- the attributes slurmscope reads, with pyslurm's conversions ----------------------------
    def _get(self, key: str) -> str | None:
        value = self._fields.get(key)
        return None if value in (None, "(null)") else value

    @property
    def id(self) -> int:
        return int(self._fields["JobId"])

    @property
    def name(self) -> str | None:
        return self._get("JobName")

    @property
    def cluster(self) -> str:
        return self._cluster

    @property
    def state(self) -> str | None:
        return self._get("JobState")

    @property
    def state_reason(self) -> str | None:
        return self._get("Reason")

    @property
    def exit_code(self) -> int | None:
        """The exit status of ``ExitCode=status:signal`` (pyslurm's ``Job.exit_code``)."""
        text = self._get("ExitCode")
        return int(text.split(":")[0]) if text else None

    @property
    def exit_code_signal(self) -> int | None:
        """The signal of ``ExitCode=status:signal`` (pyslurm's ``Job.exit_code_signal``)."""
        text = self._get("ExitCode")
        return int(text.split(":")[1]) if text and ":" in text else None

    @property
    def dependencies(self) -> dict[str, Any] | None:
        return _dependency_str_to_dict(self._get("Dependency"))

    def _task_field(self) -> tuple[int | None, str | None]:
        """(array_task_id, array_task_str) as slurmctld holds them."""
        text = self._get("ArrayTaskId")
        if text is None:
            return None, None
        holds_pending = self._get("ArrayJobId") == self._fields["JobId"] and (
            self.state == "PENDING"
        )
        if text.isdigit() and not holds_pending:
            return int(text), None
        return _NO_VAL, text

    @property
    def array_id(self) -> int | None:
        value = int(self._get("ArrayJobId") or 0)
        return None if value in (0, _NO_VAL) else value  # u32_parse

    @property
    def array_task_id(self) -> int | None:
        value, _ = self._task_field()
        return None if value in (None, 0, _NO_VAL) else value  # u32_parse: 0 reads as None

    @property
    def array_tasks_waiting(self) -> str | None:
        _, text = self._task_field()
        if not text:
            return None
        return text[: text.rindex("%")] if "%" in text else text

    @property
    def array_tasks_parallel(self) -> int | None:
        value = int(self._get("ArrayTaskThrottle") or 0)
        return None if value == 0 else value


class _MultiClusterMap(dict):  # type: ignore[type-arg]
    """pyslurm.xcollections.MultiClusterMap: cluster -> {key: item}; ``values()`` yields
    every item of every cluster, ``[key]`` and ``get(key)`` look in all clusters."""

    def values(self) -> Iterator[Any]:  # type: ignore[override]
        for per_cluster in dict.values(self):
            yield from per_cluster.values()

    def __len__(self) -> int:
        return sum(len(v) for v in dict.values(self))

    def __iter__(self) -> Iterator[Any]:
        for per_cluster in dict.values(self):
            yield from per_cluster

    def __getitem__(self, key: Any) -> Any:
        if dict.__contains__(self, key):
            return dict.__getitem__(self, key)
        for per_cluster in dict.values(self):
            if key in per_cluster:
                return per_cluster[key]
        raise KeyError(key)

    def get(self, key: Any, default: Any = None) -> Any:
        try:
            return self[key]
        except KeyError:
            return default

    def items(self) -> Iterator[tuple[Any, Any]]:  # type: ignore[override]
        for per_cluster in dict.values(self):
            yield from per_cluster.items()


class Jobs(_MultiClusterMap):
    """pyslurm.Jobs: cluster -> {job id: Job}; ``values()`` yields every Job."""

    @staticmethod
    def load(preload_passwd_info: bool = False, frozen: bool = False) -> Jobs:
        """slurm_load_jobs(SHOW_ALL): every job of the cluster, in one call."""
        _double.rpc("Jobs.load")
        proc = _run(["scontrol", "--all", "--oneliner", "show", "job"])
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        cluster = _local_cluster()
        jobs = Jobs()
        for fields in _records(proc.stdout):
            job = Job._from_fields(fields, cluster)
            jobs.setdefault(cluster, {})[job.id] = job
        return jobs


# -- Node and Nodes (pyslurm/core/node.pyx) -------------------------------------------------
class Node:
    """pyslurm.Node: one node as slurmctld holds it (the attributes slurmscope reads)."""

    def __init__(self, name: str | None = None) -> None:
        self._fields = {"NodeName": name or ""}

    def __repr__(self) -> str:
        return f"pyslurm.Node({self.name})"

    def _get(self, key: str) -> str | None:
        value = self._fields.get(key)
        return None if value in (None, "", "(null)") else value

    @property
    def name(self) -> str | None:
        return self._get("NodeName")

    @property
    def hostname(self) -> str | None:
        return self._get("NodeHostName")

    @property
    def address(self) -> str | None:
        return self._get("NodeAddr")

    @property
    def partitions(self) -> list[str]:
        """cstr.to_list: the comma list as a list ([] when unset)."""
        value = self._get("Partitions")
        return value.split(",") if value else []

    @property
    def total_cpus(self) -> int | None:
        return _u_parse(self._get("CPUTot"), on_noval=0)

    @property
    def effective_cpus(self) -> int | None:
        return _u_parse(self._get("CPUEfctv"), on_noval=0)

    @property
    def real_memory(self) -> int | str | None:
        return _u_parse(self._get("RealMemory"))


class Nodes(_MultiClusterMap):
    """pyslurm.Nodes: cluster -> {node name: Node}; ``values()`` yields every Node."""

    @staticmethod
    def load(preload_passwd_info: bool = False) -> Nodes:
        """slurm_load_node: every node of the cluster, in one call."""
        _double.rpc("Nodes.load")
        proc = _run(["scontrol", "--oneliner", "show", "node"])
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        nodes = Nodes()
        for fields in _records(proc.stdout, first="NodeName"):
            node = Node()
            node._fields = fields
            nodes.setdefault(_local_cluster(), {})[node.name] = node
        return nodes


# -- Partition and Partitions (pyslurm/core/partition.pyx) ----------------------------------
UNLIMITED = "UNLIMITED"  # pyslurm.constants.UNLIMITED
constants = types.SimpleNamespace(UNLIMITED=UNLIMITED)


def _u_parse(value: str | None, on_noval: Any = None) -> int | str | None:
    """utils.uint.u*_parse on the value scontrol printed: UNLIMITED for infinite, on_noval
    for unset or 0."""
    if value is None or value in ("", "N/A", "NONE"):
        return on_noval
    if value.upper() in ("UNLIMITED", "INFINITE"):
        return UNLIMITED
    number = int(value) if value.isdigit() else 0
    return on_noval if number == 0 else number


class Partition:
    """pyslurm.Partition: one partition as slurmctld holds it (the attributes read)."""

    def __init__(self, name: str | None = None) -> None:
        self._fields = {"PartitionName": name or ""}

    def __repr__(self) -> str:
        return f"pyslurm.Partition({self.name})"

    def _get(self, key: str) -> str | None:
        value = self._fields.get(key)
        return None if value in (None, "", "(null)") else value

    @property
    def name(self) -> str | None:
        return self._get("PartitionName")

    @property
    def is_default(self) -> bool:
        return self._get("Default") == "YES"

    @property
    def max_time(self) -> int | str | None:
        """_raw_time(max_time, on_inf=UNLIMITED): minutes."""
        value = self._get("MaxTime")
        if value is None:
            return None
        if value.upper() in ("UNLIMITED", "INFINITE"):
            return UNLIMITED
        return _time_str2mins(value) or None

    @property
    def max_cpus_per_node(self) -> int | str | None:
        return _u_parse(self._get("MaxCPUsPerNode"))

    @property
    def max_nodes(self) -> int | str | None:
        return _u_parse(self._get("MaxNodes"))

    @property
    def max_memory_per_node(self) -> int | str | None:
        """_get_memory(max_mem_per_cpu, per_cpu=False): None when a per-CPU limit is set,
        UNLIMITED for 0."""
        if self._get("MaxMemPerCPU") is not None:
            return None
        value = self._get("MaxMemPerNode")
        if value is None or value.upper() == "UNLIMITED" or value == "0":
            return UNLIMITED
        return int(value)

    @property
    def max_memory_per_cpu(self) -> int | str | None:
        value = self._get("MaxMemPerCPU")
        if value is None:
            return None
        return UNLIMITED if value.upper() == "UNLIMITED" else int(value)

    @property
    def nodes(self) -> str | None:
        return self._get("Nodes")

    @property
    def total_cpus(self) -> int | str | None:
        return _u_parse(self._get("TotalCPUs"), on_noval=0)

    @property
    def total_nodes(self) -> int | str | None:
        return _u_parse(self._get("TotalNodes"), on_noval=0)

    @property
    def state(self) -> str | None:
        return self._get("State")


class Partitions(_MultiClusterMap):
    """pyslurm.Partitions: cluster -> {partition name: Partition}."""

    @staticmethod
    def load() -> Partitions:
        """slurm_load_partitions(SHOW_ALL), then slurmctld.Config.load() as pyslurm does."""
        _double.rpc("Partitions.load")
        proc = _run(["scontrol", "--all", "--oneliner", "show", "partition"])
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        Config.load()
        partitions = Partitions()
        for fields in _records(proc.stdout, first="PartitionName"):
            part = Partition()
            part._fields = fields
            partitions.setdefault(_local_cluster(), {})[part.name] = part
        return partitions


# -- slurmctld (pyslurm/core/slurmctld) ------------------------------------------------------
class PingResponse:
    def __init__(self, index: int, hostname: str, is_responding: bool) -> None:
        self.index = index
        self.is_primary = index == 0
        self.hostname = hostname
        self.is_responding = is_responding
        self.latency: float | None = None


def _ping(index: int) -> PingResponse:
    _double.rpc("slurmctld.ping")
    proc = _run(["scontrol", "ping"])
    lines = proc.stdout.strip().splitlines()
    if index >= len(lines):
        raise RPCError(msg="Invalid Index specified.")
    line = lines[index]
    match = re.search(r"at (\S+) is (UP|DOWN)", line)
    if proc.returncode != 0 and match is None:
        raise _error_from(proc.stderr)
    if match is None or match.group(2) != "UP":
        raise RPCError(1800)
    return PingResponse(index, match.group(1), True)


class Config:
    """pyslurm.slurmctld.Config: slurm.conf as the controller reports it."""

    def __init__(self, values: dict[str, str]) -> None:
        self._values = values

    @staticmethod
    def load() -> Config:
        _double.rpc("slurmctld.Config.load")
        proc = _run(["scontrol", "show", "config"])
        if proc.returncode != 0:
            raise _error_from(proc.stderr)
        values = {}
        for line in proc.stdout.splitlines():
            key, sep, value = line.partition("=")
            if sep:
                values[key.strip()] = value.strip()
        return Config(values)

    @property
    def cluster_name(self) -> str | None:
        return self._values.get("ClusterName")

    @property
    def max_array_size(self) -> int | None:
        value = int(self._values.get("MaxArraySize", "0").split()[0] or 0)
        return None if value in (0, _NO_VAL) else value

    @property
    def version(self) -> str | None:
        return self._values.get("SLURM_VERSION")


slurmctld = types.ModuleType("pyslurm.slurmctld", "pyslurm.slurmctld (TEST DOUBLE)")
slurmctld.Config = Config  # type: ignore[attr-defined]
slurmctld.PingResponse = PingResponse  # type: ignore[attr-defined]
slurmctld.ping = _ping  # type: ignore[attr-defined]
sys.modules["pyslurm.slurmctld"] = slurmctld

_cluster_name: str | None = None


def _local_cluster() -> str:
    """settings.LOCAL_CLUSTER: ClusterName from the local slurm.conf (no RPC), read once."""
    global _cluster_name
    if _cluster_name is None:
        path = os.environ.get("SLURM_CONF", "/etc/slurm/slurm.conf")
        try:
            with open(path) as fh:
                text = fh.read()
        except OSError:
            text = ""
        match = re.search(r"^\s*ClusterName\s*=\s*(\S+)", text, re.MULTILINE | re.IGNORECASE)
        _cluster_name = match.group(1) if match else "UNKNOWN"
    return _cluster_name


__all__ = [
    "Job",
    "Jobs",
    "JobSubmitDescription",
    "Node",
    "Nodes",
    "Partition",
    "Partitions",
    "PyslurmError",
    "RPCError",
    "error",
    "slurmctld",
]

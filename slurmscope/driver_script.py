"""What a driver job runs (``slurmscope run``): the user's script, as ``python SCRIPT ARGS``
would, in the directory it was started from, inside a slurmscope task.

:func:`run_script` is the task's function. It puts the run's variables in the environment
(so that a plain ``slurmscope.Cluster()`` in the script uses the same backend and job root,
and its submissions name this driver job; :mod:`slurmscope.runs`), sets ``sys.argv`` and
``sys.path[0]`` as Python does for a script, and runs it with :mod:`runpy` as ``__main__``.
A driver job that Slurm requeued (``SLURM_RESTART_COUNT`` above 0) resumes its run.

Unless the script configures logging itself (structlog, or a handler of the standard
library's root logger), the ``slurmscope.resume.*`` events -- why each submission of a
resumed run was reused or submitted anew -- are printed to the driver job's log (stderr),
with every warning of slurmscope as before.

On the local backend the script's jobs run under an embedded scheduler of the driver's own
process: when the driver job is cancelled (SIGTERM), it cancels them first, and then ends
as the signal would end it. (On Slurm they are jobs of their own, which a cancelled driver
leaves alone; ``slurmscope cancel --all`` cancels them too.)
"""

from __future__ import annotations

import contextlib
import logging
import os
import runpy
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

import structlog

from .backends import local
from .runs import DRIVER_DIR_ENV, DRIVER_JOB_ENV, RESUME_ENV, RUN_ENV, record_restart


class ScriptExitError(Exception):
    """The script called ``sys.exit()`` with a failure status."""


def run_script(script: str, args: Sequence[str], cwd: str, environment: Mapping[str, str]) -> int:
    """Run ``script`` with ``args`` in ``cwd``, with ``environment`` added; 0 when it ends
    (or calls ``sys.exit(0)``), an error when it raises or exits with another status."""
    os.environ.update(environment)
    os.environ[DRIVER_JOB_ENV] = os.environ.get("SLURM_JOB_ID", "")
    os.environ[DRIVER_DIR_ENV] = os.environ.get("SLURMSCOPE_JOB_DIR", "")
    restart = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
    if restart > 0:  # requeued by Slurm: this run goes on where it was
        os.environ[RESUME_ENV] = "1"
        with contextlib.suppress(Exception):  # a note only: never what stops the run
            record_restart(
                Path(os.environ["SLURMSCOPE_ROOT"]),
                os.environ[RUN_ENV],
                os.environ[DRIVER_JOB_ENV],
                restart,
            )
    if os.environ.get("SLURMSCOPE_BACKEND") == "local":
        signal.signal(signal.SIGTERM, _cancelled_locally)
    show_resume_events()
    os.chdir(cwd)
    path = os.path.abspath(script)
    sys.argv = [script, *args]
    sys.path.insert(0, os.path.dirname(path))
    for stream in (sys.stdout, sys.stderr):  # what the script prints shows in its log at once
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(line_buffering=True)
    try:
        runpy.run_path(script, run_name="__main__")  # sys.argv[0] as given, as python does
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise ScriptExitError(f"{script} exited with status {exc.code!r}") from None
    return 0


#: The events a driver job prints to its log when the script configured no logging.
SHOWN_EVENTS = "slurmscope.resume."


def show_resume_events() -> None:
    """Print the ``slurmscope.resume.*`` events to stderr (the job's log) while the script
    has configured no logging: nothing changes where it configured structlog or the root
    logger (then its configuration decides), before or after this call. Warnings and errors
    of slurmscope still show as Python shows them without a handler."""
    logger = logging.getLogger("slurmscope")
    if structlog.is_configured() or logging.getLogger().handlers or logger.level:
        return  # configured already: not ours to change
    if any(isinstance(f, _Unconfigured) for f in logger.filters):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.addFilter(_Shown())
    logger.addHandler(handler)
    logger.addFilter(_Unconfigured())
    logger.setLevel(logging.INFO)


def _configured() -> bool:
    return bool(logging.getLogger().handlers)


class _Unconfigured(logging.Filter):
    """On the ``slurmscope`` logger, whose level is lowered to INFO for the resume events:
    any other record passes only where it would have without that (the root logger's
    level), so a root handler the script adds sees what it would have seen."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.getLogger().getEffectiveLevel():
            return True
        return record.getMessage().startswith(SHOWN_EVENTS) and not _configured()


class _Shown(logging.Filter):
    """The driver's own handler: the resume events, and the warnings Python's last-resort
    handler would print, while the script configured no root handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _configured():
            return False
        return record.levelno >= logging.WARNING or record.getMessage().startswith(SHOWN_EVENTS)


def _cancelled_locally(signum: int, frame: FrameType | None) -> None:
    """SIGTERM to a local driver job: cancel what its embedded scheduler runs, then end as
    SIGTERM ends a process."""
    try:
        local.close_all()
    finally:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

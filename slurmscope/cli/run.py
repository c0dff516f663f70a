"""``slurmscope run [resources] SCRIPT [ARGS...]``: submit a pipeline script as a driver job.

The driver job is a slurmscope task (:func:`slurmscope.driver_script.run_script`) that runs
the script as ``python SCRIPT ARGS`` would, in this directory; so it has a job directory,
logs, states and cancel like any job, and the script's own submissions go to the same
backend and job root and name it as their driver (:mod:`slurmscope.runs`). On a Slurm
backend it is a Slurm job; on ``local`` a detached process (:mod:`.local_host`) runs it
under an embedded scheduler, and outlives this command. The run's record is
``ROOT/runs/ID/run.json``.

``--resume RUN`` submits a new driver job for the run ``RUN`` (same script and arguments
unless given), with ``SLURMSCOPE_RESUME=1`` in its environment.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import Cluster, Job, Task
from ..backends.inherited import SUBMITTER_OPTIONS
from ..driver_script import run_script
from ..errors import InvalidInputError, SlurmscopeError
from ..job_directory import JobDirectory
from ..runs import (
    LEDGER_FILE,
    RESUME_ENV,
    RUN_ENV,
    RUN_FILE,
    check_run_id,
    make_run_folder,
    new_run_id,
    read_run,
    run_folder,
    run_lock,
    write_run,
)
from ..spec import Resources
from ..states import TaskState
from . import handles
from .errors import CliError

#: The resource options of ``slurmscope run`` (each a :class:`~slurmscope.spec.Resources`
#: field).
RESOURCE_FLAGS = ("time", "mem", "cpus_per_task", "gpus", "partition", "account", "qos")


def run(args: argparse.Namespace) -> int:
    root = handles.root_of(args).absolute()
    request = _request(root, args)
    cluster = _cluster(root, args.backend or request.get("backend") or "auto")
    # From the checks to run.json, one `slurmscope run` of this run at a time: two at once
    # would each submit a driver job, and run.json keep one of them.
    folder = run_folder(root, request["run"])
    made = not folder.exists()
    try:
        with run_lock(root, request["run"]):
            try:
                job_id, directory, record = _submit_and_record(root, request, cluster)
            except BaseException:
                # A folder this command made is removed with nothing in it: while the lock
                # is held, so that one waiting for it finds its lock file gone and retries.
                if made and not (folder / RUN_FILE).exists():
                    shutil.rmtree(folder, ignore_errors=True)
                raise
    finally:
        cluster.close()
    _report(args, root, record, job_id, directory, request)
    return 0


def _submit_and_record(
    root: Path, request: dict[str, Any], cluster: Cluster
) -> tuple[str, str, dict[str, Any]]:
    """Check again (under the run's lock) that the run may have a new driver job, submit
    it, and add it to the run's record."""
    if request["resume"]:
        earlier = read_run(root, request["run"])
        if earlier is None:  # removed meanwhile
            raise CliError(f"no run {request['run']} under {root}. Nothing was submitted.")
        _refuse_running(root, earlier)
    else:
        earlier = None
        _refuse_taken(root, request["run"])
    backend, name = cluster.backend.kind, cluster.runtime.name
    if earlier is not None and (earlier["backend"], earlier["cluster"]) != (backend, name):
        raise CliError(
            f"run {request['run']} ran on {earlier['backend']}:{earlier['cluster']}, not on "
            f"{backend}:{name}: resume it there (pass --backend {earlier['backend']}). "
            "Nothing was submitted."
        )
    request["backend"] = backend
    if backend == "local":
        cluster.close()  # the driver runs under a scheduler of its own process
        job_id, directory = _submit_locally(root, request)
    else:
        try:
            job = submit_driver(cluster, request)
        except SlurmscopeError as exc:
            raise CliError(_nothing_submitted(str(exc))) from None
        job_id, directory = job.job_id, str(job.directory)
    record = earlier or {
        "id": request["run"],
        "script": request["script"],
        "script_path": str(Path(request["cwd"], request["script"])),
        "args": request["args"],
        "cwd": request["cwd"],
        "backend": backend,
        "cluster": name,
        "root": str(root),
        "resources": request["resources"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "drivers": [],
    }
    record["drivers"].append(
        {
            "job_id": job_id,
            "directory": directory,
            "submitted": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resume": bool(request["resume"]),
            "script": request["script"],
            "args": request["args"],
            "resources": request["resources"],
        }
    )
    try:
        write_run(root, record)
    except OSError as exc:  # no run without its record: the driver job goes too
        with contextlib.suppress(Exception):
            handles.handle(root, JobDirectory(Path(directory))).cancel()
        raise CliError(
            f"cannot write the record of run {record['id']} under {root} ({exc}); its driver "
            f"job {job_id} was cancelled."
        ) from None
    return job_id, directory, record


def submit_driver(cluster: Cluster, request: dict[str, Any]) -> Job[int]:
    """Submit the driver job of ``request`` (what :func:`run` decided) to ``cluster``."""
    environment = {
        RUN_ENV: request["run"],
        "SLURMSCOPE_ROOT": request["root"],
        "SLURMSCOPE_BACKEND": request["backend"],
    }
    if request["resume"]:
        environment[RESUME_ENV] = "1"
    shell = {k: v for k, v in os.environ.items() if k.startswith("SBATCH_")}
    if shell:  # the stages get them as the script run from this shell would
        environment[SUBMITTER_OPTIONS] = json.dumps(shell, sort_keys=True)
    resources = Resources.from_kwargs(request["resources"])
    name = f"driver:{Path(request['script']).name}"
    task = Task(run_script, resources, cluster=cluster, name=name)
    job = task(request["script"], list(request["args"]), request["cwd"], environment)
    assert isinstance(job, Job)
    return job


def _request(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    """What to submit, every input checked (nothing is submitted yet)."""
    resources = _resources(args)
    if args.resume is not None:
        if args.run_id is not None:
            raise CliError(
                "give --resume RUN (a new driver job for run RUN) or --run-id ID (the id of "
                "a new run), not both. Nothing was submitted.",
                code=2,
            )
        run_id = _checked_id(args.resume, "--resume")
        earlier = read_run(root, run_id)
        if earlier is None:
            if (run_folder(root, run_id) / LEDGER_FILE).exists():
                raise CliError(
                    f"run {run_id} under {root} was made in Python (Cluster(run={run_id!r})): "
                    "it has a ledger but no record of `slurmscope run`, so there is no script "
                    f"to run again. Resume it as it was made: Cluster(run={run_id!r}, "
                    f"resume=True), or SLURMSCOPE_RUN={run_id} SLURMSCOPE_RESUME=1 python "
                    "SCRIPT. Nothing was submitted."
                )
            raise CliError(
                f"no run {run_id} under {root} (`slurmscope runs` lists the runs there; "
                "pass --root if it is elsewhere). Nothing was submitted."
            )
        _refuse_running(root, earlier)
        last = earlier["drivers"][-1] if earlier["drivers"] else earlier
        script = args.script or last["script"]
        script_args = list(args.args) if args.script else list(last["args"])
        cwd = earlier["cwd"]
        given = {k: v for k, v in resources.to_json().items() if v not in (None, [], ())}
        resources = Resources.from_kwargs({**last["resources"], **given})
    else:
        if not args.script:
            raise CliError(
                "give the script to run: slurmscope run [--time ...] SCRIPT [ARGS...] "
                "(or --resume RUN)",
                code=2,
            )
        run_id = (
            _checked_id(args.run_id, "--run-id")
            if args.run_id is not None
            else new_run_id(args.script)
        )
        _refuse_taken(root, run_id)
        earlier, script, script_args, cwd = None, args.script, list(args.args), os.getcwd()
    path = Path(cwd, script)
    elsewhere = earlier is not None and not Path(script).is_absolute() and cwd != os.getcwd()
    against = (
        f" (with --resume the script is resolved against the run's directory {cwd}, not "
        "this one: give it relative to that directory, or its absolute path)"
        if elsewhere
        else ""
    )
    if not path.is_file():
        raise CliError(
            f"no script {script}"
            + (f" in {cwd}" if not Path(script).is_absolute() else "")
            + (" (it is a directory)" if path.is_dir() else "")
            + against
            + ": give the path of a Python file. Nothing was submitted."
        )
    _refuse_bad_syntax(path, script)
    return {
        "run": run_id,
        "script": script,
        "args": script_args,
        "cwd": cwd,
        "root": str(root),
        "resources": resources.to_json(),
        "resume": args.resume is not None,
        "backend": earlier["backend"] if earlier else None,
        "earlier": earlier,
        "elsewhere": elsewhere,
    }


def _refuse_taken(root: Path, run_id: str) -> None:
    """A new run's id must be free: no run.json, and no ledger of a run made in Python."""
    if read_run(root, run_id) is not None:
        raise CliError(
            f"run {run_id} already exists under {root}: resume it with "
            f"`slurmscope run --resume {run_id}`, or give another --run-id. "
            "Nothing was submitted."
        )
    if (run_folder(root, run_id) / LEDGER_FILE).exists():
        raise CliError(
            f"run {run_id} already exists under {root}, made in Python "
            f"(Cluster(run={run_id!r})): it has a ledger, which a driver job of "
            "`slurmscope run` would refuse to record in. Give another --run-id, or resume it "
            f"in Python (Cluster(run={run_id!r}, resume=True)). Nothing was submitted."
        )


def _refuse_bad_syntax(path: Path, script: str) -> None:
    """A script Python cannot compile is refused here, not in the queue."""
    try:
        compile(path.read_bytes(), str(path), "exec", dont_inherit=True)
    except SyntaxError as exc:
        where = f"line {exc.lineno}" if exc.lineno else "somewhere"
        raise CliError(
            f"{script} is not valid Python ({where}: {exc.msg}): fix it and run again. "
            "Nothing was submitted."
        ) from None
    except (ValueError, OSError) as exc:  # null bytes, unreadable
        raise CliError(f"cannot compile {script} ({exc}). Nothing was submitted.") from None


def _checked_id(text: str, option: str) -> str:
    try:
        return check_run_id(text)
    except InvalidInputError as exc:
        raise CliError(f"{option}: {exc} Nothing was submitted.") from None


def _resources(args: argparse.Namespace) -> Resources:
    given: dict[str, Any] = {
        f: getattr(args, f) for f in RESOURCE_FLAGS if getattr(args, f) is not None
    }
    extra = list(args.extra or [])
    if args.requeue:
        extra.append("--requeue")
    if extra:
        given["extra"] = extra
    try:
        return Resources.from_kwargs(given)
    except InvalidInputError as exc:
        raise CliError(f"{exc} Nothing was submitted.") from None


def _refuse_running(root: Path, earlier: dict[str, Any]) -> None:
    """A run is resumed once its driver jobs have ended (two drivers of one run would
    submit the same stages twice)."""
    for driver in earlier["drivers"]:
        directory = JobDirectory(Path(driver["directory"]))
        if not directory.path.is_dir():
            continue
        try:
            rows = handles.rows(handles.handle(root, directory))
        except SlurmscopeError:
            continue
        if rows and not all(TaskState(r[2]).terminal for r in rows):
            raise CliError(
                f"run {earlier['id']} still has a driver job that has not ended: job "
                f"{driver['job_id']} is {rows[0][2]}. Cancel it first "
                f"(`slurmscope cancel {driver['job_id']}`), or wait for it. Nothing was "
                "submitted."
            )


def _cluster(root: Path, backend: str) -> Cluster:
    try:
        # run=None, resume=False: the driver's submission is no submission of a run, whatever
        # $SLURMSCOPE_RUN / $SLURMSCOPE_RESUME say in this shell.
        return Cluster(
            backend,
            root=root,
            set_as_default=False,
            run=None,
            resume=False,
            **handles.cluster_options,
        )
    except SlurmscopeError as exc:
        raise CliError(_nothing_submitted(str(exc))) from None


def _nothing_submitted(message: str) -> str:
    return message if "Nothing was submitted" in message else f"{message} Nothing was submitted."


def _submit_locally(root: Path, request: dict[str, Any]) -> tuple[str, str]:
    """Have a detached process (:mod:`.local_host`) submit the driver job to an embedded
    scheduler of its own and run it; its id and job directory, once submitted."""
    folder = make_run_folder(root, request["run"])
    with open(folder / "local-scheduler.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "slurmscope.cli.local_host"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            cwd=request["cwd"],
            start_new_session=True,  # not stopped by the terminal's hangup or Ctrl-C
        )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps({**request, "options": handles.cluster_options}).encode() + b"\n")
    proc.stdin.close()
    line = proc.stdout.readline()
    proc.stdout.close()
    reply = json.loads(line) if line.strip() else {"error": _no_reply(proc, folder)}
    if "error" in reply:
        raise CliError(_nothing_submitted(reply["error"]))
    return str(reply["job_id"]), str(reply["directory"])


def _no_reply(proc: subprocess.Popen[bytes], folder: Path) -> str:
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    try:
        said = (folder / "local-scheduler.log").read_text().strip().splitlines()[-1]
    except (OSError, IndexError):
        said = "nothing"
    return f"the local scheduler process ended without submitting the driver job ({said})"


def _report(
    args: argparse.Namespace,
    root: Path,
    record: dict[str, Any],
    job_id: str,
    directory: str,
    request: dict[str, Any],
) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "run": record["id"],
                    "driver_job": job_id,
                    "directory": directory,
                    "backend": record["backend"],
                    "cluster": record["cluster"],
                    "root": str(root),
                }
            )
        )
        return
    given = f"--root {shlex.quote(args.root)} " if args.root else ""
    how = "resumed run" if len(record["drivers"]) > 1 else "run"
    command = shlex.join([record["drivers"][-1]["script"], *record["drivers"][-1]["args"]])
    print(
        f"submitted driver job {job_id} ({how} {record['id']}: {command}) "
        f"[{record['backend']}:{record['cluster']}]"
    )
    if request["elsewhere"]:
        print(f"  in the run's directory {record['cwd']} (the script is resolved against it)")
    print(f"  follow it:  slurmscope {given}status {job_id}   (the driver and what it submitted)")
    print(f"              slurmscope {given}logs {job_id}     (what the script prints)")
    print(f"  cancel it:  slurmscope {given}cancel --all {job_id}")
    print(f"  resume it:  slurmscope {given}run --resume {record['id']}   (once it has ended)")

"""What ``slurmscope migrate`` maps and what it says where it cannot (stdlib only).

The tables name every slurm-sdk construct with a one-to-one slurmscope twin; the texts are the
``# slurmscope migrate: ...`` comments left where a person has to decide.
"""

from __future__ import annotations

from dataclasses import dataclass

MARK = "# slurmscope migrate: "

#: slurm-sdk names with a slurmscope twin (``SlurmTask`` is imported as ``Task as SlurmTask``).
NAMES = {
    "Cluster": "Cluster",
    "task": "task",
    "Job": "Job",
    "ArrayJob": "ArrayJob",
    "SlurmTask": "Task",
    "SubmissionError": "SubmissionError",
}
#: ``@task(...)`` / ``with_options(...)`` keywords: slurm-sdk name -> slurmscope name.
RESOURCES = {
    **{k: k for k in ("time", "mem", "cpus_per_task", "gpus", "partition", "account", "qos")},
    **{"constraint": "constraint", "job_name": "job_name", "memory": "mem", "name": "job_name"},
}
#: ``Cluster(...)`` keywords: slurm-sdk name -> slurmscope name.
CLUSTER_ARGS = {
    "job_base_dir": "root",
    "default_partition": "partition",
    "default_account": "account",
}
WHY = {
    "no_import": "`.map(...).after(...)` in a file that imports neither slurm nor slurmscope: "
    "if X is a task, write `X.after(deps).map(items)`",
    "not_task": "`.map(lambda ...)` is not a task's map (no task maps a lambda); if X is a task, "
    "write `X.after(deps).map(items)`",
    "after_on_array": "`.after()` on an array that `.map()` already submitted raises "
    "ArrayAlreadySubmittedError in slurmscope; give the dependencies before the map: "
    "`task.after(deps).map(items)`",
    "after_on_job": "`.after()` on a submitted job raises in slurmscope; if this is a task call "
    "write `task.after(deps)(args)`",
    "wait_bool": "slurm-sdk's `wait()` returns False when the job failed; slurmscope's returns the "
    "handle (always true): use `get_result()`/`get_results()` (they raise) or `job.state`",
    "logs": "slurmscope has no get_stdout()/get_stderr(): `job.log_paths()` gives the stdout and "
    "stderr files, `slurmscope logs JOBID` prints them",
    "generic": "slurmscope's Job, ArrayJob and Task are not generic: `{name}[...]` raises "
    "TypeError where Python evaluates it; write `{name}`, quote the annotation or add "
    "`from __future__ import annotations`",
    "unwrapped": "slurmscope's task keeps the plain function as `.fn` (also `__wrapped__`)",
    "status": "slurmscope has no get_status()/is_*() on handles: use `job.state`, `job.done()` "
    "or `array.counts()`",
}


@dataclass(frozen=True)
class Note:
    line: int
    kind: str  # "converted" or "marked"
    what: str


HINTS = {
    "packaging": "(slurmscope ships no code: tasks run the driver's Python, in the driver's "
    "working directory, with its sys.path; make that environment visible to the nodes)",
    "default": "(slurmscope ships no code: tasks run the driver's Python environment)",
    "callbacks": "(slurmscope emits structlog events instead: see docs/logging.md)",
    "backend_type": "slurmscope has no SSH backend or Slurmfile: run the driver where `sbatch` "
    "works and use Cluster() (auto: pyslurm, sbatch, else the embedded scheduler) or "
    "Cluster('sbatch')",
}

"""What a job's environment says about the job itself, left out of every submission made
inside it: the one definition the sbatch, pyslurm and local backends share.

A process inside a job (a task that submits more work, a driver script run as a job, an
``salloc`` shell) has the variables Slurm gave its job. Passed on to a child submission as
they are (slurmscope exports the submitting process's environment, as ``sbatch
--export=ALL`` does), they would change what the child gets. From Slurm 25.11's source:

- ``sbatch`` reads its options from ``SBATCH_*`` variables and from ``SLURM_CLUSTERS`` and
  ``SLURM_HINT`` (``src/sbatch/opt.c``: ``early_env_vars``, ``env_vars``): an
  ``SBATCH_PARTITION``, ``SBATCH_MEM_PER_CPU``, ``SBATCH_TIMELIMIT`` or ``SBATCH_EXPORT``
  the parent job inherited from its submitter would apply to the child too.
- A batch job's environment describes the job (``src/common/env.c``: ``setup_env``,
  ``env_array_for_batch_job``, ``set_env_from_opts``; ``src/sbatch/sbatch.c``): its ids
  (``SLURM_JOB_ID``, ``SLURM_ARRAY_*``, ``SLURM_STEP_*``), nodes, tasks, CPUs
  (``SLURM_CPUS_PER_TASK``), memory (``SLURM_MEM_PER_CPU`` or ``SLURM_MEM_PER_NODE``),
  partition, account, QOS, GPUs, submit directory and host, umask, limits, SPANK options.
  slurmd sets in the child's environment only those that the child's own request has: a
  parent's ``SLURM_MEM_PER_CPU`` stays beside the child's ``SLURM_MEM_PER_NODE``.
- ``srun`` reads about ninety ``SLURM_*`` variables as its options (``src/srun/opt.c``
  ``env_vars``: ``SLURM_MEM_PER_CPU``, ``SLURM_CPUS_PER_TASK``, ``SLURM_PARTITION``,
  ``SLURM_ACCOUNT``, ``SLURM_EXPORT_ENV``, ...): a leftover one changes every step the child
  runs (with both memory variables, ``srun`` refuses to start at all).
- pyslurm copies every ``SLURM_*`` variable of the submitting process into the job it
  submits (``JobSubmitDescription._set_environment``).

So inside a job, every ``SLURM_*``, ``SLURMD_*``, ``SBATCH_*``, ``SALLOC_*`` and ``SRUN_*``
variable is left out of a submission's environment, and so are slurmscope's own variables
that describe the task (its job directory, its checkpointing), except :data:`KEPT`: the
settings of the Slurm commands that say nothing about the job. What a child needs of its
own, sbatch (or the pyslurm backend, as sbatch would) and slurmd give it anew: its
submit directory and host, umask, resource limits, priority, and everything slurmd sets.
Outside a job, the environment is passed on as it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

#: The prefixes of Slurm's variables: every one that Slurm sets in a job, and every one that
#: sbatch, salloc or srun reads as an option.
SLURM_PREFIXES = ("SLURM_", "SLURMD_", "SBATCH_", "SALLOC_", "SRUN_")

#: slurmscope's variables that describe the task they are set in (``submit._environment``):
#: each submission sets its own (a packed parent's ``SLURMSCOPE_PACK`` would make an
#: unpacked child's worker run the wrong items).
TASK_VARIABLES = ("SLURMSCOPE_JOB_DIR", "SLURMSCOPE_CHECKPOINT", "SLURMSCOPE_PACK")

#: Slurm variables a submission inside a job keeps, and why: none describes the job.
KEPT: Mapping[str, str] = {
    "SLURM_CONF": "which slurm.conf, hence which cluster, every Slurm command talks to",
    "SLURM_TIME_FORMAT": "how Slurm's commands print times",
    "SLURM_BITSTR_LEN": "how Slurm's commands print array ranges",
    "SLURM_EXIT_ERROR": "the exit code of a Slurm command that fails",
    "SLURM_EXIT_IMMEDIATE": "the exit code of salloc and srun when they cannot allocate at once",
}

#: The variable that says a process runs inside a job: Slurm gives it every job and
#: ``salloc``'s shell, the local backend every task.
JOB_MARKER = "SLURM_JOB_ID"


def inside_job(environ: Mapping[str, str]) -> bool:
    """Whether ``environ`` is the environment of a process inside a job."""
    return bool(environ.get(JOB_MARKER)) or bool(environ.get("SLURMSCOPE_JOB_DIR"))


def describes_job(name: str) -> bool:
    """Whether the variable ``name``, in a job's environment, says something about that
    job that a submission made inside it must not pass on (see the module's notes)."""
    if name in KEPT:
        return False
    return name.startswith(SLURM_PREFIXES) or name in TASK_VARIABLES


#: The ``SBATCH_*`` settings of the shell a pipeline was started from (``slurmscope run``
#: puts them here, as JSON, in its driver job's environment): a driver run as a job submits
#: its stages with them, as the same script run from that shell would.
SUBMITTER_OPTIONS = "SLURMSCOPE_SUBMITTER_SBATCH"


def submitter_options(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``SBATCH_*`` settings that :data:`SUBMITTER_OPTIONS` of ``environ`` carries
    (none when it is unset or unreadable)."""
    try:
        found = json.loads(environ.get(SUBMITTER_OPTIONS) or "{}")
    except ValueError:
        return {}
    if not isinstance(found, dict):
        return {}
    return {
        str(k): str(v) for k, v in found.items() if str(k).startswith("SBATCH_") and v is not None
    }


def child_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment a submission made by a process whose environment is ``environ``
    passes on: inside a job, without what describes that job (:func:`describes_job`) but
    with the ``SBATCH_*`` settings of the shell the pipeline was started from
    (:func:`submitter_options`); elsewhere, all of it."""
    if not inside_job(environ):
        return dict(environ)
    kept = {name: value for name, value in environ.items() if not describes_job(name)}
    return kept | submitter_options(environ)


def left_out(environ: Mapping[str, str]) -> list[str]:
    """The names :func:`child_environment` leaves out of ``environ``, sorted."""
    if not inside_job(environ):
        return []
    return sorted(name for name in environ if describes_job(name))

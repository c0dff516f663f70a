"""From a :class:`~slurmscope.spec.JobSpec` to the fields of a ``pyslurm.JobSubmitDescription``:
the very batch script, resources (:data:`~slurmscope.backends.slurm_request.RESOURCE_OPTIONS`)
and environment the sbatch backend's job gets, as plain values."""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..dependency import render
from ..errors import SubmissionError
from ..spec import JobSpec
from ._slurm import users_ranges
from .inherited import child_environment
from .pyslurm_environment import RLIMITS, submit_environment
from .pyslurm_import import FALLBACK
from .slurm_request import EXTRA_FLAGS, batch_script, requested, requeueable


def job_environment(
    spec: JobSpec, rlimits: Sequence[str] = RLIMITS, hydra_bootstrap: bool = True
) -> dict[str, str]:
    """The environment a job gets from ``sbatch --export=ALL``: the submitting process's
    (inside a job, without what describes that job:
    :func:`~slurmscope.backends.inherited.child_environment`), the variables sbatch adds
    (:func:`~slurmscope.backends.pyslurm_environment.submit_environment`), then the spec's
    own."""
    env = users_ranges(child_environment(os.environ))  # not a load's SLURM_BITSTR_LEN
    r = spec.resources
    added = submit_environment(
        rlimits,
        gpus=r.gpus,
        cpus_per_task=r.cpus_per_task,
        ntasks=_ntasks(r.extra),
        hydra_bootstrap=hydra_bootstrap,
        environ=env,
    )
    return {**env, **added, **spec.environment}


def _ntasks(extra: Sequence[str]) -> int | None:
    """The ``--ntasks`` (``-n``) of an ``extra=[...]`` list, the last one given."""
    found = None
    for flag in extra:
        name, _, value = flag.partition("=")
        if name in ("--ntasks", "-n") and value.strip().isdigit():
            found = int(value)
    return found


def description_fields(
    spec: JobSpec, rlimits: Sequence[str] = RLIMITS, hydra_bootstrap: bool = True
) -> dict[str, object]:
    """The ``pyslurm.JobSubmitDescription`` fields for ``spec``: plain values only.

    The environment is given as a dict (:func:`job_environment`), the way ``sbatch
    --export=ALL`` passes it; a dict makes pyslurm add only the job's own variables,
    without ``SLURM_GET_USER_ENV``.
    """
    r = spec.resources
    fields: dict[str, object] = {
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
    for option, amount in requested(r):
        fields[option.field] = option.to_field(amount)
    if requeueable(r):
        fields["is_requeueable"] = True
        fields["log_files_open_mode"] = "append"  # every run's output kept
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

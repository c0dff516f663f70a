"""Which backend a ``Cluster`` uses: the options each takes, checked before anything is
built, and auto-detection (pyslurm, then the sbatch CLI, then the embedded scheduler)."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import os
import shutil
from pathlib import Path
from typing import Any

from .backends.base import Backend, BackendModule
from .errors import BackendUnavailableError, InvalidInputError
from .spec import Resources


def choose_backend(
    requested: str | Backend, root: Path, options: dict[str, Any]
) -> tuple[Backend, str]:
    """The backend ``requested`` (a name, ``"auto"`` or a Backend object) built with
    ``options``, and why it was chosen (for the ``slurmscope.backend.chosen`` event)."""
    if isinstance(requested, Backend):
        return requested, "given as an object"
    name = requested
    reason = f"asked for {name!r}"
    if name == "auto":
        env = os.environ.get("SLURMSCOPE_BACKEND")
        if env:
            name, reason = env, f"SLURMSCOPE_BACKEND={env}"
        else:
            name, reason = detect()
    check_options(name, options)  # again: "auto" chose one, and it takes fewer
    return _backend_module(name).create(root, **options), reason


BACKENDS = ("local", "sbatch", "pyslurm")
#: What Cluster() takes besides resources and backend options.
CLUSTER_OPTIONS = (
    "backend",
    "root",
    "set_as_default",
    "max_item_size",
    "check_shared_root",
    "cancel_on_interrupt",
)


def _backend_module(name: str) -> BackendModule:
    if name not in BACKENDS:
        raise InvalidInputError(
            f"unknown backend {name!r}: use 'auto', 'local', 'sbatch' or 'pyslurm'."
        )
    try:
        module: BackendModule = importlib.import_module(f"slurmscope.backends.{name}")
        return module
    except ImportError as exc:
        raise BackendUnavailableError(
            f"the {name} backend is not available in this version of slurmscope ({exc}); "
            "use Cluster('local') meanwhile."
        ) from exc


def check_options(backend: str | Backend, options: dict[str, Any]) -> None:
    """Refuse options the backend does not take, before anything is constructed, naming
    the ones it does (``"auto"``: the options of any backend, checked again once chosen)."""
    if isinstance(backend, Backend):
        allowed: tuple[str, ...] = ()
        which = f"a backend given as an object ({type(backend).__name__})"
    elif backend == "auto" and not os.environ.get("SLURMSCOPE_BACKEND"):
        allowed = tuple(dict.fromkeys(o for n in BACKENDS for o in _backend_module(n).OPTIONS))
        which = "any backend"
    else:
        name = backend if backend != "auto" else os.environ["SLURMSCOPE_BACKEND"]
        allowed = _backend_module(name).OPTIONS
        which = f"the {name} backend"
    unknown = sorted(set(options) - set(allowed))
    if not unknown:
        return
    resources = sorted(Resources.__dataclass_fields__)
    valid = [*allowed, *CLUSTER_OPTIONS, *resources]
    owners = {o: n for n in reversed(BACKENDS) for o in _backend_module(n).OPTIONS}

    def hint(option: str) -> str:
        if option in owners:
            return f"{option}= (an option of the {owners[option]} backend)"
        close = difflib.get_close_matches(option, valid, n=2, cutoff=0.8)
        return (
            f"{option}= (did you mean {' or '.join(m + '=' for m in close)}?)"
            if close
            else f"{option}="
        )

    hints = [hint(u) for u in unknown]
    raise InvalidInputError(
        f"unknown Cluster option(s) {', '.join(hints)} for {which}. Options of {which}: "
        f"{', '.join(allowed) or 'none'}; of every Cluster: {', '.join(CLUSTER_OPTIONS[1:])}; "
        f"default resources for its tasks: {', '.join(resources)}. Nothing was created."
    )


def detect() -> tuple[str, str]:
    """Auto-detection: pyslurm, then the sbatch CLI, then the embedded local scheduler."""
    candidates = []
    if importlib.util.find_spec("slurmscope.backends.pyslurm") and importlib.util.find_spec(
        "pyslurm"
    ):
        candidates.append("pyslurm")
    if importlib.util.find_spec("slurmscope.backends.sbatch") and shutil.which("sbatch"):
        candidates.append("sbatch")
    whys = []
    for name in candidates:
        ok, why = _backend_module(name).reachable()
        if ok:
            return name, why
        whys.append(f"{name}: {why}")
    if shutil.which("sbatch"):
        return (
            "local",
            "sbatch is on PATH but no Slurm backend answered; using the embedded scheduler "
            f"({'; '.join(whys)})",
        )
    return "local", "no Slurm cluster reachable (no sbatch on PATH); using the embedded scheduler"

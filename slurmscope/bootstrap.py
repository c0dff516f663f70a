"""How every task's Python starts, as cheaply as it can without changing what the task sees.

The command of every job is ``python -S -c BOOT slurmscope.worker JOBDIR [OFFSET]``
(:func:`command`), ``BOOT`` putting the folder slurmscope was imported from first on
``sys.path``, importing ``slurmscope`` and taking that folder off again, then calling
:func:`main`. ``-S`` skips the ``site`` module's work at start, which every task paid for:
it reads every ``.pth`` file of site-packages, and runs their ``import`` lines (an editable
install's import hook imports ``pathlib``, ``re``, ``importlib.util`` and more: ~7 ms a
task; setuptools' ``distutils`` shim). ``-c`` instead of ``-m`` skips ``runpy`` (and the
``importlib.util``, ``contextlib``, ``collections`` it imports: ~3 ms).

What the task would have had from ``site``, it still has:

- site-packages, the user's site-packages, ``PYTHONPATH`` and the folders ``.pth`` files add:
  the worker puts the driver's ``sys.path`` first before it loads anything
  (:func:`slurmscope.origin.use_driver_path`); ``PYTHONPATH`` is honoured by ``-S`` too;
- a virtual environment's ``sys.prefix`` and ``sys.exec_prefix`` (:func:`_venv_prefix`);
- ``exit``, ``quit``, ``help``, ``copyright``, ``credits`` and ``license`` among the builtins;
- the import hooks of ``.pth`` files (editable installs, the ``distutils`` shim): the first
  import that no other finder can satisfy (or any import of ``distutils``, which the shim
  redirects) runs ``site`` in full, then looks again (:class:`_SiteOnDemand`).

The driver starts tasks this way only where that is all ``site`` would do
(:func:`site_is_deferrable`): when its own ``site`` ran a ``sitecustomize`` or
``usercustomize`` module, or a ``.pth`` file has an ``import`` line other than an editable
install's hook or setuptools' and virtualenv's ``distutils`` shims, the task starts as it
always did, with ``python -m slurmscope.worker JOBDIR [OFFSET]`` (set
``SLURMSCOPE_WORKER_SITE=1`` to have that everywhere). Both commands run the same worker.

Standard library only (the job imports it first of all): ``os``, ``sys`` and the worker.
"""

from __future__ import annotations

import os
import sys

from .worker import main as worker_main

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and importlib.machinery are not imported at run time
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType

#: The argument that names the worker in every job's command, whichever the form
#: (:func:`slurmscope.testing.FakeBackend` finds the job directory after it).
WORKER = "slurmscope.worker"

#: The code of ``python -S -c``: slurmscope from the folder the driver imported it from.
_BOOT = (
    "import sys;sys.path.insert(0,{folder!r});import slurmscope;del sys.path[0];"
    "from slurmscope.bootstrap import main;sys.exit(main())"
)

#: How the ``import`` lines of ``.pth`` files that only install import hooks begin: an
#: editable install's finder (setuptools), setuptools' and virtualenv's distutils shims.
_HOOK_LINES = ("import __editable__", "import _virtualenv")
_HOOK_PARTS = ("__import__('_distutils_hack')",)

#: Imports that a ``.pth`` hook redirects though the standard library has them: running
#: ``site`` first keeps them as they were.
_REDIRECTED = frozenset({"distutils"})

_deferrable: bool | None = None


# -- in the driver ------------------------------------------------------------------------------
def command(directory: str, offset: int) -> tuple[str, ...]:
    """The command that runs the tasks of job directory ``directory`` from ``offset``."""
    tail = (WORKER, directory, *((str(offset),) if offset else ()))
    if not site_is_deferrable():
        return (sys.executable, "-m", *tail)
    folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # slurmscope's
    return (sys.executable, "-S", "-c", _BOOT.format(folder=folder), *tail)


def site_is_deferrable() -> bool:
    """Whether a task may start without ``site`` (see the module doc); decided once."""
    global _deferrable
    if _deferrable is None:
        _deferrable = _decide()
    return _deferrable


def _decide() -> bool:
    if os.environ.get("SLURMSCOPE_WORKER_SITE", "") not in ("", "0"):
        return False
    if sys.flags.no_site or sys.implementation.name != "cpython":
        return False  # what site does for this interpreter is not known here
    if "sitecustomize" in sys.modules or "usercustomize" in sys.modules:
        return False
    import site

    folders = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    for folder in folders:
        try:
            names = sorted(n for n in os.listdir(folder) if n.endswith(".pth"))
        except OSError:
            continue
        for name in names:
            try:
                with open(os.path.join(folder, name), encoding="utf-8") as fh:
                    lines = fh.read().splitlines()
            except (OSError, UnicodeDecodeError):
                return False
            for line in lines:
                if not line.startswith(("import ", "import\t")):
                    continue  # a folder to add: the driver's sys.path has it
                if not (line.startswith(_HOOK_LINES) or any(p in line for p in _HOOK_PARTS)):
                    return False
    return True


# -- in the job ---------------------------------------------------------------------------------
def main() -> int:
    """Start the worker in a Python started with ``-S`` (``sys.argv``: ``-c``,
    ``slurmscope.worker``, the job directory and the offset)."""
    if sys.flags.no_site:
        _venv_prefix()
        _builtins()
        sys.meta_path.insert(0, _SiteOnDemand(_REDIRECTED))
        sys.meta_path.append(_SiteOnDemand(None))
    return worker_main(sys.argv[2:])


def _venv_prefix() -> None:
    """``sys.prefix`` and ``sys.exec_prefix`` of a virtual environment, as ``site`` sets
    them: the folder above the executable's when it or that folder has a ``pyvenv.cfg``."""
    bindir = os.path.dirname(os.path.abspath(sys.executable))
    prefix = os.path.dirname(bindir)
    for folder in (bindir, prefix):
        if os.path.isfile(os.path.join(folder, "pyvenv.cfg")):
            sys.prefix = sys.exec_prefix = prefix
            return


def _builtins() -> None:
    """``exit``, ``quit``, ``help``, ``copyright``, ``credits``, ``license``."""
    import site

    site.setquit()
    site.setcopyright()
    site.sethelper()


class _SiteOnDemand:
    """A finder on ``sys.meta_path``: at the first import it is asked about (last in the
    list: one no other finder could satisfy; first in it: one of ``names``), it runs
    ``site`` in full (``.pth`` hooks, ``sitecustomize``) and asks the finders again."""

    ran = False

    def __init__(self, names: frozenset[str] | None) -> None:
        self.names = names

    def find_spec(
        self, name: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if _SiteOnDemand.ran:
            return None
        top = name.partition(".")[0]
        if self.names is not None and top not in self.names:
            return None
        if self.names is None and (path is not None or top in sys.stdlib_module_names):
            # An optional module of the standard library missing here (``_winapi``, ``nt``
            # and ``msvcrt``, tried by pathlib and others inside their own import: running
            # site then would load ``.pth`` hooks against a half-imported module), or a
            # submodule of a package found already: nothing site adds would find it.
            return None
        _SiteOnDemand.ran = True
        import site

        site.main()
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if isinstance(finder, _SiteOnDemand) or find is None:
                continue
            spec: ModuleSpec | None = find(name, path, target)
            if spec is not None:
                return spec
        return None
